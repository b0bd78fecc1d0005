"""Shot search over large clip libraries: a sharded, incremental, embedder-versioned index.

Layout of an index folder (one per embedder name and version, so a new embedder never mixes
with vectors of another)::

    INDEX/<embedder>-v<version>/manifest.json      clips, their digests and shards
    INDEX/<embedder>-v<version>/clips/<digest>.npz one clip's shot vectors (re-used while the bytes are the same)
    INDEX/<embedder>-v<version>/shard-007.npz      vectors + ids + source, in-point, out-point

Search is exact: every shard returns its own top-k (by inner product, ties broken by id), and the
coordinator merges them into the global top-k, which equals brute force over the whole library.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import MontageError, UsageError
from .interfaces import ProgressEvent, ShardTask
from .models import write_atomic
from .specs import IndexSpec, SearchSpec


#: float32 dot products of unit vectors differ by ≲ 1e-5 between summation orders; keep 10× that
EXACT_MARGIN = 1e-4


@dataclass(frozen=True)
class Hit:
    """One search result: a shot and its score."""

    score: float
    id: str
    source: str
    source_in: float
    source_out: float


def shard_of(clip: str, shards: int) -> int:
    """Stable shard of a clip (the same on every machine and run)."""
    return int.from_bytes(hashlib.blake2b(clip.encode(), digest_size=8).digest(), "big") % shards


def top_k(vectors: np.ndarray, ids: Sequence[str], query: np.ndarray, k: int) -> list[tuple[float, str, int]]:
    """Exact top-k rows of ``vectors`` by inner product with ``query``: (score, id, row), ties by id."""
    if len(ids) == 0 or k <= 0:
        return []
    query = query.astype(vectors.dtype)
    rows = np.arange(len(ids))
    if len(ids) > k:
        # BLAS scores all rows fast, but its blocking (so its rounding) depends on the matrix shape.
        # Keep every row within a safe margin of the k-th score, ties included ...
        rough = vectors @ query
        kth = np.partition(rough, len(rough) - k)[len(rough) - k]
        rows = np.flatnonzero(rough >= kth - EXACT_MARGIN * max(1.0, abs(float(kth))))
    # ... and score those with einsum, which reduces each row in one fixed order: a row scores
    # bit-for-bit the same in a shard as in the whole library, so merged shards equal brute force.
    exact = np.einsum("ij,j->i", vectors[rows], query)
    ranked = sorted(((float(exact[i]), ids[r], int(r)) for i, r in enumerate(rows)), key=lambda t: (-t[0], t[1]))
    return ranked[:k]


def merge(partials: Sequence[Sequence[Hit]], k: int) -> list[Hit]:
    """The global top-k from per-shard top-k lists (the same order brute force gives)."""
    return sorted((h for part in partials for h in part), key=lambda h: (-h.score, h.id))[:k]


def index_folder(root: str | Path, embedder: Any) -> Path:
    return Path(root) / f"{embedder.name}-v{embedder.version}"


def load_manifest(folder: Path) -> dict[str, Any]:
    try:
        return json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {"clips": {}, "shards": 0}


# ----------------------------------------------------------------------------- shard functions
def embed_shard(task: ShardTask, emit: Callable[[ProgressEvent], None]) -> dict[str, int]:
    """Shard function: embed the shots of the changed clips of one index shard, one file per clip."""
    from .models import ClipAnalysis
    from .plugins import get_manager

    spec: IndexSpec = task.payload
    embedder = get_manager().embedders.get(spec.embedder)
    folder = Path(spec.folder)
    (folder / "clips").mkdir(parents=True, exist_ok=True)
    for k, raw in enumerate(spec.analyses):
        analysis = ClipAnalysis.from_dict(raw)
        emit(ProgressEvent.of(task, "running", k, len(spec.analyses), clip=analysis.media.path))
        vectors = embedder.embed_shots(analysis, read_sidecar(analysis.media.path)).astype(np.float32)
        _save_npz(folder / "clips" / f"{analysis.digest}.npz", vectors=vectors,
                  shot=np.array([s.index for s in analysis.shots]), start=np.array([s.start for s in analysis.shots]),
                  end=np.array([s.end for s in analysis.shots]))
    emit(ProgressEvent.of(task, "done", total=0.0))
    return {"embedded": len(spec.analyses)}


def search_shard(task: ShardTask, emit: Callable[[ProgressEvent], None]) -> list[Hit]:
    """Shard function: exact top-k of one shard file, read where it lives."""
    spec: SearchSpec = task.payload
    with np.load(spec.shard) as data:
        vectors, ids = data["vectors"], list(data["ids"])
        found = top_k(vectors, ids, np.asarray(spec.query, np.float32), spec.k)
        return [Hit(score, id_, str(data["sources"][row]), float(data["ins"][row]), float(data["outs"][row]))
                for score, id_, row in found]


def _save_npz(path: Path, **arrays: np.ndarray) -> None:
    import io

    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    write_atomic(path, buffer.getvalue())


# ----------------------------------------------------------------------------- sidecars
SIDECAR_FIELDS = ("title", "description", "tags", "keywords", "caption")


def read_sidecar(clip: str) -> str:
    """Words a stock library ships with a clip: ``clip.json``/``clip.mp4.json`` fields, ``clip.txt``, the name."""
    path = Path(clip)
    words = [path.stem.replace("_", " ").replace("-", " ")]
    for candidate in (path.with_suffix(".json"), Path(f"{clip}.json")):
        if candidate.is_file():
            try:
                data = json.loads(candidate.read_text(encoding="utf-8"))
            except ValueError:
                continue
            for key in SIDECAR_FIELDS:
                value = data.get(key)
                words.extend(value if isinstance(value, list) else [str(value)] if value else [])
    if path.with_suffix(".txt").is_file():
        words.append(path.with_suffix(".txt").read_text(encoding="utf-8", errors="replace"))
    return " ".join(str(w) for w in words)


# ----------------------------------------------------------------------------- index and search
def build_index(job: Any, root: str | Path, *, shards: int = 8,
                on_event: Callable[[ProgressEvent], None] = lambda e: None) -> dict[str, int]:
    """Index the clips of ``job`` (a :class:`~montage_core.job.Job` prepared for analysis): analyze
    them (cached), embed changed clips on the job's backend, rebuild the touched shards."""
    from .engine import run_shards

    if shards < 1:
        raise UsageError(f"--shards must be at least 1 (got {shards})")
    backend = job.backend
    embedder = job.manager.embedders.get(job.options.embedder)
    folder = index_folder(root, embedder)
    folder.mkdir(parents=True, exist_ok=True)
    manifest = load_manifest(folder)
    analyses, failures = job.analyze(on_event)
    current = {a.media.path: a for a in analyses}
    changed = [a for path, a in current.items()
               if manifest["clips"].get(path, {}).get("digest") != a.digest
               or not (folder / "clips" / f"{a.digest}.npz").exists()]
    removed = set(manifest["clips"]) - set(current)
    by_shard: dict[int, list[Any]] = {}
    for a in changed:
        by_shard.setdefault(shard_of(a.media.path, shards), []).append(a)
    tasks = [ShardTask(f"index-{s:03d}", "index", f"shard {s}",
                       IndexSpec(embedder=embedder.name, folder=str(folder), analyses=[a.to_dict() for a in group]))
             for s, group in sorted(by_shard.items())]
    outcomes = run_shards(backend, embed_shard, tasks, on_event=on_event)
    bad = [o for o in outcomes.values() if not o.ok]
    if bad:
        raise MontageError(f"{len(bad)} index shards failed; first: {bad[0].error}")
    entries = {path: {"digest": a.digest, "shard": shard_of(path, shards), "shots": len(a.shots)}
               for path, a in current.items()}
    touched = {entries[a.media.path]["shard"] for a in changed}
    touched |= {manifest["clips"][p].get("shard", 0) for p in removed}
    if manifest.get("shards") != shards:
        touched = set(range(shards))
    for s in touched:
        _write_shard(folder, s, sorted(p for p, e in entries.items() if e["shard"] == s), entries)
    write_atomic(folder / "manifest.json", json.dumps({
        "embedder": embedder.name, "version": embedder.version, "dim": embedder.dim, "shards": shards,
        "clips": entries}, indent=1))
    return {"clips": len(current), "embedded": len(changed), "removed": len(removed),
            "shards_rewritten": len(touched), "failed": len(failures)}


def _write_shard(folder: Path, shard: int, clips: Sequence[str], entries: dict[str, Any]) -> None:
    vectors, ids, sources, ins, outs = [], [], [], [], []
    for clip in clips:
        with np.load(folder / "clips" / f"{entries[clip]['digest']}.npz") as data:
            vectors.append(data["vectors"])
            ids += [f"{clip}#{i}" for i in data["shot"]]
            sources += [clip] * len(data["shot"])
            ins += list(data["start"])
            outs += list(data["end"])
    dim = vectors[0].shape[1] if vectors else 0
    _save_npz(folder / f"shard-{shard:03d}.npz", vectors=np.concatenate(vectors) if vectors else
              np.zeros((0, dim), np.float32), ids=np.array(ids, dtype=str), sources=np.array(sources, dtype=str),
              ins=np.array(ins, dtype=np.float64), outs=np.array(outs, dtype=np.float64))


def search(root: str | Path, query: np.ndarray, manager: Any, backend: Any, *, embedder_name: str,
           k: int = 10) -> list[Hit]:
    """Exact global top-k over every shard of the index (one backend task per shard)."""
    from .engine import run_shards

    embedder = manager.embedders.get(embedder_name)
    folder = index_folder(root, embedder)
    manifest = load_manifest(folder)
    if not manifest["clips"]:
        raise UsageError(f"{folder}: no index here yet (run `montage index LIBRARY --index {root}`)")
    tasks = [ShardTask(f"search-{s:03d}", "search", f"shard {s}",
                       SearchSpec(shard=str(folder / f"shard-{s:03d}.npz"), query=query.tolist(), k=k))
             for s in range(manifest["shards"]) if (folder / f"shard-{s:03d}.npz").exists()]
    outcomes = run_shards(backend, search_shard, tasks, on_event=lambda e: None)
    bad = [o for o in outcomes.values() if not o.ok]
    if bad:
        raise MontageError(f"{len(bad)} search shards failed; first: {bad[0].error}")
    return merge([outcomes[t.id].result for t in tasks], k)
