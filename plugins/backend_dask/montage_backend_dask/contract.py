"""The contract every Dask worker must meet, checked before a job starts (``montage preflight --backend dask``).

Shards carry file paths, not bytes, and render results are files in the cache; so every worker must

- read the job's clips and music **at the same paths** as the coordinator (a shared mount);
- share the coordinator's cache folder (``MONTAGE_CACHE_DIR``) at the same path: a segment a
  worker renders is joined by the coordinator from there;
- run the same montage release with the same plugins (analyzer versions are part of cache keys);
- have ffmpeg.

Each worker is asked (``client.run``); every mismatch is one line naming the worker.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

from montage_core.interfaces import PreflightCheck

#: at most this many unreadable paths are named per worker (the rest are counted)
SHOWN_PATHS = 3


def worker_report(paths: list[str], mark: str) -> dict[str, Any]:
    """Runs on each worker: its versions, what it cannot read, and the shared-cache mark it wrote."""
    import montage_core
    from montage_core.config import cache_dir
    from montage_core.ffmpeg import ffmpeg_binary
    from montage_core.plugins import get_manager

    report: dict[str, Any] = {
        "montage": montage_core.__version__,
        "plugins": {r.name: r.version for r in get_manager().describe() if not r.error and not r.builtin},
        "unreadable": [p for p in paths if not os.access(p, os.R_OK)],
        "cache": str(cache_dir()), "ffmpeg": "", "mark_written": False,
    }
    try:
        report["ffmpeg"] = ffmpeg_binary()
        from montage_core.accel import probe_all

        report["encoders"] = sorted(n for n, probe in probe_all(list(get_manager().accelerators)).items()
                                    if probe.available)
    except Exception as exc:  # reported, not raised: the coordinator names this worker
        report["ffmpeg_problem"] = str(exc)
    try:
        folder = cache_dir()
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f".montage-shared-{mark}").write_text(mark)
        report["mark_written"] = True
    except OSError as exc:
        report["cache_problem"] = f"{exc.strerror}"
    return report


def contract_problems(client: Any, paths: list[str], accel: str = "auto") -> list[str]:
    """One line per way a worker of ``client``'s cluster breaks the contract."""
    import montage_core
    from montage_core.config import cache_dir
    from montage_core.plugins import get_manager

    mark = secrets.token_hex(8)
    reports = client.run(worker_report, paths, mark)
    names = {address: info.get("name", address) for address, info in client.scheduler_info()["workers"].items()}
    reports = {f"{names.get(address, address)} ({address})": report for address, report in reports.items()}
    here = {r.name: r.version for r in get_manager().describe() if not r.error and not r.builtin}
    shared = cache_dir() / f".montage-shared-{mark}"
    problems = []
    try:
        for worker, report in sorted(reports.items()):
            if report["montage"] != montage_core.__version__:
                problems.append(f"Dask worker {worker} runs montage {report['montage']}, this machine "
                                f"{montage_core.__version__}: install the same release on every worker")
            for name in sorted(set(here) | set(report["plugins"])):
                if here.get(name) != report["plugins"].get(name):
                    problems.append(f"Dask worker {worker} has plugin {name} {report['plugins'].get(name) or 'missing'}, "
                                    f"this machine {here.get(name) or 'missing'}: install the same plugins on every worker")
            if unreadable := report["unreadable"]:
                more = f" and {len(unreadable) - SHOWN_PATHS} more" if len(unreadable) > SHOWN_PATHS else ""
                problems.append(f"Dask worker {worker} cannot read {', '.join(unreadable[:SHOWN_PATHS])}{more}: "
                                "every worker needs the clips and music at the same paths (a shared mount)")
            if "ffmpeg_problem" in report:
                problems.append(f"Dask worker {worker} has no ffmpeg: {report['ffmpeg_problem']}")
            if not report["mark_written"]:
                problems.append(f"Dask worker {worker} cannot write its cache folder {report['cache']} "
                                f"({report.get('cache_problem', '?')})")
            elif report["cache"] != str(cache_dir()) or not shared.is_file():
                problems.append(f"Dask worker {worker} caches in {report['cache']}, which this machine does not see "
                                f"as its own {cache_dir()}: set MONTAGE_CACHE_DIR to one shared folder at the same "
                                "path on every machine")
    finally:
        shared.unlink(missing_ok=True)
    if accel not in ("auto", "software") and not any(accel in r.get("encoders", ()) for r in reports.values()):
        found = "; ".join(f"{w}: {', '.join(r.get('encoders', [])) or 'none'}" for w, r in sorted(reports.items()))
        problems.append(f"--accel {accel}: no Dask worker can encode with it (working encoders: {found}); "
                        "use --accel auto, or start workers on machines that have it")
    return problems


class DaskContract(PreflightCheck):
    name = "dask"
    description = "every Dask worker reachable, on the same release and plugins, seeing the clips and the cache"

    def applies_to(self, backend: str) -> bool:
        return backend == "dask"

    def run(self, context: dict[str, Any]) -> list[str]:
        from montage_core.errors import MontageError

        backend = context["backend"]
        if not backend.remote_nodes:  # a LocalCluster on this machine shares everything with it
            return []
        try:
            client = backend.client
        except MontageError as exc:
            return [str(exc)]
        try:
            client.wait_for_workers(1, timeout=float(os.environ.get("MONTAGE_DASK_CONNECT_TIMEOUT", 10)))
        except (TimeoutError, OSError):
            return [f"no Dask worker is connected to {backend.scheduler}: start some with "
                    f"`dask worker {backend.scheduler}`"]
        options = context.get("options")
        paths = [*context.get("clips", []), *([options.music] if options is not None and options.music else [])]
        return contract_problems(client, [str(Path(p)) for p in paths], getattr(options, "accel", "auto"))
