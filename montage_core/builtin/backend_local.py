"""The local backend: shards run in a pool of worker processes on this machine."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..hookspecs import hookimpl
from ..interfaces import Backend, ProgressEvent, ShardFunction, ShardOutcome, ShardTask, outcome_from_exception
from ..jit import SHARD_THREADS, thread_share

if TYPE_CHECKING:  # pragma: no cover - typing only; the pool's modules load when a job needs workers
    from concurrent.futures import Future, ProcessPoolExecutor

_events: Any = None  # the progress queue, set in each worker by _init_worker


def _init_worker(events: Any, threads: int, job: tuple[str, str] | None = None) -> None:
    global _events
    from ..procs import watch_parent

    _events = events
    # A coordinator killed outright takes its workers (and their ffmpeg) with it, and its job
    # is recorded as interrupted at once, not only when someone next reads the job store.
    watch_parent(on_orphaned=(lambda: _record_orphaned(*job)) if job else None)
    # Warnings travel to the coordinator with the progress events and are printed there, whole
    # lines in order, not written into the middle of its progress display.
    root = logging.getLogger("montage")
    root.handlers[:] = [_ForwardLogs(events)]
    root.setLevel(logging.INFO)
    root.propagate = False
    # Numba's pool may use every core; each shard is then given its share of them (jit.thread_share:
    # an equal share while all workers are busy, more when a job has fewer shards than workers).
    # ffmpeg keeps its own thread count (MONTAGE_DECODE_THREADS pins it when wanted).
    os.environ.setdefault("NUMBA_NUM_THREADS", str(os.cpu_count() or 1))
    os.environ[SHARD_THREADS] = str(threads)


def _record_orphaned(store_path: str, job_id: str) -> None:
    from ..jobstore import JobStore

    store = JobStore(store_path)
    try:
        store.job(job_id)  # reading settles a job whose coordinator is gone
    finally:
        store.close()


class _ForwardLogs(logging.Handler):
    def __init__(self, events: Any):
        super().__init__()
        self.events = events

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.events.put(_LogLine(record.name, record.levelno, record.getMessage()))
        except Exception:  # pragma: no cover - a closed queue at shutdown
            self.handleError(record)


@dataclass(frozen=True)
class _LogLine:
    """A worker's log record on its way to the coordinator."""

    name: str
    level: int
    message: str

    def replay(self) -> None:
        logging.getLogger(self.name).log(self.level, "%s", self.message)


def _deliver(item: Any, on_event: Callable[[ProgressEvent], None]) -> None:
    if isinstance(item, _LogLine):
        item.replay()
    else:
        on_event(item)


def _worker_name() -> str:
    import multiprocessing

    identity = multiprocessing.current_process()._identity  # (n,) for pool workers
    return f"worker-{identity[-1]}" if identity else f"worker-{os.getpid()}"


def warm_up() -> None:
    """Load what analysis shards need: NumPy and every analyzer's kernels (compiled by one
    process at a time; the others load them from the JIT cache)."""
    from ..analysis.analyze import warm_analyzers
    from ..plugins import get_manager

    warm_analyzers(list(get_manager().analyzers))


def start_warm_up() -> None:
    """:func:`warm_up` in a thread of this worker, returning at once: the worker is free for its
    first shard, which starts decoding while the kernels load and waits for them only when its
    first frames arrive (``ensure_warm`` lets one thread warm a kernel set, the others wait)."""

    def warm() -> None:
        try:
            warm_up()
        except Exception:  # the shard warms again and reports the error where it belongs
            logging.getLogger("montage").debug("warming this worker failed", exc_info=True)

    threading.Thread(target=warm, name="montage-warm-up", daemon=True).start()


def _run(fn: ShardFunction, task: ShardTask, threads: int | None = None) -> tuple[str, Any]:
    worker, host = _worker_name(), socket.gethostname()
    if threads:
        os.environ[SHARD_THREADS] = str(threads)

    def emit(event: ProgressEvent) -> None:
        event.worker, event.host = worker, host
        if _events is not None:
            _events.put(event)

    return worker, fn(task, emit)


class LocalBackend(Backend):
    name = "local"
    description = "A pool of worker processes on this machine (default)"

    def __init__(self, workers: int | None = None):
        self.workers = workers or int(os.environ.get("MONTAGE_WORKERS", 0)) or (os.cpu_count() or 1)
        self._pool: ProcessPoolExecutor | None = None
        self._warming: list[Future[None]] = []
        self._events: Any = None
        self._job: tuple[str, str] | None = None  # (job store path, job id) of the bound job

    def bind_job(self, job_id: str, store: Any = None) -> None:
        self._job = (str(store.path), job_id) if store is not None and job_id else None

    def configure(self, scheduler: str | None = None, workers: int | None = None) -> None:
        if scheduler:
            from ..errors import UsageError

            raise UsageError("the local backend takes no --scheduler (did you mean --backend dask?)")
        if workers and workers != self.workers:
            self.close()
            self.workers = workers

    def _ensure_pool(self) -> ProcessPoolExecutor:
        if self._pool is None:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            from ..jit import configure_jit_cache

            configure_jit_cache()  # workers inherit the JIT cache folder
            context = multiprocessing.get_context("spawn")
            self._events = context.Queue()
            threads = max(1, (os.cpu_count() or 1) // self.workers)
            self._pool = ProcessPoolExecutor(self.workers, mp_context=context, initializer=_init_worker,
                                             initargs=(self._events, threads, self._job))
        return self._pool

    def warm(self, shards: int | None = None) -> None:
        pool = self._ensure_pool()
        # The pool starts processes on demand; warming more than the shards need would only
        # spend the cores the busy ones want.
        self._warming = [pool.submit(start_warm_up) for _ in range(min(self.workers, shards or self.workers))]

    def _settle_warm_up(self) -> None:
        """Wait until the workers started by :meth:`warm` are up (not their kernels: those load in
        the background). The pool counts a worker idle only once its last task is done, so a shard
        submitted before that would start one more process than the job has shards."""
        from concurrent.futures import wait

        warmed = len(self._warming)
        wait(self._warming, timeout=60)
        self._warming = []
        # The pool's manager thread counts a worker idle just after it hands the result over: wait
        # for that count too (briefly; the pool's own semaphore, as ``_processes`` is its own list).
        idle = getattr(self._pool, "_idle_worker_semaphore", None)
        deadline = time.monotonic() + 1.0
        while idle is not None and getattr(idle, "_value", warmed) < warmed and time.monotonic() < deadline:
            time.sleep(0.002)

    def run(self, fn: ShardFunction, tasks: Sequence[ShardTask],
            on_event: Callable[[ProgressEvent], None]) -> Iterator[ShardOutcome]:
        from concurrent.futures import FIRST_COMPLETED, wait
        from concurrent.futures.process import BrokenProcessPool

        pool = self._ensure_pool()
        self._settle_warm_up()
        events = self._events
        stop = threading.Event()

        def forward() -> None:
            import queue

            while not stop.is_set():
                try:
                    _deliver(events.get(timeout=0.1), on_event)
                except queue.Empty:
                    continue
                except (EOFError, OSError):
                    return

        listener = threading.Thread(target=forward, name="montage-progress", daemon=True)
        listener.start()
        futures: dict[Future[tuple[str, Any]], ShardTask] = {}
        try:
            threads = thread_share(os.cpu_count() or 1, self.workers, len(tasks))
            for task in tasks:
                futures[pool.submit(_run, fn, task, threads)] = task
            remaining = set(futures)
            while remaining:
                done, remaining = wait(remaining, return_when=FIRST_COMPLETED)
                for future in done:
                    yield self._outcome(futures[future], future)
        finally:
            stop.set()
            listener.join(timeout=2)
            while True:  # deliver events that arrived after the last shard finished
                try:
                    _deliver(events.get_nowait(), on_event)
                except Exception:
                    break
            if any(isinstance(f.exception(), BrokenProcessPool) for f in futures if f.done()):
                self.close()  # a dead worker breaks the pool; the next run() starts a fresh one

    def _outcome(self, task: ShardTask, future: Future[tuple[str, Any]]) -> ShardOutcome:
        from concurrent.futures.process import BrokenProcessPool

        exc = future.exception()
        if exc is None:
            worker, result = future.result()
            return ShardOutcome(task, True, result, worker=worker)
        if isinstance(exc, BrokenProcessPool):
            from ..jit import signal_name

            crashed = self._crash_signal()
            if crashed:
                return ShardOutcome(task, False, error=f"a worker process crashed ({signal_name(crashed)})",
                                    transient=True, crash_signal=crashed)
            return ShardOutcome(task, False, error="worker process died (killed or out of memory)", transient=True)
        return outcome_from_exception(task, exc)

    def _crash_signal(self) -> int:
        """The signal a worker of the broken pool crashed from (0 when none crashed)."""
        from ..jit import crash_signal

        processes = self._processes()
        # The pool notices a death when the worker's pipes close, a moment before the kernel has
        # its exit status, and the pool's own thread reaps the workers concurrently (whichever
        # thread loses that race reads no status yet): look again until every status is known.
        deadline = time.monotonic() + 10
        while True:
            codes = [p.exitcode for p in processes]
            crashed = next((crash_signal(c) for c in codes if crash_signal(c)), 0)
            if crashed or all(c is not None for c in codes) or time.monotonic() > deadline:
                return crashed
            time.sleep(0.02)

    def _processes(self) -> list[Any]:
        return list((getattr(self._pool, "_processes", None) or {}).values())

    def abort(self) -> None:
        """Kill the workers and what they started; a running shard's work is lost, finished ones are cached."""
        from ..procs import kill_tree

        if self._pool is None:
            return
        for process in self._processes():
            if process.pid and process.exitcode is None:
                kill_tree(process.pid)
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._pool, self._warming = None, []

    def close(self) -> None:
        if self._pool is not None:
            # wait=True: a pool torn down under running tasks (warm-ups, say) errors at interpreter exit.
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool, self._warming = None, []


@hookimpl
def montage_register_backends(register: Callable[[Any], None]) -> None:
    register(LocalBackend())
