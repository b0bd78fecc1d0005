"""SQLite job store: jobs, shards, per-worker state. The CLI writes it; the web UI reads it."""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import time
import uuid
from pathlib import Path
from typing import Any

from .config import state_dir
from .procs import is_running, process_start_time

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY, created REAL, updated REAL, finished REAL, state TEXT,
    style TEXT, backend TEXT, params TEXT, result TEXT, error TEXT,
    host TEXT, pid INTEGER, pid_started TEXT
);
CREATE TABLE IF NOT EXISTS shards (
    job_id TEXT, shard_id TEXT, stage TEXT, clip TEXT, state TEXT, attempts INTEGER DEFAULT 0,
    worker TEXT, error TEXT, result TEXT, updated REAL, PRIMARY KEY (job_id, shard_id)
);
CREATE TABLE IF NOT EXISTS workers (
    job_id TEXT, worker TEXT, host TEXT, stage TEXT, shard TEXT, clip TEXT, state TEXT,
    position REAL, total REAL, message TEXT, updated REAL, started REAL, PRIMARY KEY (job_id, worker)
);
CREATE TABLE IF NOT EXISTS worker_logs (
    job_id TEXT, source TEXT, stage TEXT, node TEXT, diagnosis TEXT, log TEXT, updated REAL,
    PRIMARY KEY (job_id, source)
);
"""


def _coordinator() -> tuple[str, int, str]:
    """This process as a job's coordinator: host, process id and that process's start time."""
    return socket.gethostname(), os.getpid(), process_start_time(os.getpid())


class JobStore:
    """A thin, thread-safe-enough wrapper (one connection per store, used from the coordinator)."""

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path else state_dir() / "jobs.sqlite"
        self.db = sqlite3.connect(self.path, timeout=30, check_same_thread=False, isolation_level=None)
        self.db.row_factory = sqlite3.Row
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.executescript(SCHEMA)
        # Stores written by earlier releases lack these columns. Two processes opening such a
        # store at once both try to add them; the loser's "duplicate column" is harmless.
        self._add_columns("workers", {"started": "REAL"})
        self._add_columns("jobs", {"host": "TEXT", "pid": "INTEGER", "pid_started": "TEXT"})

    def _add_columns(self, table: str, wanted: dict[str, str]) -> None:
        columns = {row["name"] for row in self.db.execute(f"PRAGMA table_info({table})")}
        for name, kind in wanted.items():
            if name not in columns:
                try:
                    self.db.execute(f"ALTER TABLE {table} ADD COLUMN {name} {kind}")
                except sqlite3.OperationalError as exc:
                    if "duplicate column" not in str(exc):
                        raise

    def close(self) -> None:
        self.db.close()

    # -- jobs ---------------------------------------------------------------------------
    def create_job(self, style: str, backend: str, params: dict[str, Any]) -> str:
        job_id = time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
        now = time.time()
        self.db.execute(
            "INSERT INTO jobs (id, created, updated, state, style, backend, params, host, pid, pid_started) "
            "VALUES (?,?,?,?,?,?,?,?,?,?)",
            (job_id, now, now, "running", style, backend, json.dumps(params), *_coordinator()),
        )
        return job_id

    def set_params(self, job_id: str, params: dict[str, Any]) -> None:
        self.db.execute("UPDATE jobs SET params=?, updated=? WHERE id=?", (json.dumps(params), time.time(), job_id))

    def set_state(self, job_id: str, state: str, error: str = "") -> None:
        self.db.execute("UPDATE jobs SET state=?, error=?, updated=? WHERE id=?", (state, error, time.time(), job_id))

    def stage_progress(self, job_id: str) -> dict[str, dict[str, int]]:
        """Per stage: how many shards there are and how many are done or failed."""
        rows = self.db.execute(
            "SELECT stage, state, COUNT(*) AS n FROM shards WHERE job_id=? GROUP BY stage, state", (job_id,))
        progress: dict[str, dict[str, int]] = {}
        for row in rows:
            stage = progress.setdefault(row["stage"], {"total": 0, "done": 0, "failed": 0})
            stage["total"] += row["n"]
            if row["state"] in ("done", "failed"):
                stage[row["state"]] += row["n"]
        return progress

    def restart_job(self, job_id: str) -> None:
        self.db.execute("UPDATE jobs SET state='running', error=NULL, finished=NULL, updated=?, host=?, pid=?, "
                        "pid_started=? WHERE id=?", (time.time(), *_coordinator(), job_id))

    def _settle(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """A running job whose coordinator process (on this host) is gone was interrupted
        (killed, or the machine went down): record it so, with the way to finish it."""
        host = socket.gethostname()
        for row in rows:
            if row["state"] != "running" or row.get("host") != host or not row.get("pid"):
                continue
            if is_running(int(row["pid"]), row.get("pid_started") or ""):
                continue
            error = (f"the coordinator (process {row['pid']}) stopped without finishing; "
                     f"`montage resume {row['id']}` finishes it")
            self.db.execute("UPDATE jobs SET state='interrupted', error=?, updated=? WHERE id=? AND state='running'",
                            (error, time.time(), row["id"]))
            row.update(state="interrupted", error=error)
        return rows

    def finish_job(self, job_id: str, state: str, result: dict[str, Any] | None = None, error: str = "") -> None:
        """The job's final state. A cancelled job stays cancelled: its coordinator, stopped by
        ``montage cancel``, records its own end (interrupted, failed) after the cancel."""
        now = time.time()
        self.db.execute("UPDATE jobs SET state=?, result=?, error=?, finished=?, updated=? "
                        "WHERE id=? AND state != 'cancelled'",
                        (state, json.dumps(result) if result else None, error, now, now, job_id))

    def job(self, job_id: str) -> dict[str, Any] | None:
        row = self.db.execute("SELECT * FROM jobs WHERE id=?", (job_id,)).fetchone()
        return self._settle([dict(row)])[0] if row else None

    def jobs(self, limit: int = 50) -> list[dict[str, Any]]:
        return self._settle([dict(r) for r in self.db.execute("SELECT * FROM jobs ORDER BY created DESC LIMIT ?",
                                                              (limit,))])

    # -- shards -------------------------------------------------------------------------
    def shard_state(self, job_id: str, shard_id: str, stage: str, clip: str, state: str, *,
                    worker: str = "", error: str = "", result: Any = None, attempt: bool = False) -> None:
        self.db.execute(
            """INSERT INTO shards (job_id, shard_id, stage, clip, state, attempts, worker, error, result, updated)
               VALUES (?,?,?,?,?,?,?,?,?,?)
               ON CONFLICT(job_id, shard_id) DO UPDATE SET state=excluded.state,
                 attempts=shards.attempts + ?, worker=excluded.worker, error=excluded.error,
                 result=COALESCE(excluded.result, shards.result), updated=excluded.updated""",
            (job_id, shard_id, stage, clip, state, int(attempt), worker, error,
             json.dumps(result) if result is not None else None, time.time(), int(attempt)),
        )

    def shards(self, job_id: str) -> list[dict[str, Any]]:
        return [dict(r) for r in self.db.execute(
            "SELECT * FROM shards WHERE job_id=? ORDER BY stage, shard_id", (job_id,))]

    # -- workers ------------------------------------------------------------------------
    def worker_state(self, job_id: str, event: Any) -> None:
        if not event.worker:
            return
        now = time.time()
        self.db.execute(
            """INSERT INTO workers
               (job_id, worker, host, stage, shard, clip, state, position, total, message, updated, started)
               VALUES (?,?,?,?,?,?,?,?,?,?,?,?)
               ON CONFLICT(job_id, worker) DO UPDATE SET host=excluded.host, stage=excluded.stage,
                 clip=excluded.clip, state=excluded.state, position=excluded.position, total=excluded.total,
                 message=excluded.message, updated=excluded.updated,
                 started=CASE WHEN workers.shard = excluded.shard THEN workers.started ELSE excluded.started END,
                 shard=excluded.shard""",
            (job_id, event.worker, event.host, event.stage, event.shard, event.clip, event.state,
             event.position, event.total, event.message, now, now),
        )

    def workers(self, job_id: str) -> list[dict[str, Any]]:
        return [dict(r) for r in self.db.execute("SELECT * FROM workers WHERE job_id=? ORDER BY worker", (job_id,))]

    # -- worker logs (cluster pods: kept here after the cluster has deleted them) --------
    def worker_log(self, job_id: str, source: str, *, stage: str = "", node: str = "", diagnosis: str = "",
                   text: str = "") -> None:
        self.db.execute(
            """INSERT INTO worker_logs (job_id, source, stage, node, diagnosis, log, updated) VALUES (?,?,?,?,?,?,?)
               ON CONFLICT(job_id, source) DO UPDATE SET stage=excluded.stage, node=excluded.node,
                 diagnosis=excluded.diagnosis, log=excluded.log, updated=excluded.updated""",
            (job_id, source, stage, node, diagnosis, text, time.time()))

    def worker_logs(self, job_id: str) -> list[dict[str, Any]]:
        return [dict(r) for r in self.db.execute(
            "SELECT * FROM worker_logs WHERE job_id=? ORDER BY updated, source", (job_id,))]
