"""Dask backend: shards as Dask tasks on a cluster (or a LocalCluster sized to this machine).

Dask does the scheduling; montage's core engine does classification, bounded retries and
persistence. A worker lost mid-shard is rescheduled by Dask on another worker, and the engine is
told (a ``retrying`` event: one warning line, one more attempt in the job store, see
:mod:`.deaths`); results are gathered as each shard finishes and released at once, so a worker
dying later never takes finished work with it. Progress events travel over Dask's event topics
(``Worker.log_event`` → ``Client.subscribe_topic``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, replace
from typing import Any

from montage_core.errors import BackendLost, MontageError
from montage_core.hookspecs import hookimpl
from montage_core.interfaces import (Backend, ProgressEvent, ShardFunction, ShardOutcome, ShardTask,
                                     outcome_from_exception)
from montage_core.specs import ShardSpec

from .deaths import DeathWatch, GaveUp, Rerun

SCHEDULER_ENV = "MONTAGE_DASK_SCHEDULER"
#: the scheduler's own events (workers added and removed), published to every client that asks
CLUSTER_TOPIC = "all"


def _lost(exc: BaseException) -> BackendLost:
    reason = (str(exc).strip().splitlines() or [""])[0]
    return BackendLost(f"lost the Dask cluster ({type(exc).__name__}: {reason}); finished shards are kept")


def _lost_cluster_errors() -> tuple[type[BaseException], ...]:
    """What a vanished scheduler or connection raises (cancelled futures, closed client or comm)."""
    from concurrent.futures import CancelledError

    from distributed.client import ClosedClientError, FutureCancelledError
    from distributed.comm.core import CommClosedError

    return (CancelledError, FutureCancelledError, ClosedClientError, CommClosedError, ConnectionError)


def _run_on_worker(fn: ShardFunction, task: ShardTask, topic: str) -> tuple[str, Any]:
    """Runs inside a Dask worker: the shard, with its progress events published on ``topic``."""
    from distributed import get_worker

    worker = get_worker()
    host = worker.address.split("://")[-1].rsplit(":", 1)[0]
    if str(worker.name) == worker.address:  # started without --name: say where it runs
        name = f"worker@{worker.address.split('://')[-1]}"
    else:
        name = str(worker.name) if str(worker.name).startswith(("worker", "node")) else f"worker-{worker.name}"

    def emit(event: ProgressEvent) -> None:
        event.worker, event.host = name, host
        worker.log_event(topic, {"montage": asdict(event)})  # nested: Dask adds its own "worker" key

    # Where the shard runs, before it runs: if this worker dies under it, the coordinator knows
    # the shard was running here (not just queued) and names both.
    worker.log_event(topic, {"start": task.id, "address": worker.address, "name": name})
    if isinstance(task.payload, ShardSpec) and task.payload.resolve_on_node:
        from montage_core.worker import for_this_node

        task = replace(task, payload=for_this_node(task.payload))  # this worker's encoders / decoder
    return name, fn(task, emit)


class DaskBackend(Backend):
    name = "dask"
    description = f"Dask distributed: --scheduler tcp://HOST:PORT (or ${SCHEDULER_ENV}), else a LocalCluster"

    def __init__(self) -> None:
        self.scheduler: str | None = None
        self.workers: int | None = None
        self._client: Any = None
        self._cluster: Any = None
        self._warming: threading.Thread | None = None
        self._aborting = False

    def availability(self) -> str | None:
        import importlib.util

        # Looked up, not imported: listing plugins must not pay for importing distributed.
        if importlib.util.find_spec("distributed") is None:
            return "dask.distributed is not installed; pip install 'dask[distributed]'"
        return None

    def configure(self, scheduler: str | None = None, workers: int | None = None) -> None:
        """Scheduler address (else ``$MONTAGE_DASK_SCHEDULER``, else a LocalCluster of ``workers``)."""
        self.scheduler = scheduler
        self.workers = workers

    @property
    def remote_nodes(self) -> bool:  # type: ignore[override]
        """Workers of a scheduler given by address may run anywhere: each resolves its own
        encoders and decoder. A LocalCluster's workers share this host's hardware."""
        return bool(self.scheduler or os.environ.get(SCHEDULER_ENV))

    @property
    def client(self) -> Any:
        if self._warming is not None and self._warming is not threading.current_thread():
            self._warming.join()
            self._warming = None
        if self._client is None:
            from distributed import Client, LocalCluster

            address = self.scheduler or os.environ.get(SCHEDULER_ENV)
            # distributed's own log lines (reconnect attempts, tracebacks of a closed comm) would bury
            # montage's one line about what happened; they stay available with -v.
            if not logging.getLogger("montage").isEnabledFor(logging.DEBUG):
                for name in [n for n in logging.root.manager.loggerDict if n.split(".")[0] == "distributed"]:
                    logging.getLogger(name).setLevel(logging.CRITICAL)  # distributed sets its children's own
            if address:
                timeout = float(os.environ.get("MONTAGE_DASK_CONNECT_TIMEOUT", 10))
                try:
                    self._client = Client(address, timeout=f"{timeout}s")
                except (OSError, TimeoutError) as exc:
                    raise MontageError(f"cannot reach the Dask scheduler at {address} within {timeout:g} s "
                                       f"({type(exc).__name__}); is `dask scheduler` running there?") from None
            else:
                workers = self.workers or int(os.environ.get("MONTAGE_WORKERS", 0)) or (os.cpu_count() or 1)
                # One single-threaded process per core: shards are CPU-bound and release the GIL only
                # in places, and a crashing shard must only take its own process down.
                share = str(max(1, (os.cpu_count() or 1) // workers))  # each worker's share of the cores
                env = {"NUMBA_NUM_THREADS": os.environ.get("NUMBA_NUM_THREADS", share)}
                if "MONTAGE_DECODE_THREADS" in os.environ:
                    env["MONTAGE_DECODE_THREADS"] = os.environ["MONTAGE_DECODE_THREADS"]
                self._cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                             dashboard_address=None, silence_logs=40, env=env)
                self._client = Client(self._cluster)
        return self._client

    def warm(self, shards: int | None = None) -> None:
        """Start the cluster and load the kernels on every worker in the background, while the
        coordinator probes and hashes; the first ``run`` waits for it."""
        if self._warming is None and self._client is None:
            self._warming = threading.Thread(target=self._start_and_warm, name="dask-warm", daemon=True)
            self._warming.start()

    def _start_and_warm(self) -> None:
        from montage_core.builtin.backend_local import warm_up

        try:
            self.client.wait_for_workers(1, timeout=60)
            self.client.run(warm_up)
        except Exception:  # the real error surfaces in run()
            pass

    def worker_resources(self) -> dict[str, dict[str, float]]:
        """Resources each worker advertises (``accel-nvenc`` etc., from ``dask worker --resources``)."""
        return {addr: dict(info.get("resources", {}))
                for addr, info in self.client.scheduler_info()["workers"].items()}

    def run(self, fn: ShardFunction, tasks: Sequence[ShardTask],
            on_event: Callable[[ProgressEvent], None]) -> Iterator[ShardOutcome]:
        client = self.client  # first: it waits for the warm-up thread, which may be importing distributed
        lost = _lost_cluster_errors()
        topic = f"montage-progress-{uuid.uuid4().hex[:8]}"
        # Finished futures and reruns arrive on one queue, so this thread reports both as they
        # happen (a rerun's line appears when the worker is lost, not when some shard next finishes).
        inbox: queue.Queue[Any] = queue.Queue()
        watch = DeathWatch(inbox)

        def on_progress(event: tuple[float, dict[str, Any]]) -> None:
            message = event[1]
            if "start" in message:
                watch.started(message["start"], message["address"], message["name"])
            else:
                on_event(ProgressEvent(**message["montage"]))

        client.subscribe_topic(topic, on_progress)
        client.subscribe_topic(CLUSTER_TOPIC, lambda event: watch.cluster_event(event[1]))
        available = {name for res in self.worker_resources().values() for name in res}
        futures = {}
        try:
            for task in tasks:
                if self.remote_nodes and isinstance(task.payload, ShardSpec):
                    task = replace(task, payload=replace(task.payload, resolve_on_node=True))
                wanted = task.payload.placement.resources if isinstance(task.payload, ShardSpec) else {}
                resources = wanted if set(wanted) <= available else None  # nobody has it: run anywhere
                future = client.submit(_run_on_worker, fn, task, topic, key=f"{task.id}-{uuid.uuid4().hex[:8]}",
                                       pure=False, resources=resources)
                futures[future] = task
                watch.submitted(task, future)
                future.add_done_callback(inbox.put)  # called once finished, failed or cancelled
            reported: set[str] = set()
            while len(reported) < len(futures):
                item = inbox.get()
                if isinstance(item, Rerun):
                    if item.task.id not in reported:  # a result lost after it was taken is no rerun of ours
                        on_event(ProgressEvent.of(item.task, "retrying", message=item.message, worker=item.worker))
                    continue
                if isinstance(item, GaveUp):
                    # Cancelled here (the event handler runs on the client's loop, where a blocking
                    # cancel would wait on itself); its cancellation arrives later and is skipped.
                    reported.add(item.task.id)
                    watch.finished(item.task.id)
                    with contextlib.suppress(*lost):
                        item.future.cancel()
                    yield item.outcome
                    continue
                task = futures[item]
                if task.id in reported:
                    continue
                reported.add(task.id)
                watch.finished(task.id)
                yield self._outcome(task, item, watch)
                item.release()  # the result lives here now; a worker dying later cannot lose it
        except lost as exc:
            if self._aborting:
                raise
            raise _lost(exc) from None
        finally:
            for name in (topic, CLUSTER_TOPIC):
                with contextlib.suppress(*lost, ValueError):
                    client.unsubscribe_topic(name)

    def _outcome(self, task: ShardTask, future: Any, watch: DeathWatch) -> ShardOutcome:
        from distributed import KilledWorker

        try:
            worker, result = future.result()
            return ShardOutcome(task, True, result, worker=worker)
        except KilledWorker as exc:
            return watch.killed(task, exc)
        except _lost_cluster_errors() as exc:
            # Cancelled futures, a closed client, a dropped connection: the cluster is gone, the clip is fine.
            if not self._aborting:
                raise _lost(exc) from None
            raise
        except Exception as exc:
            return outcome_from_exception(task, exc, transient=(TimeoutError,))

    def abort(self) -> None:
        self._aborting = True
        self.close()

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
        if self._cluster is not None:
            self._cluster.close()
            self._cluster = None


@hookimpl
def montage_register_backends(register: Callable[[Any], None]) -> None:
    register(DaskBackend())


@hookimpl
def montage_register_preflight_checks(register: Callable[[Any], None]) -> None:
    from .contract import DaskContract

    register(DaskContract())
