"""What a montage job leaves in the cluster and on the shared volume, and taking it away.

``montage cancel`` deletes a job's Jobs (:func:`delete_jobs`); ``montage k8s cleanup`` removes
the folders finished jobs left on the volume (:func:`leftover_folders`). A run removes its own
folder (``jobs/<job id>/<Job name>/``: the shard list and the results) once its results are read;
a coordinator that crashed, was killed or lost its Job leaves it behind.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: states after which a job's folder is of no use: its results are read, or never will be
FINISHED = ("done", "failed", "cancelled")
#: a folder of the layout before one folder per job: jobs/montage-<time>-<id part>-<stage>-<serial>-<hex>
_OLD_LAYOUT = re.compile(r"montage-(\d{6}-[0-9a-f]{6})-")


def delete_jobs(api: Any, namespace: str, job_id: str) -> list[str]:
    """Delete every Job labelled with ``job_id``; their pods go with them (propagation Background:
    the Job is gone at once, the garbage collector stops its pods). One line per Job."""
    from kubernetes import client

    from montage_core.errors import MontageError

    batch = client.BatchV1Api(api)
    selector = f"montage/job-id={job_id}"
    by_hand = f"kubectl delete jobs -l {selector} -n {namespace}"
    try:
        jobs = [j for j in batch.list_namespaced_job(namespace, label_selector=selector).items
                if (j.metadata.labels or {}).get("montage/job-id") == job_id]
    except client.ApiException as exc:
        raise MontageError(f"cannot list its Jobs ({exc.status} {exc.reason}); delete them with {by_hand}") from None
    except Exception as exc:  # no route to the API server: the user can still do it by hand
        raise MontageError(f"cannot reach the cluster ({type(exc).__name__}); delete its Jobs with {by_hand}") from None
    lines = []
    for job in jobs:
        name = job.metadata.name
        done = any(c.type in ("Complete", "Failed") and c.status == "True"
                   for c in ((job.status.conditions if job.status else None) or []))
        try:
            batch.delete_namespaced_job(name, namespace, propagation_policy="Background")
        except client.ApiException as exc:
            if exc.status == 404:  # gone meanwhile (its coordinator's own clean-up)
                continue
            raise MontageError(f"cannot delete Job {name} ({exc.status} {exc.reason}); {by_hand}") from None
        lines.append(f"deleted finished Job {name}" if done else f"deleted Job {name} and its pods")
    return lines


@dataclass
class Folder:
    """A job's folder under ``jobs/`` on the volume, and what the job store says of its job."""

    path: Path
    job: dict[str, Any] | None  # None: no such job in this store
    hours: float  # since the job finished (or last changed), else since the folder last changed
    size: int

    def describe(self) -> str:
        state = self.job["state"] if self.job else "no job in the store"
        return f"{self.path} ({state}, {self.hours:.0f} h ago, {_size(self.size)})"


def _size(n: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} bytes"


def _tree(path: Path) -> tuple[int, float]:
    """Bytes under ``path`` and its newest modification time."""
    size, newest = 0, path.stat().st_mtime
    for root, _, files in os.walk(path):
        for name in files:
            try:
                st = os.stat(os.path.join(root, name))
            except OSError:
                continue
            size += st.st_size
            newest = max(newest, st.st_mtime)
    return size, newest


def job_folders(local_mount: str, store: Any) -> list[Folder]:
    """Every job folder under ``<local_mount>/jobs``, with its job from ``store``."""
    root = Path(local_mount) / "jobs"
    if not root.is_dir():
        return []
    old: dict[str, dict[str, Any]] | None = None
    now = time.time()
    out = []
    for path in sorted(p for p in root.iterdir() if p.is_dir()):
        job = store.job(path.name)
        match = _OLD_LAYOUT.match(path.name)
        if job is None and match:  # named after its Job: the job id's last 13 characters are in the name
            if old is None:
                old = {j["id"][-13:]: j for j in store.jobs(1_000_000)}
            job = old.get(match.group(1))
        size, newest = _tree(path)
        since = (job.get("finished") or job.get("updated")) if job else None
        out.append(Folder(path, job, (now - (since or newest)) / 3600, size))
    return out


def cleanup(local_mount: str, store: Any, older_than: float, dry_run: bool = False) -> list[str]:
    """Remove the folders of finished jobs (done, failed, cancelled) older than ``older_than``
    hours; with ``dry_run`` only list them. One line per folder, then what was kept and why."""
    removed, kept_live, kept_new, unknown, freed = [], 0, 0, 0, 0
    lines = []
    for folder in job_folders(local_mount, store):
        if folder.job is None:
            unknown += 1
        elif folder.job["state"] not in FINISHED:
            kept_live += 1
        elif folder.hours < older_than:
            kept_new += 1
        else:
            if not dry_run:
                shutil.rmtree(folder.path, ignore_errors=True)
            removed.append(folder)
            freed += folder.size
            lines.append(f"{'would remove' if dry_run else 'removed'} {folder.describe()}")
    verb = "would remove" if dry_run else "removed"
    lines.append(f"{verb} {len(removed)} folder(s), {_size(freed)}; kept {kept_live} of running or interrupted "
                 f"jobs, {kept_new} finished less than {older_than:g} h ago, {unknown} of jobs not in {store.path}")
    return lines
