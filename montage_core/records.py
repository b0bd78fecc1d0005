"""Cache files checked against the record written beside them.

A file enters a cache (a rendered segment, a mastered sound) only once it was checked, and the
record written then (``NAME.json``: its size, its BLAKE2b and what the check found) is what every
later reuse compares it with, cheaply: a file cut short by a full disk, damaged since, or written
by a run that never got to check it, differs from its record and is made again.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .analysis.cache import content_digest
from .models import write_atomic


def record_path(path: Path) -> Path:
    return path.with_suffix(".json")


def write_record(path: Path, **facts: Any) -> None:
    """Record ``path`` (in place, checked) with its size, digest and ``facts``."""
    write_atomic(record_path(path), json.dumps({**facts, "size": path.stat().st_size,
                                                "blake2b": content_digest(path, 16)}))


def record_problem(path: Path, **facts: Any) -> str | None:
    """Why ``path`` cannot be reused ("" when it does not exist), or None when it matches its
    record and the record holds ``facts``."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return ""
    try:
        record = json.loads(record_path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return "no record of its check"
    except (OSError, ValueError) as exc:
        return f"its check record is unreadable ({exc})"
    for key, value in facts.items():
        if record.get(key) != value:
            return f"its record says {key} {record.get(key)}, {value} is needed"
    if record.get("size") != size:
        return f"{size} bytes where {record.get('size')} were written"
    if record.get("blake2b") != content_digest(path, 16):
        return "its content changed since it was written"
    return None
