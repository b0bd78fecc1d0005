"""The local backend: shards run in a pool of worker processes on this machine."""

from __future__ import annotations

import multiprocessing
import os
import socket
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from ..hookspecs import hookimpl
from ..interfaces import Backend, ProgressEvent, ShardFunction, ShardOutcome, ShardTask

_events: Any = None  # the progress queue, set in each worker by _init_worker


def _init_worker(events: Any, threads: int) -> None:
    global _events
    _events = events
    # Each worker's Numba kernels get an equal share of the cores. ffmpeg keeps its own thread
    # count: a job with fewer clips than workers would otherwise decode on a fraction of the machine
    # (MONTAGE_DECODE_THREADS pins it when wanted).
    os.environ.setdefault("NUMBA_NUM_THREADS", str(threads))


def _worker_name() -> str:
    identity = multiprocessing.current_process()._identity  # (n,) for pool workers
    return f"worker-{identity[-1]}" if identity else f"worker-{os.getpid()}"


def warm_up() -> None:
    """Load what analysis shards need: NumPy and every Numba kernel from its on-disk cache."""
    import numpy as np

    from ..analysis import kernels

    frames, previous = np.zeros((2, 4, 4), np.uint8), np.empty((0, 0), np.uint8)
    for name in ("brightness", "sharpness", "motion", "cut_score"):
        getattr(kernels, name)(frames, previous, np.empty(2))
    kernels.centre_of_gravity(frames, previous, np.empty((2, 2)))


def _run(fn: ShardFunction, task: ShardTask) -> tuple[str, Any]:
    worker, host = _worker_name(), socket.gethostname()

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
        self._ctx = multiprocessing.get_context("spawn")
        self._pool: ProcessPoolExecutor | None = None
        self._events: Any = None

    def configure(self, scheduler: str | None = None, workers: int | None = None) -> None:
        if scheduler:
            from ..errors import UsageError

            raise UsageError("the local backend takes no --scheduler (did you mean --backend dask?)")
        if workers and workers != self.workers:
            self.close()
            self.workers = workers

    def _ensure_pool(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._events = self._ctx.Queue()
            threads = max(1, (os.cpu_count() or 1) // self.workers)
            self._pool = ProcessPoolExecutor(self.workers, mp_context=self._ctx, initializer=_init_worker,
                                             initargs=(self._events, threads))
        return self._pool

    def warm(self, shards: int | None = None) -> None:
        pool = self._ensure_pool()
        # The pool starts processes on demand; warming more than the shards need would only
        # spend the cores the busy ones want.
        for _ in range(min(self.workers, shards or self.workers)):
            pool.submit(warm_up)

    def run(self, fn: ShardFunction, tasks: Sequence[ShardTask],
            on_event: Callable[[ProgressEvent], None]) -> Iterator[ShardOutcome]:
        pool = self._ensure_pool()
        events = self._events
        stop = threading.Event()

        def forward() -> None:
            import queue

            while not stop.is_set():
                try:
                    on_event(events.get(timeout=0.1))
                except queue.Empty:
                    continue
                except (EOFError, OSError):
                    return

        listener = threading.Thread(target=forward, name="montage-progress", daemon=True)
        listener.start()
        futures: dict[Future[tuple[str, Any]], ShardTask] = {}
        try:
            for task in tasks:
                futures[pool.submit(_run, fn, task)] = task
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
                    on_event(events.get_nowait())
                except Exception:
                    break
            if any(isinstance(f.exception(), BrokenProcessPool) for f in futures if f.done()):
                self.close()  # a dead worker breaks the pool; the next run() starts a fresh one

    def _outcome(self, task: ShardTask, future: Future[tuple[str, Any]]) -> ShardOutcome:
        from ..errors import MontageError, ShardError

        exc = future.exception()
        if exc is None:
            worker, result = future.result()
            return ShardOutcome(task, True, result, worker=worker)
        if isinstance(exc, BrokenProcessPool):
            return ShardOutcome(task, False, error="worker process died (killed or out of memory)", transient=True)
        if isinstance(exc, ShardError):
            return ShardOutcome(task, False, error=str(exc), transient=exc.transient)
        if isinstance(exc, MontageError):
            return ShardOutcome(task, False, error=str(exc))
        return ShardOutcome(task, False, error=f"{type(exc).__name__}: {exc}")

    def close(self) -> None:
        if self._pool is not None:
            # wait=True: a pool torn down under running tasks (warm-ups, say) errors at interpreter exit.
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


@hookimpl
def montage_register_backends(register: Callable[[Any], None]) -> None:
    register(LocalBackend())
