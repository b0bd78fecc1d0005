"""Workers that die under a job's shards: noticed, named, counted.

Dask reschedules a task whose worker died on its own, so without help the coordinator would see
nothing but a slower shard. Two event streams the scheduler already publishes say enough, with
nothing installed on the scheduler host:

- each shard announces on the job's progress topic where it starts (worker address and name);
- the scheduler's ``all`` topic carries a ``remove-worker`` event with the keys the worker held.

A shard that was *running* on the lost worker is being rerun (an attempt, one warning line); a
key that was only queued there is requeued by Dask and not worth a line. After
:data:`MAX_WORKER_DEATHS` deaths under the same shard montage cancels it and fails it alone with
the reason (it kills its workers), whatever the scheduler's own
``distributed.scheduler.allowed-failures``, which montage cannot set on a remote scheduler. Should
the scheduler give up first (``KilledWorker``), the same holds; for a shard only ever queued
behind such a shard it is not its fault, and a retry may help.
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass
from typing import Any

from montage_core.interfaces import ShardOutcome, ShardTask


#: deaths of workers running the same shard after which the shard fails (the third death ends it)
MAX_WORKER_DEATHS = 3


@dataclass
class GaveUp:
    """A shard under which ``MAX_WORKER_DEATHS`` workers died: cancelled, it fails alone."""

    task: ShardTask
    future: Any
    addresses: list[str]
    worker: str

    @property
    def outcome(self) -> ShardOutcome:
        return ShardOutcome(self.task, False, worker=self.worker, error=(
            f"shard {self.task.id} killed {len(self.addresses)} Dask workers (last: {self.addresses[-1]}, "
            f"{self.worker}): each died while running it; montage gives a shard up after {MAX_WORKER_DEATHS} "
            f"(KilledWorker)"))


@dataclass
class Rerun:
    """A shard whose worker was lost while it ran it; Dask runs it again elsewhere."""

    task: ShardTask
    address: str
    worker: str
    #: it had finished, but its result was still on that worker (not yet gathered)
    finished: bool = False

    @property
    def message(self) -> str:
        how = "holding the result of" if self.finished else "while it ran"
        return f"lost Dask worker {self.worker} ({self.address}) {how} shard {self.task.id}"


class DeathWatch:
    """One run's view of where its shards run and which workers died under them.

    The handlers run on the client's event loop, in the order the scheduler sent the events
    (a shard's start before the removal of its worker), so the shard lost with a worker is
    known at that moment, before a rerun elsewhere can announce itself.
    """

    def __init__(self, inbox: queue.Queue[Any]):
        self.inbox = inbox
        self._lock = threading.Lock()
        #: future key -> (task, future), for the keys this run submitted
        self._keys: dict[str, tuple[ShardTask, Any]] = {}
        #: task id -> (worker address, worker name) where it runs now
        self._running: dict[str, tuple[str, str]] = {}
        #: task id -> addresses of the workers lost while running it
        self.deaths: dict[str, list[str]] = {}

    def submitted(self, task: ShardTask, future: Any) -> None:
        with self._lock:
            self._keys[str(future.key)] = (task, future)

    def started(self, task_id: str, address: str, worker: str) -> None:
        with self._lock:
            self._running[task_id] = (address, worker)

    def finished(self, task_id: str) -> None:
        with self._lock:
            self._running.pop(task_id, None)

    def running_on(self) -> set[str]:
        """Addresses of the workers running a shard of this run now."""
        with self._lock:
            return {address for address, _ in self._running.values()}

    def cluster_event(self, message: Any) -> None:
        """A scheduler event of the ``all`` topic; only ``remove-worker`` matters (a death or a retirement)."""
        if not isinstance(message, dict) or message.get("action") != "remove-worker":
            return
        address = str(message.get("worker", ""))
        running = {str(k) for k in message.get("processing-tasks", ()) or ()}
        # A finished result not yet gathered from the lost worker is computed again too.
        done = {str(k) for k in message.get("lost-computed-tasks", ()) or ()} - running
        with self._lock:
            for key in sorted(running | done):
                task, future = self._keys.get(key, (None, None))
                if task is None or self._running.get(task.id, ("", ""))[0] != address:
                    continue  # not ours, or only queued there: Dask requeues it, nothing ran
                _, worker = self._running.pop(task.id)
                if key in running:
                    self.deaths.setdefault(task.id, []).append(address)
                    if len(self.deaths[task.id]) >= MAX_WORKER_DEATHS and future.status not in ("error", "cancelled"):
                        self.inbox.put(GaveUp(task, future, list(self.deaths[task.id]), worker))
                        continue
                # Past allowed-failures the scheduler has already failed the task (that message
                # precedes this event on the same stream): no rerun, its outcome says why.
                if future.status not in ("error", "cancelled"):
                    self.inbox.put(Rerun(task, address, worker, finished=key in done))

    def killed(self, task: ShardTask, exc: Any) -> ShardOutcome:
        """The outcome of a shard Dask gave up on (``KilledWorker``)."""
        last = getattr(exc, "last_worker", None)
        address = str(getattr(last, "address", "") or "?")
        name = str(getattr(last, "name", "") or "")
        last_text = address if not name or name == address else f"{address}, {name}"
        tries = int(getattr(exc, "allowed_failures", 0)) + 1
        if self.deaths.get(task.id):
            return ShardOutcome(task, False, worker=name, error=(
                f"shard {task.id} killed {tries} Dask workers (last: {last_text}): KilledWorker: the scheduler gives "
                f"a task up once {tries} workers died running it (distributed.scheduler.allowed-failures = "
                f"{tries - 1})"))
        return ShardOutcome(task, False, transient=True, worker=name, error=(
            f"{tries} Dask workers died while shard {task.id} was queued on them, not running (KilledWorker, "
            f"last: {last_text})"))
