"""Jobs started from the web: each one a ``montage resume JOB_ID`` process (argument list, no shell)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

from ..config import state_dir
from ..jobstore import JobStore
from ..job import JobOptions


class JobRunner:
    """Starts, cancels and retries jobs; their output goes to a log file per job."""

    def __init__(self, store: JobStore):
        self.store = store
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.logs = state_dir() / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)

    def log_path(self, job_id: str) -> Path:
        return self.logs / f"{job_id}.log"

    def start(self, options: JobOptions, outputs: Path | None = None) -> str:
        """Queue a job; with ``outputs`` its video is ``outputs/<job id>/<job id>.mp4``."""
        job_id = self.store.create_job(options.style, options.backend, asdict(options))
        if outputs is not None:
            folder = outputs / job_id
            folder.mkdir(parents=True, exist_ok=True)
            options.output = str(folder / f"{job_id}.mp4")
            self.store.set_params(job_id, asdict(options))
        self.store.set_state(job_id, "queued")
        self._spawn(job_id)
        return job_id

    def _spawn(self, job_id: str) -> None:
        with self.log_path(job_id).open("ab") as log:
            # Its own session, so cancel can stop it together with its workers.
            self.processes[job_id] = subprocess.Popen(
                [sys.executable, "-m", "montage_core", "resume", job_id], stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})

    def retry(self, job_id: str) -> None:
        self.reap()
        if job_id in self.processes:
            return  # still running
        self.store.set_state(job_id, "queued")
        self._spawn(job_id)

    def cancel(self, job_id: str) -> None:
        process = self.processes.pop(job_id, None)
        if process and process.poll() is None:
            try:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(timeout=10)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                os.killpg(process.pid, signal.SIGKILL)
        self.store.set_state(job_id, "cancelled", "cancelled from the web UI")

    def reap(self) -> None:
        """Forget finished processes; a job whose process died without saying so is marked failed."""
        for job_id, process in list(self.processes.items()):
            if process.poll() is None:
                continue
            del self.processes[job_id]
            job = self.store.job(job_id)
            if job and job["state"] in ("queued", "running"):
                self.store.set_state(job_id, "failed", f"the job process exited with status {process.returncode}: "
                                                       f"{self.tail(job_id, 1) or 'no output'}")

    def tail(self, job_id: str, lines: int = 200) -> str:
        try:
            text = self.log_path(job_id).read_text(errors="replace")
        except OSError:
            return ""
        # The terminal progress redraws are noise in a log panel; keep the last state of each line.
        return "\n".join(text.replace("\r", "\n").splitlines()[-lines:])

    def stop_all(self) -> None:
        for job_id in list(self.processes):
            if self.processes[job_id].poll() is None:
                self.cancel(job_id)
