"""Files under the media root: listing, confinement, uploads, thumbnails and waveforms."""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from ..errors import UsageError
from ..ffmpeg import ffmpeg_binary
from ..stages.probe import VIDEO_EXTENSIONS

AUDIO_EXTENSIONS = {".mp3", ".wav", ".flac", ".m4a", ".aac", ".ogg", ".opus", ".aiff", ".aif"}


def confine(root: Path, relative: str) -> Path:
    """``relative`` resolved inside ``root``; anything that escapes it (``..``, a symlink) is refused."""
    if not relative or "\x00" in relative or Path(relative).is_absolute():
        raise UsageError(f"path {relative!r} is not a path under the media root")
    if any(part.startswith(".") and part != ".." for part in Path(relative).parts):  # .git, .ssh: never served
        raise UsageError(f"path {relative!r} is outside the media root (hidden files are not served)")
    path = (root / relative).resolve()
    if not path.is_relative_to(root.resolve()):
        raise UsageError(f"path {relative!r} is outside the media root")
    return path


def is_media(path: Path) -> bool:
    """A video or audio file by its name (the only files the UI shows or serves)."""
    return path.suffix.lower() in VIDEO_EXTENSIONS | AUDIO_EXTENSIONS


def listing(root: Path) -> dict[str, list[str]]:
    """Video and audio files under ``root`` (paths relative to it), hidden files left out."""
    videos, audio = [], []
    resolved = root.resolve()
    for path in sorted(resolved.rglob("*")):
        if not path.is_file() or any(part.startswith(".") for part in path.relative_to(resolved).parts):
            continue
        if not path.resolve().is_relative_to(resolved):  # a symlink pointing out of the root
            continue
        rel = str(path.relative_to(resolved))
        if path.suffix.lower() in VIDEO_EXTENSIONS:
            videos.append(rel)
        elif path.suffix.lower() in AUDIO_EXTENSIONS:
            audio.append(rel)
    return {"videos": videos, "audio": audio}


async def save_upload(root: Path, upload: object, limit: int) -> Path:
    """Stream an upload into ``root/uploads/`` under a temporary name; rename when complete."""
    name = Path(getattr(upload, "filename", "") or "").name
    suffix = Path(name).suffix.lower()
    if not name or suffix not in VIDEO_EXTENSIONS | AUDIO_EXTENSIONS:
        raise UsageError(f"upload {name!r} is not a video or audio file "
                         f"(known: {', '.join(sorted(VIDEO_EXTENSIONS | AUDIO_EXTENSIONS))})")
    folder = root / "uploads"
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / name
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".part", dir=folder)
    size = 0
    try:
        with os.fdopen(fd, "wb") as out:
            while chunk := await upload.read(1 << 20):  # type: ignore[attr-defined]
                size += len(chunk)
                if size > limit:
                    raise UsageError(f"upload {name!r} is larger than the limit of {limit // (1 << 20)} MiB")
                out.write(chunk)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def thumbnail(video: str, seconds: float, width: int = 160) -> bytes:
    """One JPEG frame of ``video`` at ``seconds``."""
    cmd = [ffmpeg_binary(), "-hide_banner", "-nostdin", "-loglevel", "error", "-ss", f"{max(0.0, seconds):.3f}",
           "-i", video, "-frames:v", "1", "-vf", f"scale={width}:-2", "-f", "image2", "-c:v", "mjpeg", "pipe:1"]
    return subprocess.run(cmd, capture_output=True, timeout=30).stdout


def waveform(audio: str, duration: float, points: int = 1200) -> list[float]:
    """Peak amplitude (0..1) in ``points`` equal slices of the first ``duration`` seconds."""
    rate = 8000
    cmd = [ffmpeg_binary(), "-hide_banner", "-nostdin", "-loglevel", "error", "-i", audio, "-t", f"{duration:.3f}",
           "-ac", "1", "-ar", str(rate), "-f", "f32le", "pipe:1"]
    samples = np.abs(np.frombuffer(subprocess.run(cmd, capture_output=True, timeout=60).stdout, np.float32))
    if samples.size == 0:
        return []
    slices = np.array_split(samples, min(points, samples.size))
    peaks = np.array([s.max() for s in slices])
    return [round(float(p), 4) for p in peaks / max(1e-9, float(peaks.max()))]
