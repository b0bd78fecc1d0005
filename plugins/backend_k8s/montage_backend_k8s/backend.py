"""The ``k8s`` backend: each stage's shards as one ``batch/v1`` Indexed Job, one index per shard.

The coordinator writes a shard file to the shared volume, creates the Job, then follows it:
pod logs carry the workers' progress events (JSON lines), the Job's ``completedIndexes`` and
``failedIndexes`` say which shards are done, and each finished shard's result is read from its
own file on the volume. Kubernetes retries an index itself (``backoffLimitPerIndex``, a drain not
counted); an index out of retries comes back to the core engine as a failed shard, which
resubmits only those shards as a new, smaller Job (after an OOM kill with more memory, up to a
cap) and keeps every finished one. A Job that can never run (its pods refused by a quota or
admission, an image that does not pull, a wrong architecture, a deleted or failed Job) ends the
job with one line quoting the cluster (:mod:`.watchdog`) instead of waiting forever.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import secrets
import shutil
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from montage_core.interfaces import Backend, ProgressEvent, ShardFunction, ShardOutcome, ShardTask, StagePreview
from montage_core.specs import RenderSpec, ShardSpec

from .diagnose import diagnose_pod, failure_kind, last_error, pod_index
from .logfollow import LogCursor, follow_pod_log
from .placement import Placement, place_tasks
from .watchdog import FAILED, ClusterWarning, condition, describe_condition, not_starting, passing, refused_creation

log = logging.getLogger("montage.k8s")

MEMORY_DEFAULT = "2Gi"
MEMORY_CAP = "16Gi"
POLL_SECONDS = 0.5
#: a pod that cannot be scheduled for this long fails its shards with the scheduler's reason
PENDING_TIMEOUT = 600.0
#: an image pull error has to last this long before the run is given up (a registry's 429 passes)
PULL_GRACE = 120.0
#: a Job the Job controller has not started (no status.startTime) after this long: the controller is not running
CONTROLLER_GRACE = 60.0
#: pull failures no wait can cure
PERMANENT_PULL_FAILURES = ("InvalidImageName", "ErrImageNeverPull")


def permanent_pull_failure(diagnosis: str) -> bool:
    """An image pull failure (``failure_kind``'s one line) that no wait cures: a bad name, pulling forbidden."""
    return any(reason in diagnosis for reason in PERMANENT_PULL_FAILURES)


def pull_grace() -> float:
    return float(os.environ.get("MONTAGE_K8S_PULL_GRACE", PULL_GRACE))


def parse_indexes(text: str | None) -> set[int]:
    """``"0-2,5"`` (the Job status' index ranges) → ``{0, 1, 2, 5}``."""
    out: set[int] = set()
    for part in (text or "").split(","):
        if not part.strip():
            continue
        low, _, high = part.partition("-")
        out.update(range(int(low), int(high or low) + 1))
    return out


def memory_bytes(quantity: str) -> int:
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "K": 10**3, "M": 10**6, "G": 10**9}
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([KMGT]i?)?", quantity.strip())
    if not match:
        raise ValueError(f"not a memory quantity: {quantity!r} (examples: 512Mi, 2Gi)")
    return int(float(match.group(1)) * units.get(match.group(2) or "", 1))


def more_memory(current: str, cap: str) -> str | None:
    """Twice ``current`` in Mi, or ``None`` when already at ``cap``."""
    now, limit = memory_bytes(current), memory_bytes(cap)
    if now >= limit:
        return None
    return f"{min(now * 2, limit) // 2**20}Mi"


def dns_name(text: str, limit: int = 52) -> str:
    """A DNS-1123 label (Indexed Job pod names add ``-<index>-<5 chars>``, hostnames stop at 63)."""
    return re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")[:limit].rstrip("-")


@dataclass
class PathMap:
    """The shared volume as the coordinator sees it (``local``) and as pods mount it (``pod``)."""

    local: str
    pod: str

    def _swap(self, value: Any, src: str, dst: str) -> Any:
        if isinstance(value, str) and (value == src or value.startswith(src.rstrip("/") + "/")):
            return dst.rstrip("/") + value[len(src.rstrip("/")):]
        if isinstance(value, dict):
            return {k: self._swap(v, src, dst) for k, v in value.items()}
        if isinstance(value, list):
            return [self._swap(v, src, dst) for v in value]
        return value

    def to_pod(self, value: Any) -> Any:
        return value if self.local == self.pod else self._swap(value, self.local, self.pod)

    def to_local(self, value: Any) -> Any:
        return value if self.local == self.pod else self._swap(value, self.pod, self.local)

    def on_volume(self, path: str) -> bool:
        return Path(path).absolute().is_relative_to(Path(self.local).absolute())


@dataclass(frozen=True)
class Verdict:
    """Why a Job's unfinished shards will not run: ``line`` names the Job and quotes the cluster."""

    kind: str  # failed | quota | refused | suspended | no-pods | image | architecture | unschedulable | ...
    line: str
    detail: str = ""  # the cluster's own words, for the --accel auto fallback's warning


class _Warnings:
    """Warning events of the runs' Jobs and pods, asked for at most every few seconds."""

    EVERY = 2.0

    def __init__(self) -> None:
        self.found: dict[str, list[ClusterWarning]] = {}
        self._at = -self.EVERY

    def refresh(self, core: Any, namespace: str, names: set[str]) -> None:
        from .watchdog import warning_events

        if time.monotonic() - self._at >= self.EVERY:
            self._at = time.monotonic()
            self.found = warning_events(core, namespace, names)


def _names_device(placement: Placement, text: str) -> bool:
    """The text (a quota refusal) is about the placement's device resource (``nvidia.com/gpu``)."""
    device = placement.accelerator.placement.get(placement.vendor) if placement.accelerator else None
    return bool(device) and any(resource in text for resource in device.resources)


def _phase(pod: Any) -> str:
    return (pod.status.phase if pod.status else "") or ""


@dataclass
class _Run:
    """One submitted Indexed Job and what the coordinator knows of it."""

    name: str
    placement: Placement
    tasks: list[ShardTask]
    results: Path
    memory: str
    done: set[int] = field(default_factory=set)
    failed: set[int] = field(default_factory=set)
    logs: dict[str, LogCursor] = field(default_factory=dict)  # pod -> how far its log is read, and the lines
    final_logs: dict[str, str] = field(default_factory=dict)  # finished pod -> its whole log, as followed
    recorded: set[str] = field(default_factory=set)  # pods whose final log is in the job store
    finished: bool = False
    #: the run's random token: a result without it (forged, stale, another run's) is refused
    token: str = ""


class KubernetesBackend(Backend):
    name = "k8s"
    description = "Kubernetes: one Indexed Job per stage on a shared RWX volume (montage config --show)"
    remote_nodes = True
    supports_dry_run = True
    #: one pod index per segment: placement by vendor, and a drained or evicted pod costs one segment
    render_batches = False
    #: the track need not lie on the shared volume (only the clips must): it is analysed on the
    #: coordinator, in a process of its own, from the job's start
    music_shards = False

    def __init__(self) -> None:
        self.flags: dict[str, str | None] = {}
        self.parallelism: int | None = None
        self.job_id = ""
        self.store: Any = None
        self.memory: dict[str, str] = {}  # task id -> memory after OOM kills
        self.cpu_only: set[str] = set()  # task ids that found no schedulable GPU node
        self._settings: dict[str, Any] | None = None
        self._api: Any = None
        self._serial = 0
        self._live: list[_Run] = []
        self._reaped = True  # nothing to reap until a job is bound
        self._folder_id = ""

    # ------------------------------------------------------------------ configuration
    def availability(self) -> str | None:
        import importlib.util

        # Looked up, not imported: listing plugins must not pay for importing the whole client.
        if importlib.util.find_spec("kubernetes") is None:
            return "the kubernetes client is not installed; pip install montage-backend-k8s"
        from .config import cluster_credentials

        return cluster_credentials()

    def configure(self, scheduler: str | None = None, workers: int | None = None) -> None:
        """``scheduler`` names the kubeconfig context; ``workers`` caps pods running at once."""
        self.flags["context"] = scheduler
        self.parallelism = workers

    def bind_job(self, job_id: str, store: Any = None) -> None:
        self.job_id, self.store = job_id, store
        self._reaped = False

    def reap_leftovers(self) -> list[str]:
        """Delete Jobs of this montage job still running from an earlier coordinator (``montage
        resume`` after a crash): their finished shards are in the cache on the volume, and the
        unfinished ones are about to be submitted again."""
        from kubernetes import client

        batch, namespace = client.BatchV1Api(self.api), self.settings["namespace"]
        selector = f"montage/job-id={self.job_id}"
        reaped = []
        for job in batch.list_namespaced_job(namespace, label_selector=selector).items:
            labels = job.metadata.labels or {}
            finished = any(c.type in ("Complete", "Failed") and c.status == "True"
                           for c in ((job.status.conditions if job.status else None) or []))
            if labels.get("montage/job-id") == self.job_id and not finished:
                log.info("deleting Job %s, left running by an earlier coordinator of job %s", job.metadata.name,
                         self.job_id)
                self._delete(job.metadata.name)
                reaped.append(job.metadata.name)
        return reaped

    @property
    def settings(self) -> dict[str, Any]:
        if self._settings is None:
            from .config import resolve

            self._settings = {name: s.value for name, s in resolve(self.flags).items()}
        return self._settings

    @property
    def api(self) -> Any:
        if self._api is None:
            from .config import api_client

            self._api = api_client(self.settings.get("context") or None)
        return self._api

    @property
    def paths(self) -> PathMap:
        return PathMap(self.settings["local_mount"], self.settings["mount_path"])

    # ------------------------------------------------------------------ running
    def run(self, fn: ShardFunction, tasks: Sequence[ShardTask],
            on_event: Callable[[ProgressEvent], None]) -> Iterator[ShardOutcome]:
        from montage_core.worker import write_shard_file

        runnable = []
        for task in tasks:
            outside = [p for p in _sources(task) if not self.paths.on_volume(p)]
            if not isinstance(task.payload, ShardSpec) or task.payload.function() != f"{fn.__module__}:{fn.__name__}":
                # Pods run montage's own stage for the spec's kind (``montage worker``), nothing else.
                yield ShardOutcome(task, False, error=f"shard {task.id}: the k8s backend runs montage's own stages "
                                                      f"from typed shard specs, not {fn.__module__}:{fn.__name__}")
            elif outside:
                yield ShardOutcome(task, False, error=(
                    f"{outside[0]}: not on the shared volume ({self.paths.local}, mounted in pods at "
                    f"{self.paths.pod}); copy the clips there"))
            else:
                runnable.append(task)
        if not runnable:
            return
        if not self._reaped:
            self._reaped = True
            self.reap_leftovers()
        runs: list[_Run] = []
        for placement in place_tasks(runnable, self.settings, self.cpu_only):
            memory_groups: dict[str, list[ShardTask]] = {}
            for task in placement.tasks:
                memory_groups.setdefault(self.memory.get(task.id, self.settings["memory"]), []).append(task)
            for memory, group in memory_groups.items():
                self._serial += 1
                stage = group[0].stage
                name = dns_name(f"montage-{self.folder_id[-13:]}-{stage[:6]}-{self._serial}-{uuid.uuid4().hex[:4]}")
                # one folder per montage job, so that `montage k8s cleanup` finds what a job left
                folder = Path(self.settings["local_mount"]) / "jobs" / self.folder_id / name
                shard_tasks = [ShardTask(t.id, t.stage, self.paths.to_pod(t.clip), self._for_pods(t, placement),
                                         t.total) for t in group]
                token = secrets.token_hex(16)  # results on the shared volume must carry it back
                write_shard_file(folder / "shards.json", shard_tasks, self.paths.to_pod(str(folder / "results")), token)
                run = _Run(name, placement, list(group), folder / "results", memory, token=token)
                self._submit(run, self.paths.to_pod(str(folder / "shards.json")))
                runs.append(run)
        self._live.extend(runs)
        try:
            yield from self._follow(runs, on_event)
        finally:
            for run in runs:
                if not run.finished:
                    self._delete(run.name)
                else:  # results are read; what lasts (analyses, segments) is in the cache
                    shutil.rmtree(run.results.parent, ignore_errors=True)
                    with contextlib.suppress(OSError):  # the job's folder, once its last run is gone
                        run.results.parent.parent.rmdir()
                self._live.remove(run)

    @property
    def folder_id(self) -> str:
        """The job's folder under ``jobs/`` on the volume, and its Jobs' name part: the montage job
        id, or the time the backend first ran (``montage analyze``, ``plan``, ``render``: no job)."""
        if not self.job_id and not self._folder_id:
            self._folder_id = time.strftime("%Y%m%d-%H%M%S")
        return self.job_id or self._folder_id

    def _submit(self, run: _Run, shard_file: str) -> None:
        from kubernetes import client

        from .manifests import stage_job

        job = stage_job(self.settings, name=run.name, stage=run.tasks[0].stage, shards=len(run.tasks),
                        shard_file=shard_file, placement=run.placement, memory=run.memory, job_id=self.job_id,
                        parallelism=self.parallelism)
        client.BatchV1Api(self.api).create_namespaced_job(self.settings["namespace"], job)
        vendor = run.placement.vendor
        where = f" on {vendor} GPU nodes ({run.placement.accelerator.name})" if vendor else ""
        log.info("submitted Job %s: %d %s shard(s), %s memory%s", run.name, len(run.tasks), run.tasks[0].stage,
                 run.memory, where)

    def dry_run(self, stages: Sequence[StagePreview]) -> str:
        """The Jobs running ``stages`` would create, as YAML; nothing is asked of the cluster."""
        from .manifests import dry_run

        return dry_run(self.settings, stages, self.parallelism)

    def cancel_job(self, job_id: str) -> list[str]:
        """Delete every Job of ``job_id`` (their pods go with them), whoever started them."""
        from .cleanup import delete_jobs

        return delete_jobs(self.api, self.settings["namespace"], job_id)

    def _delete(self, name: str) -> None:
        from kubernetes import client

        try:
            client.BatchV1Api(self.api).delete_namespaced_job(name, self.settings["namespace"],
                                                              propagation_policy="Background")
        except Exception as exc:  # cleaning up must not hide the real error
            log.warning("could not delete Job %s: %s", name, exc)

    def _follow(self, runs: list[_Run], on_event: Callable[[ProgressEvent], None]) -> Iterator[ShardOutcome]:
        from kubernetes import client

        batch, core = client.BatchV1Api(self.api), client.CoreV1Api(self.api)
        namespace = self.settings["namespace"]
        pending_since: dict[str, float] = {}
        warnings = _Warnings()
        while any(not r.finished for r in runs):
            live = [r for r in runs if not r.finished]
            pods_of = {run.name: job_pods(core, namespace, run.name) for run in live}
            jobs: dict[str, Any] = {}
            for run in live:
                # the Job itself, not its status subresource: "get jobs" is all the Role grants
                try:
                    jobs[run.name] = batch.read_namespaced_job(run.name, namespace)
                except client.ApiException as exc:
                    if exc.status != 404:
                        raise
                    jobs[run.name] = None
            # events only while something waits: a Job with no pod running, which is when they say why
            if any(not any(_phase(p) == "Running" for p in pods_of[r.name]) for r in live):
                names = {r.name for r in live} | {p.metadata.name for r in live for p in pods_of[r.name]}
                warnings.refresh(core, namespace, names)
            for run in live:
                pods, job = pods_of[run.name], jobs[run.name]
                for pod in pods:
                    self._read_events(core, namespace, run, pod, pods, on_event)
                if job is None:
                    yield from self._give_up(run, self._deleted(run), core, namespace, pods)
                    continue
                status = job.status
                if status is not None:  # None: the Job controller has not looked at it yet
                    for index in sorted(parse_indexes(status.completed_indexes) - run.done):
                        run.done.add(index)
                        yield self._success(run, index, pods)
                    for index in sorted(parse_indexes(status.failed_indexes) - run.failed - run.done):
                        run.failed.add(index)
                        yield self._failure(run, index, pods, core, namespace)
                    if len(run.done) + len(run.failed) >= len(run.tasks):
                        run.finished = True
                        for pod in pods:
                            self._record_pod(core, namespace, run, pod)
                        continue
                stuck = self._stuck(run, job, pods, warnings.found, pending_since)
                if stuck:
                    yield from self._give_up(run, stuck, core, namespace, pods)
            if any(not r.finished for r in runs):
                time.sleep(float(os.environ.get("MONTAGE_K8S_POLL", POLL_SECONDS)))

    def _deleted(self, run: _Run) -> Verdict:
        """The Job is gone: cancelled (``montage cancel``), or deleted by someone else."""
        job = self.store.job(self.job_id) if self.store is not None and self.job_id else None
        if job and job["state"] == "cancelled":
            return Verdict("cancelled", f"job {self.job_id} was cancelled (montage cancel)")
        again = f"; `montage resume {self.job_id}` runs its unfinished shards again" if self.job_id else ""
        return Verdict("deleted", f"Job {run.name} was deleted while it ran (by someone else, or a namespace "
                                  f"clean-up){again}")

    def _read_events(self, core: Any, namespace: str, run: _Run, pod: Any, pods: list[Any],
                     on_event: Callable[[ProgressEvent], None]) -> None:
        """New progress lines from a pod's log, shown as its node (``node-2 · analyzing …``)."""
        phase = pod.status.phase if pod.status else ""
        name = pod.metadata.name
        if phase not in ("Running", "Succeeded", "Failed") or name in run.final_logs:
            return  # not started, or finished and its last lines already read (_follow reads events first)
        node = pod.spec.node_name or name
        same_node = [p for p in pods if p.spec.node_name == node and (p.status.phase == "Running")]
        worker = node if len(same_node) <= 1 else f"{node}/{pod_index(pod)}"
        for line in self._new_lines(core, namespace, run, pod):
            if line.startswith('{"montage_event"'):
                try:
                    event = ProgressEvent(**json.loads(line)["montage_event"])
                except (ValueError, TypeError, KeyError):
                    continue
                event.worker, event.host = worker, name
                event.clip = self.paths.to_local(event.clip)
                on_event(event)

    @staticmethod
    def _new_lines(core: Any, namespace: str, run: _Run, pod: Any) -> list[str]:
        """The pod's log lines not read before (only those cross the network); a finished pod's
        whole log, as followed, is kept for its diagnosis and the job store."""
        from kubernetes.client import ApiException

        name = pod.metadata.name
        cursor = run.logs.setdefault(name, LogCursor())
        try:
            lines = follow_pod_log(core, namespace, name, cursor)
        except ApiException:  # not started yet, or already gone: nothing new
            lines = []
        if pod.status and pod.status.phase in ("Succeeded", "Failed"):
            run.final_logs[name] = cursor.text()
        return lines

    def _log(self, core: Any, namespace: str, run: _Run, pod: Any) -> str:
        """A pod's log (all of it read so far); a finished pod's is complete and kept."""
        name = pod.metadata.name
        if name not in run.final_logs:
            self._new_lines(core, namespace, run, pod)
        return run.final_logs.get(name) or run.logs[name].text()

    def _stuck(self, run: _Run, job: Any, pods: list[Any], warnings: dict[str, list[ClusterWarning]],
               pending_since: dict[str, float]) -> Verdict | None:
        """Why the run's unfinished shards can never run, or None.

        In the cluster's words where it has them: the Job failed as a whole (its conditions), the
        Job controller is refused pods (``FailedCreate`` events: quota, Pod Security, webhooks),
        the Job is suspended, a pod cannot pull its image, has the wrong architecture, finds no
        node, or was scheduled and never starts (its Warning events). A refusal that may pass (a
        quota, a webhook timeout), a suspended Job, a pod that finds no node or does not start
        count once they have lasted ``MONTAGE_K8S_PENDING_TIMEOUT``; a pull error once it has
        lasted ``MONTAGE_K8S_PULL_GRACE`` (a registry's 429 passes); the rest at once."""
        timeout = float(os.environ.get("MONTAGE_K8S_PENDING_TIMEOUT", PENDING_TIMEOUT))
        grace = pull_grace()
        now = time.monotonic()
        namespace = self.settings["namespace"]
        failed = condition(job, *FAILED)
        if failed:  # a deadline or a policy ended the Job: the indexes still open will never run
            return Verdict("failed", f"Job {run.name} failed: {describe_condition(failed)}")
        key = f"job:{run.name}"
        if not any(_phase(p) in ("", "Pending", "Running") for p in pods):  # no pod that may still run
            first = pending_since.setdefault(key, now)
            newest = max((p.metadata.creation_timestamp for p in pods if p.metadata.creation_timestamp), default=None)
            refused = refused_creation(warnings.get(run.name, []), since=newest)
            suspended = condition(job, "Suspended")
            if refused:
                line = f"Job {run.name} cannot create pods: {refused.quote()}"
                kind = "quota" if "exceeded quota" in refused.message else "refused"
                if not passing(refused) or now - first > timeout:
                    return Verdict(kind, line, refused.quote())
                if f"said:{key}" not in pending_since:  # the first time only
                    pending_since[f"said:{key}"] = now
                    log.warning("%s; waiting up to %g s for it to pass (MONTAGE_K8S_PENDING_TIMEOUT)", line, timeout)
            elif suspended and now - first > timeout:
                return Verdict("suspended", (
                    f"Job {run.name} stayed suspended for {timeout:g} s ({describe_condition(suspended)}): a queueing "
                    f"controller (Kueue) holds it, or it was suspended by hand; see `kubectl describe job {run.name} "
                    f"-n {namespace}`"))
            elif not suspended and job.status is not None and job.status.start_time is not None:
                # counted from when the Job controller started the Job (status.startTime), not from when
                # this coordinator first looked: a busy controller takes a while to get to a new Job
                started = pending_since.setdefault(f"started:{key}", now)
                if now - started > timeout:
                    return Verdict("no-pods", (
                        f"no pod of Job {run.name} was created in {timeout:g} s: a ResourceQuota, Pod Security "
                        f"admission or a missing service account stops the Job controller; see `kubectl describe "
                        f"job {run.name} -n {namespace}`"))
            elif not suspended and now - first > max(timeout, CONTROLLER_GRACE):
                return Verdict("no-pods", (
                    f"the Job controller has not started Job {run.name} in {max(timeout, CONTROLLER_GRACE):g} s: "
                    f"is kube-controller-manager running? see `kubectl describe job {run.name} -n {namespace}`"))
        else:
            pending_since.pop(key, None)
            pending_since.pop(f"started:{key}", None)
        for pod in pods:
            name = pod.metadata.name
            kind, text = failure_kind(pod)
            if kind == "architecture" or (kind == "image" and permanent_pull_failure(text)):
                return Verdict(kind, f"Job {run.name} cannot run: {text}", text)
            if kind == "image":
                if f"pull:{name}" not in pending_since:
                    log.warning("pod %s: %s; waiting up to %g s for the pull to succeed (MONTAGE_K8S_PULL_GRACE)",
                                name, text, grace)
                if now - pending_since.setdefault(f"pull:{name}", now) > grace:
                    return Verdict(kind, f"Job {run.name} cannot run: {text}", text)
            elif kind == "unschedulable":
                if now - pending_since.setdefault(name, now) > timeout:
                    return Verdict(kind, f"Job {run.name} cannot run: {text}", text)
            elif why := not_starting(pod, warnings.get(name, [])):
                if f"start:{name}" not in pending_since:
                    log.warning("pod %s of Job %s is not starting: %s; waiting up to %g s "
                                "(MONTAGE_K8S_PENDING_TIMEOUT)", name, run.name, why, timeout)
                if now - pending_since.setdefault(f"start:{name}", now) > timeout:
                    return Verdict("not-starting", f"Job {run.name} cannot run: pod {name} did not start in "
                                                   f"{timeout:g} s: {why}", why)
        return None

    def _give_up(self, run: _Run, verdict: Verdict, core: Any, namespace: str,
                 pods: list[Any]) -> Iterator[ShardOutcome]:
        """Fail the run's unfinished shards with the verdict, then end the job with it in one line:
        what stops a Job (quota, admission, a pull, a deletion) is the cluster's, not a clip's, and
        would stop the next Job too. Under ``--accel auto`` a GPU Job that finds no node (or no
        GPU quota) instead sends its shards to CPU nodes."""
        from montage_core.errors import MontageError

        no_gpu = verdict.kind == "unschedulable" or (
            verdict.kind == "quota" and _names_device(run.placement, verdict.detail))
        fallback = run.placement.fallback_to_cpu and no_gpu
        if fallback:
            log.warning("Job %s found no GPU node (%s); its shards go to CPU nodes", run.name, verdict.detail)
        for pod in pods:
            self._record_pod(core, namespace, run, pod)
        if verdict.kind not in ("deleted", "cancelled"):
            self._delete(run.name)
        run.finished = True
        for index, task in enumerate(run.tasks):
            if index in run.done or index in run.failed:
                continue
            if fallback:  # --accel auto: no GPU node free, so the next attempt goes to CPU nodes
                self.cpu_only.add(task.id)
            yield ShardOutcome(task, False, error=verdict.line, transient=fallback)
        if not fallback:
            raise MontageError(verdict.line)

    def _success(self, run: _Run, index: int, pods: list[Any]) -> ShardOutcome:
        from montage_core.worker import load_result

        task = run.tasks[index]
        node = next((p.spec.node_name for p in pods if pod_index(p) == index and p.status.phase == "Succeeded"), "")
        for wait in (0.2, 0.5, 1.0, 2.0, 0.0):  # an NFS client may not see a new file at once (attribute cache)
            try:
                result = self.paths.to_local(load_result(run.results, task.id, run.token))
                break
            except (OSError, EOFError, ValueError) as exc:
                if not wait:
                    return ShardOutcome(task, False, error=f"shard finished but its result is unreadable ({exc})",
                                        transient=True, worker=node or "")
                time.sleep(wait)
        return ShardOutcome(task, True, result, worker=node or run.name)

    def _failure(self, run: _Run, index: int, pods: list[Any], core: Any, namespace: str) -> ShardOutcome:
        """The index is out of retries (or failed at once): say why, and how the next attempt differs."""
        task = run.tasks[index]
        tried = [p for p in pods if pod_index(p) == index and p.status.phase == "Failed"]
        if not tried:
            return ShardOutcome(task, False, error=f"shard {task.id} failed with no pod left to say why",
                                transient=True)
        last = max(tried, key=lambda p: str(p.metadata.creation_timestamp or ""))  # the latest try
        tail = self._log(core, namespace, run, last)
        kind, diagnosis = failure_kind(last, tail)
        node = last.spec.node_name or ""
        if kind == "bad-input":
            error = last_error(tail)
            return ShardOutcome(task, False, error=self.paths.to_local(error) if error else diagnosis, worker=node)
        if kind == "oom":
            bigger = more_memory(run.memory, self.settings["memory_cap"])
            if bigger is None:
                return ShardOutcome(task, False, error=f"OOMKilled at the memory cap {run.memory} "
                                    "(raise memory_cap in montage config)", worker=node)
            self.memory[task.id] = bigger
            return ShardOutcome(task, False, error=f"OOMKilled with {run.memory}; next try with {bigger}",
                                transient=True, worker=node)
        return ShardOutcome(task, False, error=diagnosis, transient=kind != "architecture", worker=node)

    def _record_pod(self, core: Any, namespace: str, run: _Run, pod: Any) -> None:
        """A finished pod's log and diagnosis into the job store (the web UI's log panel reads them)."""
        name = pod.metadata.name
        if name in run.recorded or self.store is None or not self.job_id:
            return
        phase = pod.status.phase if pod.status else ""
        if phase in ("Running",):
            return
        run.recorded.add(name)
        text = self._log(core, namespace, run, pod) if phase in ("Succeeded", "Failed") else ""
        diagnosis = diagnose_pod(pod, text) if phase != "Succeeded" else ""
        self.store.worker_log(self.job_id, name, stage=run.tasks[0].stage, node=pod.spec.node_name or "",
                              diagnosis=diagnosis, text=text)

    def _for_pods(self, task: ShardTask, placement: Placement) -> ShardSpec:
        """The task's spec as a pod sees it: paths on the pod's mount, encoders and decoder left
        to the node (it has the device), the ``--accel`` choice its placement made."""
        from dataclasses import replace

        spec = replace(task.payload, resolve_on_node=True)
        if placement.accel_choice is not None and isinstance(spec, RenderSpec):
            spec = replace(spec, accel=placement.accel_choice)
        return ShardSpec.from_json(self.paths.to_pod(spec.to_json()))

    def close(self) -> None:
        for run in list(self._live):
            self._delete(run.name)
        self._live.clear()


def _sources(task: ShardTask) -> list[str]:
    """Media a shard reads: its clip, and a render segment's sources. A shard's ``clip`` may also be
    a label (B-roll scoring: "lines 1–8"), which is not a file and need not be on the volume."""
    sources = [task.clip] if task.clip and (os.path.isabs(task.clip) or os.path.exists(task.clip)) else []
    if isinstance(task.payload, ShardSpec):
        sources += [s for s in task.payload.sources() if s not in sources]
    return sources


def job_pods(core: Any, namespace: str, job_name: str) -> list[Any]:
    selector = f"batch.kubernetes.io/job-name={job_name}"
    pods = core.list_namespaced_pod(namespace, label_selector=selector).items
    # the label selector is the API server's to apply; checking again costs nothing
    return [p for p in pods if (p.metadata.labels or {}).get("batch.kubernetes.io/job-name") == job_name]


def read_pod_log(core: Any, namespace: str, pod: str, previous: bool = False) -> str:
    from kubernetes.client import ApiException

    try:
        return core.read_namespaced_pod_log(pod, namespace, previous=previous) or ""
    except ApiException:  # not started yet, or already gone
        return ""

