"""Finding ffmpeg and probing media. Every call passes an argument list, never a shell string."""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

from .errors import InputError, MontageError
from .models import MediaInfo


@functools.lru_cache(maxsize=None)
def ffmpeg_binary() -> str:
    """ffmpeg from ``MONTAGE_FFMPEG``, then ``PATH``, then imageio-ffmpeg's bundled binary."""
    env = os.environ.get("MONTAGE_FFMPEG")
    if env:
        if not Path(env).is_file():
            raise MontageError(f"MONTAGE_FFMPEG={env}: no such file")
        return env
    found = shutil.which("ffmpeg")
    if found:
        return found
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except Exception as exc:  # pragma: no cover - only without any ffmpeg at all
        raise MontageError(f"no ffmpeg found (set MONTAGE_FFMPEG, install ffmpeg, or pip install imageio-ffmpeg): {exc}") from None


@functools.lru_cache(maxsize=None)
def ffprobe_binary() -> str | None:
    """ffprobe beside the chosen ffmpeg, or on ``PATH``; imageio-ffmpeg ships none."""
    sibling = Path(ffmpeg_binary()).with_name("ffprobe")
    if sibling.is_file():
        return str(sibling)
    return shutil.which("ffprobe")


@functools.lru_cache(maxsize=None)
def ffmpeg_version() -> str:
    out = subprocess.run([ffmpeg_binary(), "-hide_banner", "-version"], capture_output=True, text=True).stdout
    match = re.search(r"ffmpeg version (\S+)", out)
    return match.group(1) if match else "unknown"


def last_error_line(stderr: str, path: str | Path | None = None) -> str:
    """The most telling line of ffmpeg's stderr (its last non-empty one), without a repeat of ``path``."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    line = lines[-1] if lines else "ffmpeg failed without a message"
    return line.removeprefix(f"{path}: ") if path is not None else line


def run_ffmpeg(args: list[str], *, what: str, timeout: float | None = None) -> subprocess.CompletedProcess[str]:
    """Run ffmpeg quietly; raise MontageError naming ``what`` with ffmpeg's own last line."""
    from .procs import child_options

    cmd = [ffmpeg_binary(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, errors="replace", timeout=timeout, **child_options())
    if proc.returncode != 0:
        raise MontageError(f"{what}: {last_error_line(proc.stderr)}")
    return proc


def _read_through(path: str | Path, stream: str, *, decode: bool,
                  key: str) -> tuple[list[int], subprocess.CompletedProcess[str]]:
    """Read ``stream`` (``0:v:0``) of ``path`` to the end (decoding it, or only its packets) and
    return the values ffmpeg's progress report gave for ``key`` (``frame``, ``out_time_us``)."""
    from .procs import child_options

    cmd = [ffmpeg_binary(), "-hide_banner", "-nostdin", "-v", "error", "-i", str(path), "-map", stream,
           *([] if decode else ["-c", "copy"]), "-f", "null", "-progress", "pipe:1", "-"]
    proc = subprocess.run(cmd, capture_output=True, text=True, errors="replace", **child_options())
    return [int(v) for v in re.findall(rf"^{key}=(\d+)$", proc.stdout, re.MULTILINE)], proc


def count_video_frames(path: str | Path, *, decode: bool) -> tuple[int, str]:
    """Frames of the first video stream (decoded, or packets read when ``decode`` is false) and
    ffmpeg's error output ("" for a file that reads cleanly)."""
    frames, proc = _read_through(path, "0:v:0", decode=decode, key="frame")
    problem = proc.stderr.strip() or (f"ffmpeg exited with status {proc.returncode}" if proc.returncode else "")
    return (frames[-1] if frames else 0), problem


def audio_seconds(path: str | Path) -> float:
    """Length of the first audio stream as its container records it (0.0 when there is none)."""
    from .procs import child_options

    probe = ffprobe_binary()
    if probe:
        proc = subprocess.run([probe, "-v", "error", "-select_streams", "a:0", "-show_entries", "stream=duration",
                               "-of", "csv=p=0", str(path)], capture_output=True, text=True, errors="replace",
                              **child_options())
        return _float(proc.stdout.strip().splitlines()[0] if proc.stdout.strip() else "")
    times, _ = _read_through(path, "0:a:0", decode=False, key="out_time_us")
    return times[-1] / 1e6 if times else 0.0


def probe_media(path: str | Path) -> MediaInfo:
    """Probe ``path``; raise :class:`InputError` naming the file for anything unusable."""
    path = Path(path)
    if not path.exists():
        raise InputError(path, "no such file")
    if path.is_dir():
        raise InputError(path, "is a folder, not a media file")
    size = path.stat().st_size
    if size == 0:
        raise InputError(path, "empty file (0 bytes)")
    if not os.access(path, os.R_OK):
        raise InputError(path, "not readable (permission denied)")
    probe = ffprobe_binary()
    info = _probe_ffprobe(probe, path, size) if probe else _probe_ffmpeg(path, size)
    if not info.has_video and not info.has_audio:
        raise InputError(path, "no audio or video stream")
    return info


def _probe_ffprobe(ffprobe: str, path: Path, size: int) -> MediaInfo:
    from .procs import child_options

    cmd = [ffprobe, "-v", "error", "-print_format", "json", "-show_format", "-show_streams", str(path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, errors="replace", **child_options())
    if proc.returncode != 0:
        raise InputError(path, f"not a media file ffmpeg can read ({last_error_line(proc.stderr, path)})")
    data = json.loads(proc.stdout or "{}")
    streams = data.get("streams", [])
    # Cover art is a "video" stream with one frame; it does not make a file a clip.
    video = next(
        (s for s in streams if s.get("codec_type") == "video" and not s.get("disposition", {}).get("attached_pic")),
        None,
    )
    audio = next((s for s in streams if s.get("codec_type") == "audio"), None)
    duration = _float(data.get("format", {}).get("duration")) or max(
        (_float(s.get("duration")) for s in streams), default=0.0
    )
    if not video:
        return MediaInfo(str(path), size, duration, False, audio is not None)
    width, height = int(video.get("width") or 0), int(video.get("height") or 0)
    rotation = 0
    for side in video.get("side_data_list", []) or []:
        if "rotation" in side:
            rotation = int(round(_float(side["rotation"])))
    rotation = rotation or int(_float(video.get("tags", {}).get("rotate")))
    if rotation % 180:
        width, height = height, width
    fps = _rate(video.get("avg_frame_rate")) or _rate(video.get("r_frame_rate"))
    if video.get("duration"):
        duration = _float(video["duration"]) or duration
    return MediaInfo(str(path), size, duration, True, audio is not None, width, height, fps,
                     video.get("codec_name", ""), rotation % 360)


_DURATION = re.compile(r"Duration: (\d+):(\d+):(\d+(?:\.\d+)?)")
_VIDEO = re.compile(r"Stream #\d+:\d+.*?: Video: (\w+).*?, (\d{2,5})x(\d{2,5})")
_FPS = re.compile(r"(\d+(?:\.\d+)?) fps")
_ROTATION = re.compile(r"rotation of (-?\d+(?:\.\d+)?) degrees|rotate\s*:\s*(-?\d+)")


def _probe_ffmpeg(path: Path, size: int) -> MediaInfo:
    """Probe by reading ``ffmpeg -i`` output (for ffmpeg builds shipped without ffprobe)."""
    from .procs import child_options

    proc = subprocess.run([ffmpeg_binary(), "-hide_banner", "-nostdin", "-i", str(path)],
                          capture_output=True, text=True, errors="replace", **child_options())
    text = proc.stderr
    if "Stream #" not in text:
        raise InputError(path, f"not a media file ffmpeg can read ({last_error_line(text, path)})")
    match = _DURATION.search(text)
    duration = int(match.group(1)) * 3600 + int(match.group(2)) * 60 + float(match.group(3)) if match else 0.0
    has_audio = bool(re.search(r"Stream #\d+:\d+.*?: Audio:", text))
    video_lines = [line for line in text.splitlines() if ": Video:" in line and "attached pic" not in line]
    if not video_lines:
        return MediaInfo(str(path), size, duration, False, has_audio)
    vm = _VIDEO.search(video_lines[0])
    codec, width, height = (vm.group(1), int(vm.group(2)), int(vm.group(3))) if vm else ("", 0, 0)
    fm = _FPS.search(video_lines[0])
    rm = _ROTATION.search(text)
    rotation = int(round(float(rm.group(1) or rm.group(2)))) if rm else 0
    if rotation % 180:
        width, height = height, width
    return MediaInfo(str(path), size, duration, True, has_audio, width, height,
                     float(fm.group(1)) if fm else 0.0, codec, rotation % 360)


def _float(value: object) -> float:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return 0.0


def _rate(value: str | None) -> float:
    if not value or "/" not in value:
        return _float(value)
    num, den = value.split("/", 1)
    return _float(num) / _float(den) if _float(den) else 0.0
