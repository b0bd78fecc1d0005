"""The Dask backend: shards as Dask tasks on a cluster (or a LocalCluster sized to this machine).

Dask does the scheduling; montage's core engine does classification, bounded retries and
persistence. A worker lost mid-shard is rescheduled by Dask on another worker, and the engine is
told (a ``retrying`` event: one warning line, one more attempt in the job store, see
:mod:`.deaths`); results are gathered as each shard finishes and released at once, so a worker
dying later never takes finished work with it. Progress events travel over Dask's event topics
(``Worker.log_event`` → ``Client.subscribe_topic``).

Every job and stage of one process shares one cluster per scheduler address or LocalCluster
spec (:mod:`.clusters`): a LocalCluster starts once, with no more workers than the first stage
has shards, and grows for a later stage with more.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, replace
from typing import Any

from montage_core.errors import BackendLost, MontageError
from montage_core.interfaces import (Backend, ProgressEvent, ShardFunction, ShardOutcome, ShardTask,
                                     outcome_from_exception)
from montage_core.jit import thread_share
from montage_core.specs import ShardSpec

from . import clusters
from .clusters import CLUSTER_TOPIC
from .deaths import DeathWatch, GaveUp, Rerun

from . import DESCRIPTION, SCHEDULER_ENV, availability

log = logging.getLogger("montage.dask")


def _lost(exc: BaseException) -> BackendLost:
    reason = (str(exc).strip().splitlines() or [""])[0]
    return BackendLost(f"lost the Dask cluster ({type(exc).__name__}: {reason}); finished shards are kept")


def _lost_cluster_errors() -> tuple[type[BaseException], ...]:
    """What a vanished scheduler or connection raises (cancelled futures, closed client or comm)."""
    from concurrent.futures import CancelledError

    from distributed.client import ClosedClientError, FutureCancelledError
    from distributed.comm.core import CommClosedError

    return (CancelledError, FutureCancelledError, ClosedClientError, CommClosedError, ConnectionError)


def _connect_to(address: str) -> Any:
    """A client of the scheduler at ``address``, or one line on why there is none."""
    from distributed import Client

    timeout = float(os.environ.get("MONTAGE_DASK_CONNECT_TIMEOUT", 10))
    try:
        return Client(address, timeout=f"{timeout}s")
    except (OSError, TimeoutError) as exc:
        raise MontageError(f"cannot reach the Dask scheduler at {address} within {timeout:g} s "
                           f"({type(exc).__name__}); is `dask scheduler` running there?") from None


def _start_local(most: int, first: int) -> tuple[Any, Any]:
    """A LocalCluster of ``first`` workers (it may grow to ``most``) and its client."""
    import dask
    from distributed import Client, LocalCluster
    from distributed.system import MEMORY_LIMIT

    # One single-threaded process per worker: shards are CPU-bound and release the GIL only in
    # places, and a crashing shard must only take its own process down. Numba's pool may use every
    # core; each shard is given its share of them (``_run_on_worker``), as local workers are.
    env = {"NUMBA_NUM_THREADS": os.environ.get("NUMBA_NUM_THREADS", str(os.cpu_count() or 1))}
    if "MONTAGE_DECODE_THREADS" in os.environ:
        env["MONTAGE_DECODE_THREADS"] = os.environ["MONTAGE_DECODE_THREADS"]
    # The nannies live in this process (no process of their own) and start a worker again after a
    # death, which the death accounting (deaths.py) counts on. Each worker's memory limit is its
    # share of the machine among the most workers the cluster may have, whatever it starts with.
    with dask.config.set(clusters.QUIET_CONFIG):
        cluster = LocalCluster(n_workers=first, threads_per_worker=1, processes=True, dashboard_address=None,
                               silence_logs=40, env=env, memory_limit=MEMORY_LIMIT // most)
    try:
        client = Client(cluster)
        client.wait_for_workers(first, timeout=60)
    except BaseException:
        cluster.close()
        raise
    return client, cluster


def _run_on_worker(fn: ShardFunction, task: ShardTask, topic: str, threads: int | None = None) -> tuple[str, Any]:
    """Runs inside a Dask worker: the shard, with its progress events published on ``topic``;
    ``threads``: the cores this shard may use (LocalCluster workers only, one shard per worker)."""
    from distributed import get_worker

    if threads:
        from montage_core.jit import SHARD_THREADS

        os.environ[SHARD_THREADS] = str(threads)
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
    description = DESCRIPTION

    def __init__(self) -> None:
        self.scheduler: str | None = None
        self.workers: int | None = None
        #: this job's share of the process's cluster (see :mod:`.clusters`); None before the first use
        self._shared: clusters.Shared | None = None
        self._warming: threading.Thread | None = None
        self._warm_seconds: float | None = None
        self._reported = False
        self._aborting = False
        self._closed = False
        self._lock = threading.Lock()
        #: the running stage's futures and deaths, for abort
        self._futures: dict[Any, ShardTask] = {}
        self._watch: DeathWatch | None = None

    def availability(self) -> str | None:
        return availability()

    def configure(self, scheduler: str | None = None, workers: int | None = None) -> None:
        """Scheduler address (else ``$MONTAGE_DASK_SCHEDULER``, else a LocalCluster of ``workers``)."""
        self.scheduler = scheduler
        self.workers = workers

    @property
    def address(self) -> str | None:
        return self.scheduler or os.environ.get(SCHEDULER_ENV) or None

    @property
    def remote_nodes(self) -> bool:  # type: ignore[override]
        """Workers of a scheduler given by address may run anywhere: each resolves its own
        encoders and decoder. A LocalCluster's workers share this host's hardware."""
        return bool(self.address)

    def max_workers(self) -> int:
        """Most workers a LocalCluster of this job may have: ``--workers``, ``$MONTAGE_WORKERS``, the cores."""
        return self.workers or int(os.environ.get("MONTAGE_WORKERS", 0)) or (os.cpu_count() or 1)

    @property
    def client(self) -> Any:
        return self._connect().client

    def _connect(self, shards: int | None = None) -> clusters.Shared:
        """This job's cluster: the process's live one for the same address or spec, else a new one
        (a LocalCluster of no more workers than ``shards``, when that is known)."""
        warm_thread = threading.current_thread() is self._warming
        if self._warming is not None and not warm_thread:
            self._warming.join()
            self._warming = None
        with self._lock:
            if not warm_thread:
                self._closed = False  # used again after close(): a job of its own, like a new backend
            if self._shared is not None:
                return self._shared
        import distributed  # noqa: F401 - imported first: importing it sets its loggers' levels

        # distributed's own log lines (reconnect attempts, tracebacks of a closed comm) would bury
        # montage's one line about what happened; they stay available with -v.
        if not logging.getLogger("montage").isEnabledFor(logging.DEBUG):
            for name in [n for n in logging.root.manager.loggerDict if n.split(".")[0] == "distributed"]:
                logging.getLogger(name).setLevel(logging.CRITICAL)  # distributed sets its children's own
        address = self.address
        if address:
            shared = clusters.acquire(("address", address), lambda: (_connect_to(address), None))
        else:
            most = self.max_workers()
            first = max(1, min(most, shards or most))
            shared = clusters.acquire(clusters.local_key(most), lambda: (_start_local(most, first)), most)
        with self._lock:
            if self._closed and warm_thread:  # the job ended (or aborted) while its cluster was starting
                clusters.release(shared)
                raise MontageError("the Dask backend was closed while its cluster started")
            self._shared = shared
        return shared

    def warm(self, shards: int | None = None) -> None:
        """Start the cluster (no more workers than ``shards``) and load the kernels on every worker in
        the background, while the coordinator probes and hashes; the first ``run`` waits for it."""
        if self._warming is None and self._shared is None:
            self._warming = threading.Thread(target=self._start_and_warm, args=(shards,), name="dask-warm",
                                             daemon=True)
            self._warming.start()

    def _start_and_warm(self, shards: int | None) -> None:
        from montage_core.builtin.backend_local import warm_up

        try:
            shared = self._connect(shards)
            began = time.perf_counter()
            shared.client.wait_for_workers(1, timeout=60)
            shared.client.run(warm_up)  # already loaded on the workers of a reused cluster: quick
            self._warm_seconds = time.perf_counter() - began
        except Exception:  # the real error surfaces in run()
            pass

    def startup(self) -> dict[str, Any]:
        """How this job's cluster came to be: ``started`` (a LocalCluster montage started for it),
        ``reused`` or ``connected``; its seconds to first workers and to kernels loaded; its workers."""
        shared = self._connect()
        how = "reused" if shared.handed_out > 1 else ("started" if shared.local else "connected")
        return {"how": how, "address": str(shared.client.scheduler.address), "workers": shared.workers(),
                "cluster_seconds": 0.0 if how == "reused" else shared.startup_seconds,
                "warm_seconds": self._warm_seconds}

    def _report_startup(self) -> None:
        """One line per job on where its cluster came from and what starting it cost, apart from the work."""
        if self._reported:
            return
        self._reported = True
        info = self.startup()
        warm = f", kernels loaded in {info['warm_seconds']:.1f} s" if info["warm_seconds"] is not None else ""
        if info["how"] == "reused":
            log.info("Dask: reusing this process's cluster at %s (%d workers%s)", info["address"], info["workers"],
                     warm)
        elif info["how"] == "started":
            log.info("Dask: LocalCluster of %d workers up in %.1f s%s", info["workers"], info["cluster_seconds"], warm)
        else:
            log.info("Dask: connected to %s in %.1f s (%d workers%s)", info["address"], info["cluster_seconds"],
                     info["workers"], warm)

    def worker_resources(self) -> dict[str, dict[str, float]]:
        """Resources each worker advertises (``accel-nvenc`` etc., from ``dask worker --resources``)."""
        return {addr: dict(info.get("resources", {}))
                for addr, info in self.client.scheduler_info(n_workers=-1)["workers"].items()}

    def run(self, fn: ShardFunction, tasks: Sequence[ShardTask],
            on_event: Callable[[ProgressEvent], None]) -> Iterator[ShardOutcome]:
        # First: it waits for the warm-up thread, which may be importing distributed.
        shared = self._connect(len(tasks))
        client = shared.client
        self._report_startup()
        shared.grow(len(tasks))  # a later stage with more shards than the cluster has workers
        # A LocalCluster's shards get this host's cores between them, as the local backend's do
        # (all of them for a lone shard); a remote worker's cores are its own business.
        threads = thread_share(os.cpu_count() or 1, shared.max_workers, len(tasks)) if shared.local else None
        lost = _lost_cluster_errors()
        topic = f"montage-progress-{uuid.uuid4().hex[:8]}"
        # Finished futures and reruns arrive on one queue, so this thread reports both as they
        # happen (a rerun's line appears when the worker is lost, not when some shard next finishes).
        inbox: queue.Queue[Any] = queue.Queue()
        watch = self._watch = DeathWatch(inbox)

        def on_progress(event: tuple[float, dict[str, Any]]) -> None:
            message = event[1]
            if "start" in message:
                watch.started(message["start"], message["address"], message["name"])
            else:
                on_event(ProgressEvent(**message["montage"]))

        client.subscribe_topic(topic, on_progress)
        token = shared.watch_cluster(watch.cluster_event)
        available = {name for res in self.worker_resources().values() for name in res}
        futures = self._futures = {}
        try:
            for task in tasks:
                if self.remote_nodes and isinstance(task.payload, ShardSpec):
                    task = replace(task, payload=replace(task.payload, resolve_on_node=True))
                wanted = task.payload.placement.resources if isinstance(task.payload, ShardSpec) else {}
                resources = wanted if set(wanted) <= available else None  # nobody has it: run anywhere
                future = client.submit(_run_on_worker, fn, task, topic, threads,
                                       key=f"{task.id}-{uuid.uuid4().hex[:8]}", pure=False, resources=resources)
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
            self._drop_lost()
            raise _lost(exc) from None
        except BackendLost:
            self._drop_lost()
            raise
        finally:
            shared.unwatch_cluster(token)
            with contextlib.suppress(*lost, ValueError):
                client.unsubscribe_topic(topic)
            self._futures = {}

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

    def _drop_lost(self) -> None:
        """The cluster is gone: nobody in this process may be handed it again."""
        with self._lock:
            shared, self._shared = self._shared, None
        if shared is not None:
            clusters.discard(shared)

    def abort(self) -> None:
        """Stop this job's shards now. A LocalCluster no other job uses is shut down (its workers and
        the ffmpeg they run with it); one shared with another job loses only the workers running this
        job's shards (their nannies start them again); a remote cluster is only told to forget them."""
        self._aborting = True
        with self._lock:
            self._closed = True
            shared, self._shared = self._shared, None
        if shared is None:
            return
        futures, running = list(self._futures), self._watch.running_on() if self._watch else set()
        if shared.local and shared.users <= 1:
            clusters.discard(shared)
            return
        with contextlib.suppress(Exception):
            shared.client.cancel(futures, force=True)
            if shared.local and running:
                shared.client.restart_workers(sorted(running), raise_for_error=False)
        clusters.release(shared)

    def close(self) -> None:
        """This job is done with the cluster; it stays up for the next job of this process (closed at exit)."""
        with self._lock:
            self._closed = True
            shared, self._shared = self._shared, None
        if shared is not None:
            clusters.release(shared)
