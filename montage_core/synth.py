"""Synthesized media with known answers: clips with cuts at known frames, music with a known beat.

Used by ``montage demo`` and by tests (``montage_core.testing``), so plugin authors get the same media.
"""

from __future__ import annotations

import wave
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .ffmpeg import run_ffmpeg

#: lavfi sources that look different from each other (so every join is a clear cut) and move; the
#: random ones are seeded, so a clip is the same picture on every run (a test never meets a
#: stray cut in one generation out of ten)
SOURCES = (
    "testsrc2=size={w}x{h}:rate={fps}",
    "mandelbrot=size={w}x{h}:rate={fps}",
    # life from its second second on: its random first grid collapses in one frame (a flash of its own)
    "life=size={w}x{h}:rate={fps}:seed=7:mold=10:ratio=0.1:death_color=#202040:life_color=#f0c040,"
    "trim=start_frame={fps},setpts=PTS-STARTPTS",
    "smptehdbars=size={w}x{h}:rate={fps}",
    "cellauto=size={w}x{h}:rate={fps}:seed=7:rule=30",
    "rgbtestsrc=size={w}x{h}:rate={fps}",
    "gradients=size={w}x{h}:rate={fps}:seed=7:speed=0.05",
    "testsrc=size={w}x{h}:rate={fps}",
)


def make_clip(path: str | Path, shots: Sequence[tuple[int, float]], *, size: tuple[int, int] = (640, 360),
              fps: int = 25, audio: bool = False) -> list[int]:
    """Write an H.264 clip made of ``shots`` (source index, seconds); return the frames where cuts are."""
    w, h = size
    args: list[str] = []
    parts = []
    cuts, frame = [], 0
    for k, (source, seconds) in enumerate(shots):
        args += ["-f", "lavfi", "-i", SOURCES[source % len(SOURCES)].format(w=w, h=h, fps=fps)]
        frames = int(round(seconds * fps))
        # A moving box keeps even static test patterns alive, so motion is never exactly 0.
        parts.append(f"[{k}:v]trim=end_frame={frames},setpts=PTS-STARTPTS,format=yuv420p,"
                     f"drawbox=x='mod(t*{60 + 20 * k},{w})':y={h // 3}:w={w // 8}:h={h // 8}:color=white@0.7:t=fill[v{k}]")
        if k:
            cuts.append(frame)
        frame += frames
    graph = ";".join(parts) + ";" + "".join(f"[v{k}]" for k in range(len(shots))) + f"concat=n={len(shots)}:v=1[out]"
    extra: list[str] = []
    if audio:
        args += ["-f", "lavfi", "-i", f"sine=frequency=330:duration={frame / fps}"]
        extra = ["-map", f"{len(shots)}:a", "-c:a", "aac", "-shortest"]
    run_ffmpeg([*args, "-filter_complex", graph, "-map", "[out]", *extra, "-c:v", "libx264", "-preset", "veryfast",
                "-crf", "23", "-g", str(2 * fps), "-pix_fmt", "yuv420p", "-movflags", "+faststart", str(path)],
               what=f"making {path}")
    return cuts


def make_music(path: str | Path, *, bpm: float = 120.0, seconds: float = 24.0, sample_rate: int = 44100,
               first_beat: float = 0.5, arc: bool = True, accents: Sequence[int] = (),
               sections: Sequence[int] = ()) -> list[float]:
    """Write a WAV with a kick on every beat (and a bassline); return the beat times.

    With ``arc`` the loudness follows a story arc (quiet intro, build, loud climax, fading outro);
    the beats whose numbers are in ``accents`` get a crash (a burst of noise) over the kick. From
    each beat number in ``sections`` on, the arrangement alternates between two sounds: the bass
    an octave and a fifth higher under a sustained chord, and back (a verse → chorus change).
    """
    n = int(seconds * sample_rate)
    t = np.arange(n) / sample_rate
    y = np.zeros(n)
    period = 60.0 / bpm
    beats = [first_beat + k * period for k in range(int((seconds - first_beat) / period) + 1)
             if first_beat + k * period < seconds - 0.05]
    kick_len = int(0.18 * sample_rate)
    kt = np.arange(kick_len) / sample_rate
    kick = np.sin(2 * np.pi * (50 + 100 * np.exp(-kt * 30)) * kt) * np.exp(-kt * 18)
    click = np.sin(2 * np.pi * 1800 * kt) * np.exp(-kt * 200)
    hat_len = int(0.04 * sample_rate)
    hat = np.random.default_rng(7).standard_normal(hat_len) * np.exp(-np.arange(hat_len) / sample_rate * 120) * 0.08
    notes = [55.0, 55.0, 65.41, 73.42]
    accented = set(accents)
    crash = np.random.default_rng(11).standard_normal(kick_len) * np.exp(-kt * 12) * 0.6
    chord = [220.0, 277.18, 329.63]
    for k, b in enumerate(beats):
        chorus = sum(1 for start in sections if k >= start) % 2 == 1
        i = int(b * sample_rate)
        seg = slice(i, min(n, i + kick_len))
        y[seg] += (kick + 0.5 * click)[: seg.stop - seg.start]
        if k in accented:
            y[seg] += crash[: seg.stop - seg.start]
        j = int((b + period / 2) * sample_rate)  # off-beat hat
        if j + hat_len < n:
            y[j : j + hat_len] += hat
        bass_end = min(n, i + int(period * sample_rate))
        bt = t[i:bass_end] - b
        y[i:bass_end] += 0.25 * np.sin(2 * np.pi * notes[(k // 4) % 4] * (3.0 if chorus else 1.0) * bt) * np.exp(-bt * 3)
        if chorus:
            y[i:bass_end] += sum(0.08 * np.sin(2 * np.pi * f * bt) for f in chord)
    if arc:
        envelope = np.interp(t, [0, 0.15 * seconds, 0.45 * seconds, 0.55 * seconds, 0.8 * seconds, seconds],
                             [0.25, 0.4, 0.8, 1.0, 1.0, 0.3])
        y *= envelope
    y = y / max(1e-9, np.abs(y).max()) * 0.8
    pcm = (y * 32767).astype(np.int16)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(sample_rate)
        out.writeframes(pcm.tobytes())
    return beats


DEMO_CLIPS = {
    "city at night.mp4": ([(0, 3.0), (1, 2.5), (2, 3.0)], (960, 540)),
    "beach day.mp4": ([(3, 2.0), (4, 3.0), (5, 2.5)], (960, 540)),
    "café – ünïcode.mp4": ([(6, 3.0), (7, 3.0)], (960, 540)),
    "phone portrait.mp4": ([(1, 3.0), (0, 3.0)], (540, 960)),
    "skate park.mp4": ([(2, 2.5), (3, 2.5), (6, 2.5)], (960, 540)),
}


def make_demo_media(folder: str | Path, *, seconds: float = 24.0) -> tuple[list[Path], Path]:
    """Demo clips (one portrait, names with spaces and unicode) and a 120 BPM track with a story arc."""
    folder = Path(folder)
    clips_dir = folder / "clips"
    clips_dir.mkdir(parents=True, exist_ok=True)
    clips = []
    for name, (shots, size) in DEMO_CLIPS.items():
        path = clips_dir / name
        if not path.exists():
            make_clip(path, shots, size=size)
        clips.append(path)
    music = folder / "music-120bpm.wav"
    if not music.exists():
        make_music(music, seconds=seconds)
    return clips, music

