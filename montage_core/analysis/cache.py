"""Content-addressed analysis cache: same bytes + same analyzer versions → no decode."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from ..config import cache_dir
from ..models import ClipAnalysis, write_atomic

_CHUNK = 1 << 20


def content_digest(path: str | Path, digest_size: int = 20) -> str:
    """BLAKE2b of a file's bytes, read a chunk at a time."""
    h = hashlib.blake2b(digest_size=digest_size)
    with Path(path).open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _digest_memo(path: Path) -> Path:
    st = path.stat()
    stamp = f"{path.resolve()}\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_ino}"
    # surrogateescape: a file name that is not UTF-8 (from an old camera, say) still has a key
    key = hashlib.blake2b(stamp.encode("utf-8", "surrogateescape"), digest_size=16).hexdigest()
    return cache_dir() / "digests" / key


def remembered_digest(path: str | Path) -> str | None:
    """The digest :func:`file_digest` remembered for the file as it is now, without reading it."""
    try:
        digest = _digest_memo(Path(path)).read_text().strip()
    except OSError:
        return None
    return digest if len(digest) == 40 and all(c in "0123456789abcdef" for c in digest) else None


def file_digest(path: str | Path) -> str:
    """BLAKE2b of the file's bytes, remembered per (path, size, mtime, inode) to avoid rehashing."""
    if (known := remembered_digest(path)) is not None:
        return known
    digest = content_digest(path)
    memo = _digest_memo(Path(path))
    memo.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(memo, digest)
    return digest


def probably_cached(path: str | Path, analyzers: dict[str, str], width: int) -> bool:
    """Whether an analysis of the file as it is now is (very likely) cached: a cheap look before
    starting workers for it; the real lookup still checks the entry."""
    digest = remembered_digest(path)
    return digest is not None and _entry(analysis_key(digest, analyzers, width)).is_file()


#: the form of a cached analysis (2: flashes kept as shots, long shots' windows; 3: weaker cuts against a
#: calm neighbourhood; 4: the ``track`` of the subject's position and motion for reframing); a new form
#: re-analyzes once
ANALYSIS_FORMAT = 4


def analysis_key(digest: str, analyzers: dict[str, str], width: int) -> str:
    spec = json.dumps({"analyzers": sorted(analyzers.items()), "width": width, "format": ANALYSIS_FORMAT})
    return f"{digest}-{hashlib.blake2b(spec.encode(), digest_size=8).hexdigest()}"


def _entry(key: str) -> Path:
    return cache_dir() / "analysis" / key[:2] / f"{key}.json"


def load(key: str, path: str) -> ClipAnalysis | None:
    """The cached analysis for ``key``, re-labelled with the clip's current ``path``."""
    try:
        data = json.loads(_entry(key).read_text(encoding="utf-8"))
        return ClipAnalysis.from_dict(data).with_clip_path(path)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def store(key: str, analysis: ClipAnalysis) -> None:
    entry = _entry(key)
    entry.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(entry, json.dumps(analysis.to_dict()))


def usage() -> dict[str, tuple[int, int]]:
    """Entries and bytes per cache area (analyses, time ranges, rendered segments)."""
    root = cache_dir()
    areas = {}
    for area in ("analysis", "ranges", "segments"):
        files = [p for p in (root / area).rglob("*") if p.is_file()]
        areas[area] = (len(files), sum(p.stat().st_size for p in files))
    return areas


def clear() -> int:
    """Delete every cached analysis, range and rendered segment; return how many files there were."""
    root = cache_dir()
    count = 0
    for area in ("analysis", "ranges", "segments"):
        for entry in (root / area).rglob("*"):
            if entry.is_file():
                os.unlink(entry)
                count += 1
    return count

def _range_entry(key: str, start: int, count: int | None) -> Path:
    return cache_dir() / "ranges" / key[:2] / f"{key}-{start}-{count if count is not None else 'end'}.npz"


def load_range(key: str, start: int, count: int | None) -> dict[str, Any] | None:
    """Per-frame series of a finished time-range shard (so a resumed job skips it)."""
    import numpy as np

    try:
        with np.load(_range_entry(key, start, count)) as data:
            return {name: data[name] for name in data.files}
    except (OSError, ValueError):
        return None


def store_range(key: str, start: int, count: int | None, series: dict[str, Any]) -> None:
    import io

    import numpy as np

    entry = _range_entry(key, start, count)
    entry.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **series)
    write_atomic(entry, buffer.getvalue())
