"""Runs shards on a backend: retries transient failures, records every state in the job store."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from .interfaces import Backend, ProgressEvent, ShardFunction, ShardOutcome, ShardTask
from .jobstore import JobStore

log = logging.getLogger("montage.engine")

MAX_ATTEMPTS = 3
BACKOFF_SECONDS = 0.5


def run_shards(
    backend: Backend,
    fn: ShardFunction,
    tasks: Sequence[ShardTask],
    *,
    on_event: Callable[[ProgressEvent], None],
    store: JobStore | None = None,
    job_id: str = "",
    max_attempts: int = MAX_ATTEMPTS,
) -> dict[str, ShardOutcome]:
    """Run every task; a transient failure is retried (bounded, with back-off), a permanent one is final."""
    outcomes: dict[str, ShardOutcome] = {}
    attempts = {t.id: 0 for t in tasks}
    pending = list(tasks)
    jit_cleared = False

    def record(event: ProgressEvent) -> None:
        if event.state == "retrying" and event.shard in attempts:
            # The backend reruns the shard by itself (Dask reschedules a task whose worker died):
            # an attempt like the engine's own retries, counted, recorded and said once.
            attempts[event.shard] += 1
            log.warning("%s: %s; rerunning the shard (attempt %d)", event.clip or event.shard, event.message,
                        attempts[event.shard])
            if store and job_id:
                store.shard_state(job_id, event.shard, event.stage, event.clip, "retrying", worker=event.worker,
                                  error=event.message, attempt=True)
        if store and job_id:
            store.worker_state(job_id, event)
        on_event(event)

    for task in tasks:  # lets progress displays know the total
        on_event(ProgressEvent.of(task, "queued"))
    while pending:
        for task in pending:
            attempts[task.id] += 1
            if store and job_id:
                store.shard_state(job_id, task.id, task.stage, task.clip, "queued", attempt=True)
        retry: list[ShardTask] = []
        crashed_before = jit_cleared  # one crash breaks every shard of its round: one clear per round
        for outcome in backend.run(fn, pending, record):
            task = outcome.task
            allowed = max_attempts
            if outcome.crash_signal:
                outcome = _after_crash(outcome, clear=not jit_cleared, final=crashed_before)
                jit_cleared = True
                allowed += int(outcome.transient)  # the retry after clearing is promised, whatever came before
            if outcome.ok:
                state, error = "done", ""
            elif outcome.transient and attempts[task.id] < allowed:
                state, error = "retrying", outcome.error
                log.warning("%s: %s; retrying (attempt %d of %d)", task.clip or task.id, outcome.error,
                            attempts[task.id] + 1, max_attempts)
                retry.append(task)
            else:
                state, error = "failed", outcome.error
            if store and job_id:
                store.shard_state(job_id, task.id, task.stage, task.clip, state, worker=outcome.worker, error=error,
                                  result=_small(outcome.result))
            if state != "retrying":
                outcomes[task.id] = outcome
        if retry:
            time.sleep(BACKOFF_SECONDS * min(4, max(attempts[t.id] for t in retry)))
        pending = retry
    return outcomes


def _after_crash(outcome: ShardOutcome, *, clear: bool, final: bool) -> ShardOutcome:
    """A worker died from a signal: most often a JIT cache another process corrupted. The first
    time, clear the cache and retry; a crash after that is final, with what to do about it."""
    from dataclasses import replace

    from .jit import crashed_again, recover_from_crash

    who = f"{outcome.task.stage}: a worker process"
    if clear:
        recover_from_crash(who, outcome.crash_signal)
    if not final:
        return replace(outcome, transient=True)
    return replace(outcome, transient=False, error=crashed_again(who, outcome.crash_signal))


def _small(result: Any, limit: int = 4096) -> Any:
    """The result when it is small JSON (a segment's encoder and attempts), else None (analyses)."""
    import json

    try:
        return result if result is not None and len(json.dumps(result)) <= limit else None
    except (TypeError, ValueError):
        return None

