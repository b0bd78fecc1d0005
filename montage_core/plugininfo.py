"""What ``montage plugins`` reports: each plugin, what it registered, and whether it can work here."""

from __future__ import annotations

from typing import Any

from .plugins import get_manager


def plugin_rows(show_all: bool) -> list[dict[str, Any]]:
    manager = get_manager()
    records = manager.describe()
    objects: dict[str, list[dict[str, Any]]] = {}
    for backend in manager.backends:
        reason = backend.availability()
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
            "reason": record.error, "objects": objects.get(record.name, []),
        })
    return rows
