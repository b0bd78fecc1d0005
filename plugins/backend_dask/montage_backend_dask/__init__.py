"""Dask backend for montage: shards as Dask tasks on a cluster (``--scheduler``) or on a
LocalCluster sized to this machine, with worker deaths retried and named, and a pre-flight
contract that every worker runs the same release and sees the same files.

The backend lives in :mod:`.backend`, its shared clusters in :mod:`.clusters` and the contract in
:mod:`.contract`; they are imported when a job uses the backend, not to list it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from montage_core.hookspecs import Deferred, hookimpl, lazy_exports

SCHEDULER_ENV = "MONTAGE_DASK_SCHEDULER"
DESCRIPTION = f"Dask distributed: --scheduler tcp://HOST:PORT (or ${SCHEDULER_ENV}), else a LocalCluster"


def availability() -> str | None:
    """Why the backend cannot run here, or ``None``: ``distributed`` looked up, not imported."""
    import importlib.util

    if importlib.util.find_spec("distributed") is None:
        return "dask.distributed is not installed; pip install 'dask[distributed]'"
    return None


@hookimpl
def montage_register_backends(register: Callable[[Any], None]) -> None:
    # Listings read what is declared here; a job imports .backend (MontageManager.new_backend).
    register(Deferred("montage_backend_dask.backend:DaskBackend", name="dask", description=DESCRIPTION,
                      availability=availability, supports_dry_run=False))


@hookimpl
def montage_register_preflight_checks(register: Callable[[Any], None]) -> None:
    register(Deferred("montage_backend_dask.contract:DaskContract", name="dask",
                      description="every Dask worker reachable, on the same release and plugins, seeing the clips "
                                  "and the cache",
                      applies_to=lambda backend: backend == "dask"))


#: ``montage_backend_dask.DaskBackend``, imported on first use (submodules import as usual)
__getattr__ = lazy_exports("montage_backend_dask.backend", ("DaskBackend",))
