"""Where montage keeps its state: the analysis cache and the job store."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir(create: bool = True) -> Path:
    """``MONTAGE_CACHE_DIR``, else ``$XDG_CACHE_HOME/montage``, else ``~/.cache/montage``
    (created unless ``create`` is false: a start-up cache must not create folders, e.g. on a
    volume that is not mounted)."""
    base = os.environ.get("MONTAGE_CACHE_DIR")
    path = Path(base) if base else Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "montage"
    if create:
        path.mkdir(parents=True, exist_ok=True)
    return path


def state_dir() -> Path:
    """``MONTAGE_HOME``, else ``$XDG_STATE_HOME/montage``, else ``~/.local/state/montage``."""
    base = os.environ.get("MONTAGE_HOME")
    path = Path(base) if base else Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state") / "montage"
    path.mkdir(parents=True, exist_ok=True)
    return path
