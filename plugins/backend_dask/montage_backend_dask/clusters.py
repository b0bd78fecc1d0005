"""Dask clusters shared by every job and stage of one process.

Starting a LocalCluster costs seconds (worker processes spawn, import distributed and montage,
then load the JIT kernels). A process that runs several jobs (a library caller, a test session)
or several stages pays that once: each key, a scheduler address or the spec of a LocalCluster,
has at most one client (and cluster) at a time.

- Before a shared cluster is handed out again its scheduler is asked who it is; one that does not
  answer, or a different scheduler answering at the same address (the old one died and another
  took its place), is never used again: a fresh client (and LocalCluster) takes its place.
- A LocalCluster starts only the workers there are shards for, and grows (never past the
  ``--workers`` it was asked for) when a later stage has more.
- Clusters montage started are closed when the process exits; a scheduler given by address is
  only disconnected from, never shut down.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("montage.dask")

#: the scheduler's own events (workers added and removed), published to every client that asks
CLUSTER_TOPIC = "all"

#: environment that spawned workers inherit and that changes what they do (cache folders, plugins,
#: thread counts): a LocalCluster started under other values is not reused.
_INHERITED = ("PATH", "PYTHONPATH", "HOME")
_INHERITED_PREFIXES = ("MONTAGE_", "NUMBA_", "DASK_")
#: seconds an existing scheduler has to answer before it counts as dead
ALIVE_TIMEOUT = 5.0

# Background chores of a LocalCluster's servers, off the critical path. The defaults (an event-loop
# health tick every 20 ms in each of scheduler, nannies and workers, a stack-sampling profiler every
# 10 ms in each worker, memory polled every 100 ms) cost about 0.1 core-second per second on a
# 2-worker cluster: 10-20 % of a small job's CPU. None of them is needed to schedule, restart a
# dead worker or kill one over its memory limit; they only feed the dashboard, which montage turns off.
QUIET_CONFIG: dict[str, Any] = {
    "distributed.worker.profile.enabled": False,
    "distributed.admin.tick.interval": "1s",
    "distributed.admin.system-monitor.interval": "2s",
    "distributed.worker.memory.monitor-interval": "500ms",
}


def local_key(max_workers: int) -> tuple[Any, ...]:
    """What a LocalCluster of this process is shared by: its size limit and the environment its
    workers inherit."""
    env = tuple(sorted((k, v) for k, v in os.environ.items()
                       if k in _INHERITED or k.startswith(_INHERITED_PREFIXES)))
    return ("local", max_workers, env)


@dataclass(eq=False)
class Shared:
    """One client (and the LocalCluster montage started, if any) and the jobs using it."""

    key: tuple[Any, ...]
    client: Any
    cluster: Any | None
    scheduler_id: str
    #: most workers this LocalCluster may grow to (0 for a scheduler given by address)
    max_workers: int = 0
    #: seconds from asking for the cluster to its first workers being connected
    startup_seconds: float = 0.0
    users: int = 0
    #: jobs it was handed to (more than one: reused)
    handed_out: int = 0
    _handlers: dict[int, Callable[[Any], None]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        # One subscription per client to the scheduler's own events, shared by the runs of every
        # job using it: a client keeps one handler per topic, and jobs may run side by side.
        self.client.subscribe_topic(CLUSTER_TOPIC, self._cluster_event)

    def _cluster_event(self, event: tuple[float, Any]) -> None:
        with self._lock:
            handlers = list(self._handlers.values())
        for handler in handlers:
            handler(event[1])

    def watch_cluster(self, handler: Callable[[Any], None]) -> int:
        with self._lock:
            token = id(handler)
            self._handlers[token] = handler
            return token

    def unwatch_cluster(self, token: int) -> None:
        with self._lock:
            self._handlers.pop(token, None)

    @property
    def local(self) -> bool:
        return self.cluster is not None

    def alive(self) -> bool:
        """The same scheduler still answers (a LocalCluster's also still runs)."""
        if self.client.status != "running":
            return False
        if self.cluster is not None and getattr(self.cluster.status, "name", "") != "running":
            return False
        try:
            identity = self.client.sync(self.client.scheduler.identity, callback_timeout=ALIVE_TIMEOUT)
        except Exception:  # a closed comm, a timeout, a refused connection: all mean gone
            return False
        return identity.get("id") == self.scheduler_id

    def workers(self) -> int:
        return len(self.client.scheduler_info(n_workers=-1)["workers"])

    def grow(self, wanted: int) -> None:
        """A LocalCluster with fewer workers than ``wanted`` (at most its limit) starts more; the
        shards already queued start on the workers there are meanwhile."""
        if self.cluster is None:
            return
        wanted = min(wanted, self.max_workers)
        if len(self.cluster.worker_spec) < wanted:
            log.debug("Dask LocalCluster: %d → %d workers", len(self.cluster.worker_spec), wanted)
            self.cluster.scale(wanted)

    def close(self) -> None:
        """Disconnect; a LocalCluster montage started is shut down (its workers and what they run)."""
        if self.cluster is not None:
            self._stop_workers()
        with contextlib.suppress(Exception):
            # Unsubscribed first: a scheduler announces the departing client on this topic, to the
            # departing client too, and says so in a CRITICAL log line when its comm is already shut.
            self.client.unsubscribe_topic(CLUSTER_TOPIC)
        with contextlib.suppress(Exception):
            self.client.close(timeout=10)
        if self.cluster is not None:
            with contextlib.suppress(Exception):
                self.cluster.close(timeout=10)


    def _stop_workers(self) -> None:
        """End a LocalCluster's worker processes outright, with what they started (ffmpeg). Nothing
        in them needs a goodbye: results were gathered, caches are written by rename; a graceful
        close costs about a second per cluster (each worker asked, its exit awaited), which is
        most of a small job's shutdown. Each nanny is told first not to start its worker again."""
        from montage_core.procs import kill_tree

        for nanny in list(getattr(self.cluster, "workers", {}).values()):
            with contextlib.suppress(Exception):
                nanny.close_gracefully(reason="montage: cluster closing")
                if nanny.pid:
                    kill_tree(nanny.pid)


_registry: dict[tuple[Any, ...], Shared] = {}
_registry_lock = threading.Lock()
_atexit_registered = False


def acquire(key: tuple[Any, ...], start: Callable[[], tuple[Any, Any | None]], max_workers: int = 0) -> Shared:
    """The live shared cluster for ``key``, else a new one from ``start()`` (``(client, cluster)``).
    The caller is counted as a user until :func:`release` or :func:`discard`."""
    global _atexit_registered
    with _registry_lock:
        shared = _registry.get(key)
        if shared is not None and not shared.alive():
            log.debug("Dask: the cluster at %s is gone; starting afresh", _address(shared))
            _forget(shared)
            shared = None
        if shared is None:
            if key[0] == "local":
                # One LocalCluster at a time: an idle one under other settings would only hold memory.
                for other in [s for s in _registry.values() if s.local and not s.users]:
                    _forget(other)
            began = time.perf_counter()
            client, cluster = start()
            try:
                identity = client.scheduler_info()
                shared = Shared(key, client, cluster, str(identity.get("id", "")), max_workers,
                                startup_seconds=time.perf_counter() - began)
            except BaseException:
                with contextlib.suppress(Exception):
                    client.close()
                if cluster is not None:
                    with contextlib.suppress(Exception):
                        cluster.close()
                raise
            _registry[key] = shared
            if not _atexit_registered:
                from multiprocessing import util

                # Closed before multiprocessing's exit clean-up terminates its daemon processes (the
                # workers; their nannies would start them again mid-exit), whether that runs at
                # exit or earlier (montage's CLI runs it itself to stop the resource tracker).
                util.Finalize(None, close_all, exitpriority=100)
                # And before distributed's own exit handlers (registered earlier, so run later),
                # while the clusters' event loop still runs.
                atexit.register(close_all)
                _atexit_registered = True
        shared.users += 1
        shared.handed_out += 1
        return shared


def release(shared: Shared) -> None:
    """A job is done with ``shared``; it stays up for the next one in this process."""
    with _registry_lock:
        shared.users = max(0, shared.users - 1)


def discard(shared: Shared) -> None:
    """``shared`` must not be used again (a job aborted on it, or it was lost): closed now."""
    with _registry_lock:
        shared.users = max(0, shared.users - 1)
        _forget(shared)


def _forget(shared: Shared) -> None:
    if _registry.get(shared.key) is shared:
        del _registry[shared.key]
    shared.close()


def close_all() -> None:
    """Close every shared client and the LocalClusters montage started (at exit; tests)."""
    with _registry_lock:
        for shared in list(_registry.values()):
            _forget(shared)


def live() -> list[Shared]:
    """The shared clusters of this process (for tests and diagnostics)."""
    with _registry_lock:
        return list(_registry.values())


def _address(shared: Shared) -> str:
    with contextlib.suppress(Exception):
        return str(shared.client.scheduler.address)
    return "?"
