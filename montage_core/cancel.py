"""``montage cancel JOB_ID``: stop a job wherever it runs, and record it as cancelled.

A job has a coordinator (the ``montage run``/``resume`` process; the job store records its host,
process id and start time) and, on a cluster backend, work that outlives it (Kubernetes Jobs).
Cancelling records the job as ``cancelled`` first, so whatever the stopping coordinator writes on
its way out (interrupted, failed) does not replace it; then stops the coordinator as Ctrl-C would
(SIGTERM: its backend is aborted and its workers stopped), killing it if it does not end in time;
then asks the job's backend to stop what it runs elsewhere, which works as well when the
coordinator is already gone (a crash, another machine). ``montage resume`` still finishes a
cancelled job: finished shards are in the caches.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import time
from typing import Any

from .errors import MontageError, UsageError
from .job import unknown_job
from .jobstore import JobStore
from .plugins import MontageManager, get_manager
from .procs import is_running

log = logging.getLogger("montage")


def cancel_job(store: JobStore, job_id: str, *, manager: MontageManager | None = None,
               wait: float = 30.0) -> list[str]:
    """Stop ``job_id`` and mark it cancelled; one line per thing done, for the user."""
    job = store.job(job_id)  # a running job whose coordinator died here reads as interrupted
    if job is None:
        raise unknown_job(store, job_id)
    state = job["state"]
    if state == "cancelled":
        return [f"job {job_id} is already cancelled"]
    if state in ("done", "failed"):
        raise UsageError(f"job {job_id} has already {'finished' if state == 'done' else 'failed'}: nothing to cancel")
    store.finish_job(job_id, "cancelled", error=f"cancelled by montage cancel on {socket.gethostname()}")
    lines = []
    if state == "running":  # queued (the web UI's): its pid is the web server's, whose own cancel stops it
        lines += _stop_coordinator(job, wait)
    manager = manager or get_manager()
    params: dict[str, Any] = json.loads(job["params"] or "{}")
    try:
        backend = manager.new_backend(job["backend"], scheduler=params.get("scheduler"))
        lines += backend.cancel_job(job_id)
    except MontageError as exc:
        log.warning("job %s: backend %s could not stop its work: %s", job_id, job["backend"], exc)
    lines.append(f"job {job_id} cancelled")
    return lines


def _stop_coordinator(job: dict[str, Any], wait: float) -> list[str]:
    """SIGTERM to the job's coordinator on this machine (it stops as for Ctrl-C), SIGKILL after ``wait``."""
    pid, started, host = int(job["pid"] or 0), job.get("pid_started") or "", job.get("host") or ""
    if host != socket.gethostname():
        log.warning("job %s: its coordinator runs on %s (process %d), not here: stop it there", job["id"], host, pid)
        return []
    if not is_running(pid, started):
        return []
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + wait
    while is_running(pid, started) and time.monotonic() < deadline:
        time.sleep(0.1)
    if not is_running(pid, started):
        return [f"stopped its coordinator (process {pid})"]
    # workers and ffmpeg die with it (parent-death signal, watchdog thread: montage_core.procs)
    with contextlib.suppress(ProcessLookupError):  # it may have ended just now
        os.kill(pid, signal.SIGKILL)
    return [f"killed its coordinator (process {pid}): it did not stop within {wait:g} s"]
