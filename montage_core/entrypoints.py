"""The ``montage`` entry points, without reading every installed distribution on every start.

``importlib.metadata.entry_points()`` opens and parses the ``entry_points.txt`` of every
distribution on ``sys.path`` (about 200 in a data-science environment) and the ``METADATA`` of
each plugin for its name and version; with the import of ``importlib.metadata`` and ``email``
that is about as much CPU as importing click. What it found is kept in the montage cache folder,
keyed on everything it was read from (only where that folder already exists): ``sys.path``, the meta-path finders, and the name, size and
modification time of every distribution folder's ``entry_points.txt`` (a ``stat`` each, no read).
Installing, removing, upgrading or editing any distribution changes the key, and the next start
reads the metadata again.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import zlib
from dataclasses import asdict, dataclass
from typing import Any

GROUP = "montage"
#: bump when the cached form changes
FORMAT = 1


@dataclass(frozen=True)
class PluginEntryPoint:
    """One entry point of the ``montage`` group with what the listing shows of its distribution."""

    name: str
    value: str  # "module" or "module:attribute"
    distribution: str
    version: str

    def load(self) -> Any:
        """The module (or the attribute) the entry point names, as ``EntryPoint.load`` does."""
        module, _, attribute = self.value.split("[")[0].partition(":")  # "[extras]" name no code
        obj: Any = importlib.import_module(module.strip())
        for part in filter(None, attribute.strip().split(".")):
            obj = getattr(obj, part)
        return obj


def _fingerprint() -> str:
    """What ``entry_points()`` would read, as stats (kept whole, so no two states can look alike)."""
    parts: list[str] = [sys.version, *(type(f).__qualname__ for f in sys.meta_path)]
    for entry in sys.path:
        parts.append(f"P{entry}")
        try:
            with os.scandir(entry or ".") as listing:
                names = sorted(e.name for e in listing if e.name.endswith((".dist-info", ".egg-info")))
        except OSError:  # not a folder (a zip, or gone): its own stat stands for it
            try:
                st = os.stat(entry)
                parts.append(f"F{st.st_size}:{st.st_mtime_ns}")
            except OSError:
                pass
            continue
        for name in names:
            try:
                st = os.stat(os.path.join(entry or ".", name, "entry_points.txt"))
                parts.append(f"{name}:{st.st_size}:{st.st_mtime_ns}")
            except OSError:
                parts.append(name)
    return "\n".join(parts)


def _read_metadata() -> list[PluginEntryPoint]:
    from importlib.metadata import entry_points

    found = []
    for ep in entry_points(group=GROUP):
        dist = getattr(ep, "dist", None)
        found.append(PluginEntryPoint(ep.name, ep.value, getattr(dist, "name", ep.value) or ep.value,
                                      getattr(dist, "version", "") or ""))
    return found


def plugin_entry_points() -> list[PluginEntryPoint]:
    """The ``montage`` group in ``importlib.metadata``'s order, from the cache while it is valid."""
    from .config import cache_dir
    from .models import write_atomic

    key = _fingerprint()
    # One file per sys.path: the console script and ``python -m`` (and tests) see different ones
    # and would otherwise take turns invalidating each other.
    folder = cache_dir(create=False)
    if not folder.is_dir():  # never created here: a command that caches nothing else leaves no trace
        return _read_metadata()
    path = folder / f"entry-points-{zlib.crc32(chr(0).join(sys.path).encode()):08x}.json"
    try:
        cached = json.loads(path.read_text())
        if cached["format"] == FORMAT and cached["key"] == key:
            return [PluginEntryPoint(**row) for row in cached["entry_points"]]
    except (OSError, ValueError, KeyError, TypeError):
        pass
    found = _read_metadata()
    try:
        write_atomic(path, json.dumps({"format": FORMAT, "key": key, "entry_points": [asdict(e) for e in found]}))
    except OSError:
        pass
    return found
