"""What ``montage plugins`` reports: each plugin, what it registered, and whether it can work here."""

from __future__ import annotations

from typing import Any

from .plugins import MontageManager, get_manager


def _availability(backend: Any) -> str | None:
    """A backend's reason it cannot run here (``None``: it can); a crash in it is a reason too."""
    try:
        return backend.availability()
    except Exception as exc:  # one plugin's bug must not hide every other plugin from the listing
        return f"availability check crashed: {type(exc).__name__}: {exc}"


def plugin_rows(show_all: bool, manager: MontageManager | None = None) -> list[dict[str, Any]]:
    """One row per plugin (built-ins only with ``show_all``); broken ones have ``available`` false and the error."""
    manager = manager or get_manager()
    records = manager.describe()
    objects: dict[str, list[dict[str, Any]]] = {}
    for backend in manager.backends:
        reason = _availability(backend)
        objects.setdefault(manager.backends.origin(backend.name), []).append(
            {"kind": "backend", "name": backend.name, "available": reason is None, "reason": reason or ""})
    from .accel import probe_all

    for name, probe in probe_all(list(manager.accelerators)).items():
        objects.setdefault(manager.accelerators.origin(name), []).append(
            {"kind": "accelerator", "name": name, "available": probe.available, "reason": probe.reason})
    rows = []
    for record in records:
        if record.builtin and not show_all:
            continue
        rows.append({
            "name": record.name, "version": record.version, "builtin": record.builtin, "module": record.module,
            "hooks": record.hooks, "registered": record.registered, "available": not record.error,
            "reason": record.error, "failed_in": record.failed_in, "objects": objects.get(record.name, []),
        })
    return rows
