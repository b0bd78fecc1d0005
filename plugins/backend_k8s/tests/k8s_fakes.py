"""A Kubernetes API for tests: kmock's in-memory API server, plus a test-side Job controller.

Only the cluster is fake, and only at its API: the backend and ``montage logs`` use the official
client unchanged, through a kubeconfig pointing at kmock. :class:`FakeCluster` plays the
kube-controller-manager and the kubelets: it watches Indexed Jobs over the same API, runs every
index as a real local ``montage worker`` process (the pod), serves its output as the pod log, and
applies ``backoffLimitPerIndex`` and the Job's ``podFailurePolicy`` as Kubernetes does. Faults are
injected where a cluster would produce them: the OOM killer, a node drain, an image that cannot
be pulled.
"""

from __future__ import annotations

import datetime
import gzip
import hashlib
import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tarfile
import threading
import time
import traceback
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from kmock import KubernetesObjectNotFoundError
from kmock import resource as kmock_resource



#: runs argv[2:] with argv[1] bind-mounted read-only in a private mount namespace (under unshare -m)
READ_ONLY_MOUNT = """
import os, subprocess, sys
path = sys.argv[1]
subprocess.run(["mount", "--bind", path, path], check=True)
subprocess.run(["mount", "-o", "remount,bind,ro", path], check=True)
os.execv(sys.argv[2], sys.argv[2:])
"""


def read_only_mounts_work() -> bool:
    probe = subprocess.run(["unshare", "-m", "--", "mount", "--bind", "/tmp", "/tmp"], capture_output=True)
    return probe.returncode == 0


class KubeletLog:
    """One container's log as the kubelet keeps and serves it.

    The container runtime stamps each line as it reads it from the container (RFC 3339, to the
    nanosecond); the kubelet serves the current log file only (``rotate`` starts a new one, as
    ``containerLogMaxSize`` does), with ``timestamps=true`` prefixing each line with its stamp and
    ``sinceTime`` leaving out the lines before it. The API server passes ``sinceTime`` on to the
    kubelet at whole seconds (``Format(time.RFC3339)``), so that is what is compared.
    """

    def __init__(self, raw: Path | None = None) -> None:
        self.raw = raw  # the container's stdout and stderr, as the process wrote them
        self.current: list[tuple[int, str]] = []  # (stamp in ns since the epoch, line) of the current file
        self.rotated: list[tuple[int, str]] = []
        self.served: list[bytes] = []  # every answer, for tests that count what crossed the network
        self._offset = 0
        self._lock = threading.Lock()

    def write(self, line: str, at: int) -> None:
        with self._lock:
            self.current.append((at, line))

    def sync(self, final: bool = False) -> None:
        """Stamp the lines the container wrote since the last sync (``final``: its last, unfinished one too)."""
        if self.raw is None or not self.raw.exists():
            return
        with self._lock, self.raw.open("rb") as f:
            f.seek(self._offset)
            data = f.read()
            end = len(data) if final else data.rfind(b"\n") + 1
            for line in data[:end].decode("utf-8", "replace").splitlines():
                self.current.append((time.time_ns(), line))
            self._offset += end

    def rotate(self) -> None:
        self.sync()
        with self._lock:
            self.rotated += self.current
            self.current = []

    def serve(self, params: dict[str, str]) -> bytes:
        self.sync()
        since = -1
        if params.get("sinceTime"):
            moment = datetime.datetime.fromisoformat(params["sinceTime"].replace("Z", "+00:00"))
            since = int(moment.timestamp()) * 10**9  # whole seconds, as the API server passes it on
        stamps = params.get("timestamps") == "true"
        with self._lock:
            lines = [(stamp_text(at) + " " if stamps else "") + line for at, line in self.current if at >= since]
        answer = "".join(f"{line}\n" for line in lines).encode()
        self.served.append(answer)
        return answer


def stamp_text(nanos: int) -> str:
    """The kubelet's timestamp: RFC 3339 in UTC with nine fraction digits (``RFC3339NanoFixed``)."""
    moment = datetime.datetime.fromtimestamp(nanos // 10**9, tz=datetime.timezone.utc)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{nanos % 10**9:09d}Z"


@dataclass
class Fault:
    """``kind``: ``oom-below`` (OOMKilled while the memory limit is under ``memory``), ``drain``
    (evicted once, mid-shard), ``crash`` (the worker dies with SIGSEGV, every time), ``image``
    (every pod of the stage's Job stuck in ImagePullBackOff), ``unschedulable`` (no node has the
    ``resource`` a Job asks for), ``read-only`` (the shared volume mounted read-only in the pod),
    ``no-pods`` (the Job controller cannot create the stage's pods: a quota, Pod Security admission;
    with a ``message``, it says so in a ``FailedCreate`` event on the Job, as the real one does),
    ``condition`` (the Job gets ``condition`` = (type, reason, message) and no pods: ``Suspended`` by
    a queueing controller, ``Failed`` by a deadline), ``mount`` (pods are scheduled and never start:
    a ``FailedMount`` event on each), ``delete-job`` (the stage's Job is deleted, with its pods, once
    ``times`` of its shards have succeeded).
    An ``image`` fault with ``seconds`` passes: each pod fails to pull (``ErrImagePull``, then
    ``ImagePullBackOff``) for that long after it is created, then pulls and runs (a registry's 429)."""

    kind: str
    stage: str
    shard: str = ""  # task id (e.g. analysis-0001); "" = every shard of the stage
    memory: str = "4Gi"
    times: int = 1  # drains: how many times it happens
    resource: str = ""  # unschedulable: the extended resource no node has
    seconds: float = 0.0  # image: how long each pod's pull fails (0: for ever)
    message: str = ""  # no-pods: the admission's refusal, as the Job controller's FailedCreate event quotes it
    condition: tuple[str, str, str] = ("", "", "")  # condition: the Job condition's type, reason and message


@dataclass
class _Index:
    failures: int = 0
    state: str = "pending"  # pending | running | succeeded | failed
    pod: str = ""


@dataclass
class _JobState:
    indexes: dict[int, _Index] = field(default_factory=dict)
    done: bool = False
    started: bool = False  # status.startTime is set


def _mebibytes(quantity: str) -> float:
    from montage_backend_k8s.backend import memory_bytes

    return memory_bytes(quantity) / 2**20


class FakeCluster:
    """Job controller and kubelets for ``namespace``, running pods as local processes."""

    def __init__(self, api: Any, namespace: str, logs: Path, nodes: tuple[str, ...] = ("node-1", "node-2")):
        self.api, self.namespace, self.logs, self.nodes = api, namespace, logs, nodes
        self.faults: list[Fault] = []
        self.jobs: dict[str, _JobState] = {}
        self.processes: dict[str, tuple[subprocess.Popen[bytes], dict[str, Any]]] = {}
        self.started: list[tuple[str, str, str]] = []  # (job, shard id, memory) for every pod that ran
        self.evicted: list[str] = []
        self.evicted_nodes: list[str] = []
        self.succeeded: list[str] = []  # shard ids, in the order their pods succeeded
        self.full: set[str] = set()  # Jobs whose pending pods find no room (the cluster is full for them)
        self.pod_logs: dict[str, KubeletLog] = {}
        #: pods whose image pull fails for now: pod -> (when it succeeds, monotonic; job, index, node)
        self.pulling: dict[str, tuple[float, str, int, str]] = {}
        self.pull_failures: set[str] = set()  # pods that were seen failing to pull
        self.backing_off: set[str] = set()
        self.deleted: list[str] = []  # Jobs a delete-job fault deleted
        self._events: set[tuple[str, str]] = set()  # (object, reason) already reported
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="fake-cluster", daemon=True)
        self._node = 0
        logs.mkdir(parents=True, exist_ok=True)

    # ------------------------------------------------------------------ lifecycle
    def __enter__(self) -> FakeCluster:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(10)
        for proc, _ in self.processes.values():
            if proc.poll() is None:
                proc.kill()

    def log_of(self, pod: str) -> KubeletLog:
        return self.pod_logs.get(pod) or KubeletLog()

    def _loop(self) -> None:
        from kubernetes import client

        batch, core = client.BatchV1Api(self.api), client.CoreV1Api(self.api)
        while not self._stop.is_set():
            try:
                jobs = batch.list_namespaced_job(self.namespace).items
                for job in jobs:
                    self._reconcile(job, batch, core)
                for pod in list(self.processes):  # the runtime stamps lines as the containers write them
                    self.log_of(pod).sync()
                self._collect_garbage({job.metadata.name for job in jobs})
            except Exception as exc:  # keep the cluster alive; the test's assertions will tell
                print(f"fake cluster: {type(exc).__name__}: {str(exc).splitlines()[0]} "
                      f"{traceback.format_exc().splitlines()[-8:]}", file=sys.stderr)
            time.sleep(0.1)

    def _collect_garbage(self, live: set[str]) -> None:
        """A deleted Job's pods go with it (propagationPolicy Background)."""
        for pod, (_, job, _, _) in list(self.pulling.items()):
            if job not in live:
                del self.pulling[pod]
        for pod, (proc, info) in list(self.processes.items()):
            if info["job"] not in live:
                proc.kill()
                proc.wait()
                del self.processes[pod]

    # ------------------------------------------------------------------ the Job controller
    def _fault(self, kind: str, job: Any, shard: str) -> Fault | None:
        stage = job.metadata.labels.get("montage/stage", "")
        return next((f for f in self.faults if f.kind == kind and f.stage == stage and f.shard in ("", shard)), None)

    def _reconcile(self, job: Any, batch: Any, core: Any) -> None:
        name = job.metadata.name
        state = self.jobs.setdefault(name, _JobState({i: _Index() for i in range(job.spec.completions)}))
        if state.done:
            return
        for pod_name, (proc, info) in list(self.processes.items()):
            if info["job"] == name and proc.poll() is not None:
                self._finished(job, state, pod_name, proc.returncode, info, batch, core)
        for pod, (ready, job_name, index, node) in list(self.pulling.items()):
            if job_name == name and time.monotonic() >= ready:  # the registry answers again: the pull succeeds
                del self.pulling[pod]
                self._run_container(job, index, pod, node, core)
            elif job_name == name and pod not in self.backing_off and \
                    time.monotonic() >= ready - self._pull_fault(job, index).seconds / 2:
                self.backing_off.add(pod)
                self._pull_failed(job, pod, core, "ImagePullBackOff")  # the kubelet backs off between tries
        held = self._fault("condition", job, "")
        if not state.started and not (held and held.condition[0] == "Suspended"):
            # the controller's first look at a Job that is not suspended, whether or not its pods can be created
            state.started = True
            now = datetime.datetime.now(datetime.timezone.utc).isoformat()
            batch.patch_namespaced_job_status(name, self.namespace, {"status": {"startTime": now}})
        refused = self._fault("no-pods", job, "")
        if refused:  # pod creation refused (a ResourceQuota, Pod Security admission)
            if refused.message:
                index = next(iter(state.indexes))
                self._event(core, "Job", name, "FailedCreate", f'Error creating: pods "{name}-{index}-" is forbidden: '
                                                               f"{refused.message}")
            return
        if held:  # the Job as a whole: suspended by a queueing controller, or failed by a deadline
            kind, reason, message = held.condition
            batch.patch_namespaced_job_status(name, self.namespace, {"status": {"conditions": [
                {"type": kind, "status": "True", "reason": reason, "message": message}]}})
            return
        gone = self._fault("delete-job", job, "")
        if gone and gone.times > 0 and sum(s.state == "succeeded" for s in state.indexes.values()) >= gone.times:
            gone.times = 0
            self.deleted.append(name)
            batch.delete_namespaced_job(name, self.namespace, propagation_policy="Background")
            return
        running = sum(1 for i in state.indexes.values() if i.state == "running")
        for index, slot in state.indexes.items():
            if slot.state == "pending" and running < (job.spec.parallelism or 1) and name not in self.full:
                self._start_pod(job, index, slot, core)
                running += 1
        completed = [i for i, s in state.indexes.items() if s.state == "succeeded"]
        failed = [i for i, s in state.indexes.items() if s.state == "failed"]
        status: dict[str, Any] = {"completedIndexes": _ranges(completed), "failedIndexes": _ranges(failed),
                                  "succeeded": len(completed),
                                  "failed": sum(s.failures for s in state.indexes.values())}
        if len(completed) + len(failed) == len(state.indexes):
            state.done = True
            condition = ("Complete", "") if not failed else ("Failed", "FailedIndexes")
            status["conditions"] = [{"type": condition[0], "status": "True", "reason": condition[1]}]
        batch.patch_namespaced_job_status(name, self.namespace, {"status": status})

    def _start_pod(self, job: Any, index: int, slot: _Index, core: Any) -> None:
        container = job.spec.template.spec.containers[0]
        node = self.nodes[self._node % len(self.nodes)]
        self._node += 1
        pod = f"{job.metadata.name}-{index}-{uuid.uuid4().hex[:5]}"
        labels = {**(job.spec.template.metadata.labels or {}), "batch.kubernetes.io/job-name": job.metadata.name,
                  "batch.kubernetes.io/job-completion-index": str(index)}
        now = datetime.datetime.now(datetime.timezone.utc).isoformat()
        body = {"metadata": {"name": pod, "namespace": self.namespace, "labels": labels, "creationTimestamp": now,
                             "annotations": {"batch.kubernetes.io/job-completion-index": str(index)}},
                "spec": {"nodeName": node, "containers": [{"name": "worker", "image": container.image,
                                                           "args": container.args}],
                         "restartPolicy": "Never"},
                "status": {"phase": "Pending"}}
        core.create_namespaced_pod(self.namespace, body)
        slot.state, slot.pod = "running", pod
        shard = self._shard_id(container.args, index)
        missing = self._fault("unschedulable", job, shard)
        if missing and missing.resource in (container.resources.limits or {}):
            core.patch_namespaced_pod_status(pod, self.namespace, {"status": {"phase": "Pending", "conditions": [
                {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                 "message": f"0/{len(self.nodes)} nodes are available: {len(self.nodes)} Insufficient "
                            f"{missing.resource}. preemption: 0/{len(self.nodes)} nodes are available"}]}})
            return
        if self._fault("mount", job, shard):  # scheduled, and the kubelet cannot mount the volume
            volume = job.spec.template.spec.volumes[0]
            core.patch_namespaced_pod_status(pod, self.namespace, {"status": {"phase": "Pending", "containerStatuses": [
                _container(container.image, {"waiting": {"reason": "ContainerCreating"}})]}})
            self._event(core, "Pod", pod, "FailedMount",
                        f'MountVolume.SetUp failed for volume "{volume.persistent_volume_claim.claim_name}" : mount '
                        "failed: exit status 32 mount.nfs: Connection timed out")
            return
        pull = self._fault("image", job, shard)
        if pull and pull.seconds:
            self.pulling[pod] = (time.monotonic() + pull.seconds, job.metadata.name, index, node)
            self._pull_failed(job, pod, core, "ErrImagePull")
            return
        if pull:
            self._pull_failed(job, pod, core, "ImagePullBackOff")
            return
        self._run_container(job, index, pod, node, core)

    def _pull_fault(self, job: Any, index: int) -> Fault:
        fault = self._fault("image", job, self._shard_id(job.spec.template.spec.containers[0].args, index))
        assert fault is not None
        return fault

    def _event(self, core: Any, kind: str, name: str, reason: str, message: str) -> None:
        """A Warning event about an object, once, as the Job controller or the kubelet records it."""
        if (name, reason) in self._events:
            return
        self._events.add((name, reason))
        now = datetime.datetime.now(datetime.timezone.utc).isoformat()
        source = "job-controller" if kind == "Job" else "kubelet"
        core.create_namespaced_event(self.namespace, {
            "metadata": {"name": f"{name}.{uuid.uuid4().hex[:16]}", "namespace": self.namespace},
            "involvedObject": {"kind": kind, "name": name, "namespace": self.namespace,
                               "apiVersion": "batch/v1" if kind == "Job" else "v1"},
            "reason": reason, "message": message, "type": "Warning", "count": 1, "source": {"component": source},
            "firstTimestamp": now, "lastTimestamp": now})

    def _pull_failed(self, job: Any, pod: str, core: Any, reason: str) -> None:
        image = job.spec.template.spec.containers[0].image
        message = (f'Back-off pulling image "{image}"' if reason == "ImagePullBackOff" else
                   f'failed to pull and unpack image "{image}": unexpected status from HEAD request: 429 Too Many '
                   'Requests')
        self.pull_failures.add(pod)
        core.patch_namespaced_pod_status(pod, self.namespace, {"status": {"phase": "Pending", "containerStatuses": [
            {"name": "worker", "image": image, "imageID": "", "ready": False, "restartCount": 0,
             "state": {"waiting": {"reason": reason, "message": message}}}]}})

    def _run_container(self, job: Any, index: int, pod: str, node: str, core: Any) -> None:
        """The image is there: the container starts, as a local ``montage`` process."""
        container = job.spec.template.spec.containers[0]
        shard = self._shard_id(container.args, index)
        now = datetime.datetime.now(datetime.timezone.utc).isoformat()
        env = {**os.environ, "JOB_COMPLETION_INDEX": str(index), "HOSTNAME": pod}
        for var in container.env or []:
            env[var.name] = node if var.value_from else var.value
        memory = container.resources.limits.get("memory", "")
        self.started.append((job.metadata.name, shard, memory))
        command = [sys.executable, "-m", "montage_core", *container.args]
        if self._fault("read-only", job, shard):  # the kubelet mounts the volume read-only
            mount = container.volume_mounts[0].mount_path
            command = ["unshare", "-m", "--", sys.executable, "-c", READ_ONLY_MOUNT, mount, *command]
        with (self.logs / f"{pod}.log").open("wb") as log:  # the pod's log: stdout and stderr, as the kubelet keeps it
            proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
        self.pod_logs[pod] = KubeletLog(self.logs / f"{pod}.log")
        self.processes[pod] = (proc, {"job": job.metadata.name, "index": index, "node": node, "shard": shard,
                                      "memory": memory, "killed": ""})
        self._inject(job, proc, self.processes[pod][1])
        running = _container(container.image, {"running": {"startedAt": now}})
        core.patch_namespaced_pod_status(pod, self.namespace, {"status": {
            "phase": "Running", "startTime": now, "containerStatuses": [running]}})

    @staticmethod
    def _shard_id(args: list[str], index: int) -> str:
        if "--shards" not in args:  # not a worker (the storage probe)
            return ""
        shard_file = args[args.index("--shards") + 1]
        return json.loads(Path(shard_file).read_text())["tasks"][index]["id"]

    def _inject(self, job: Any, proc: subprocess.Popen[bytes], info: dict[str, Any]) -> None:
        """The OOM killer and node drains strike 0.3 s into the pod (a worker takes longer to start),
        from a timer, so that no pod can finish before its fault."""
        oom = self._fault("oom-below", job, info["shard"])
        if oom and _mebibytes(info["memory"]) < _mebibytes(oom.memory):
            info["killed"] = "oom"
        if self._fault("crash", job, info["shard"]):
            info["killed"] = "crash"
        drain = self._fault("drain", job, info["shard"])
        if drain and drain.times > 0:
            drain.times -= 1
            info["killed"] = "drain"
        if info["killed"]:
            sig = signal.SIGSEGV if info["killed"] == "crash" else signal.SIGKILL
            threading.Timer(0.3, proc.send_signal, (sig,)).start()

    def _finished(self, job: Any, state: _JobState, pod: str, code: int, info: dict[str, Any],
                  batch: Any, core: Any) -> None:
        del self.processes[pod]
        self.log_of(pod).sync(final=True)  # the whole log is there by the time the pod shows as finished
        slot = state.indexes[info["index"]]
        now = datetime.datetime.now(datetime.timezone.utc).isoformat()
        image = job.spec.template.spec.containers[0].image
        if info["killed"] == "oom":
            code, reason = 137, "OOMKilled"
        elif code < 0:  # killed by a signal: the container runtime reports 128 + signal
            code, reason = 128 - code, "Error"
        else:
            reason = "Completed" if code == 0 else "Error"
        terminated = {"terminated": {"exitCode": code, "reason": reason, "finishedAt": now}}
        status: dict[str, Any] = {"phase": "Succeeded" if code == 0 and not info["killed"] else "Failed",
                                  "containerStatuses": [_container(image, terminated)]}
        if info["killed"] == "drain":
            self.evicted.append(pod)
            self.evicted_nodes.append(info["node"])
            status["conditions"] = [{"type": "DisruptionTarget", "status": "True", "reason": "EvictionByEvictionAPI",
                                     "message": f"Eviction API: evicting (node {info['node']} drained)"}]
            status["containerStatuses"] = [_container(image, {"terminated": {"exitCode": 137, "reason": "Error"}})]
        core.patch_namespaced_pod_status(pod, self.namespace, {"status": status})
        if status["phase"] == "Succeeded":
            slot.state = "succeeded"
            self.succeeded.append(info["shard"])
            return
        action = _policy_action(job, status)
        if action == "Ignore":  # not counted against the index: a new pod, same retries left
            slot.state = "pending"
        elif action == "FailIndex":
            slot.failures += 1
            slot.state = "failed"
        else:
            slot.failures += 1
            slot.state = "failed" if slot.failures > (job.spec.backoff_limit_per_index or 0) else "pending"


def _container(image: str, state: dict[str, Any]) -> dict[str, Any]:
    return {"name": "worker", "image": image, "imageID": "", "ready": False, "restartCount": 0, "state": state}


def _policy_action(job: Any, status: dict[str, Any]) -> str:
    """The first ``podFailurePolicy`` rule matching the failed pod, as the Job controller applies it."""
    conditions = {(c["type"], c["status"]) for c in status.get("conditions", [])}
    code = status["containerStatuses"][0]["state"]["terminated"]["exitCode"]
    for rule in (job.spec.pod_failure_policy.rules if job.spec.pod_failure_policy else []):
        if rule.on_pod_conditions and any((p.type, p.status) in conditions for p in rule.on_pod_conditions):
            return rule.action
        if rule.on_exit_codes and not conditions:
            hit = code in rule.on_exit_codes.values
            if hit == (rule.on_exit_codes.operator == "In"):
                return rule.action
    return "Count"


def _ranges(indexes: list[int]) -> str:
    """``[0, 1, 2, 5]`` → ``"0-2,5"``, the Job status' notation."""
    out: list[str] = []
    for i in sorted(indexes):
        if out and re.fullmatch(rf"(\d+-)?{i - 1}", out[-1]):
            out[-1] = f"{out[-1].split('-')[0]}-{i}"
        else:
            out.append(str(i))
    return ",".join(out)


@pytest.fixture
def denied() -> set[tuple[str, str]]:
    """(verb, resource) pairs the fake API's RBAC refuses, e.g. ("delete", "jobs")."""
    return set()


@pytest.fixture
def server_version() -> dict[str, str]:
    """What the fake API server answers at /version (a test may change it before the command runs)."""
    return {"major": "1", "minor": "31", "gitVersion": "v1.31.2", "platform": "linux/amd64"}


@pytest.fixture
def kube(kmock: Any, denied: set[tuple[str, str]], server_version: dict[str, str], montage_home: Path,
         tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """kmock as the cluster's API server: a kubeconfig for it, pod logs, access reviews, a namespace,
    its version."""
    url = str(kmock.url).rstrip("/")
    config = tmp_path / "kubeconfig"
    config.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: test\n"
        f"clusters: [{{name: test, cluster: {{server: '{url}'}}}}]\n"
        "users: [{name: tester, user: {token: test-token}}]\n"
        "contexts: [{name: test, context: {cluster: test, user: tester, namespace: montage}}]\n")
    monkeypatch.setenv("KUBECONFIG", str(config))
    for name in ("KUBERNETES_SERVICE_HOST", "REGISTRY", "PVC_NAME", "MONTAGE_K8S_NAMESPACE", "MONTAGE_IMAGE",
                 "MONTAGE_PUSH_REGISTRY", "MONTAGE_K8S_DEVICE_GROUPS", "MONTAGE_K8S_NODES_RESOLVE_CLUSTER_DNS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MONTAGE_K8S_CONFIG", str(tmp_path / "k8s.json"))
    monkeypatch.setenv("MONTAGE_K8S_POLL", "0.2")
    for resource in ("batch/v1/jobs", "v1/pods", "v1/namespaces", "v1/serviceaccounts", "v1/persistentvolumeclaims",
                     "v1/events"):
        kmock.resources[resource] = {}
    # what deploy/base creates: the namespace, the service account, an RWX claim (bound)
    namespaces = {"montage"}

    def read_namespace(request: Any) -> dict[str, Any]:
        # kmock 0.8 parses GET /api/v1/namespaces/NAME as a list of that namespace's objects;
        # answer it the way the API server does
        name = request.url.path.rsplit("/", 1)[-1]
        if name not in namespaces:
            raise KubernetesObjectNotFoundError()
        return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}, "status": {"phase": "Active"}}

    kmock["get", re.compile(r"/api/v1/namespaces/[^/]+")] << read_namespace
    for account in ("montage", "montage-worker"):
        kmock.objects[kmock_resource("v1/serviceaccounts"), "montage", account] = {
            "metadata": {"name": account, "namespace": "montage"}}
    kmock.objects[kmock_resource("v1/persistentvolumeclaims"), "montage", "montage-data"] = {
        "metadata": {"name": "montage-data", "namespace": "montage"},
        "spec": {"accessModes": ["ReadWriteMany"]}, "status": {"phase": "Bound"}}

    def access_review(request: Any) -> dict[str, Any]:
        attrs = request.data["spec"]["resourceAttributes"]
        resource = attrs["resource"] + (f"/{attrs['subresource']}" if attrs.get("subresource") else "")
        allowed = (attrs["verb"], resource) not in denied
        # reviews are answers, not objects: the API server keeps none (kmock would, and refuse the next)
        kmock.objects[kmock_resource("authorization.k8s.io/v1/selfsubjectaccessreviews"), None, None].delete()
        return {**request.data, "status": {"allowed": allowed, "reason": "" if allowed else "RBAC: not bound"}}

    kmock["post /apis/authorization.k8s.io/v1/selfsubjectaccessreviews"] << access_review
    def version(request: Any) -> dict[str, str]:
        return {"gitCommit": "0" * 40, "gitTreeState": "clean", "goVersion": "go1.22", "compiler": "gc",
                "buildDate": "2024-10-22T20:28:14Z", **server_version}

    # the official client asks for /version/, with the slash
    kmock["get", re.compile(r"/version/?")] << version
    return kmock


#: the kmock server pod logs are served by, and its clusters (a test may run one cluster after another)
_LOG_SOURCES: list[tuple[Any, list[FakeCluster]]] = []


def serve_pod_logs(kmock: Any, cluster: FakeCluster) -> None:
    """``GET …/pods/NAME/log`` answers with the pod process's output, as text (the kubelet's job),
    honouring ``timestamps`` and ``sinceTime`` as the API server and the kubelet do."""
    if _LOG_SOURCES and _LOG_SOURCES[0][0] is kmock:
        _LOG_SOURCES[0][1].append(cluster)  # kmock answers with the first matching handler: it looks in every cluster
        return
    clusters = [cluster]
    _LOG_SOURCES[:] = [(kmock, clusters)]  # a new test's server: the last one's clusters are done with

    def log(request: Any) -> bytes:
        found = next((c.pod_logs[request.name] for c in reversed(clusters) if request.name in c.pod_logs), None)
        if found is None:  # no such pod, or its container never started (the API server answers 400 then)
            raise KubernetesObjectNotFoundError()
        return found.serve(dict(request.params))

    kmock["get", re.compile(r"/api/v1/namespaces/[^/]+/pods/[^/]+/log")] << {"Content-Type": "text/plain"} << log


# --------------------------------------------------------------------------- a real registry
REGISTRY_BIN = Path("/usr/bin/docker-registry")
SCHEMA2 = "application/vnd.docker.distribution.manifest.v2+json"
REPO = "team/montage"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _http(method: str, url: str, body: bytes | None = None, content_type: str = "") -> tuple[int, dict[str, str]]:
    headers = {"Content-Type": content_type} if content_type else {}
    request = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=5) as resp:
            return resp.status, dict(resp.headers)
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers)


def _push_blob(base: str, data: bytes) -> dict[str, object]:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    status, headers = _http("POST", f"{base}/v2/{REPO}/blobs/uploads/")
    assert status == 202, status
    location = headers["Location"]
    location = location if location.startswith("http") else base + location
    status, _ = _http("PUT", f"{location}{'&' if '?' in location else '?'}digest={digest}", data,
                      "application/octet-stream")
    assert status == 201, status
    return {"mediaType": "", "size": len(data), "digest": digest}


def _push_image(base: str, tags: list[str]) -> str:
    """Push a one-layer image under every tag; returns the manifest digest the registry answered."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        info = tarfile.TarInfo("hello.txt")
        info.size = 6
        tar.addfile(info, io.BytesIO(b"hello\n"))
    layer = _push_blob(base, gzip.compress(raw.getvalue(), mtime=0))
    layer["mediaType"] = "application/vnd.docker.image.rootfs.diff.tar.gzip"
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {
        "type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(raw.getvalue()).hexdigest()]}}).encode()
    cfg = _push_blob(base, config)
    cfg["mediaType"] = "application/vnd.docker.container.image.v1+json"
    manifest = json.dumps({"schemaVersion": 2, "mediaType": SCHEMA2, "config": cfg, "layers": [layer]}).encode()
    digests = set()
    for tag in tags:
        status, headers = _http("PUT", f"{base}/v2/{REPO}/manifests/{tag}", manifest, SCHEMA2)
        assert status == 201, status
        digests.add(headers["Docker-Content-Digest"])
    (digest,) = digests
    return digest


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """(host:port, digest of REPO:1.0) of a running registry holding REPO:1.0 and REPO:latest."""
    root = tmp_path_factory.mktemp("registry")
    port = _free_port()
    config = root / "config.yml"
    config.write_text("version: 0.1\nlog:\n  level: error\n"
                      f"storage:\n  filesystem:\n    rootdirectory: {root / 'data'}\n"
                      f"http:\n  addr: 127.0.0.1:{port}\n")
    proc = subprocess.Popen([str(REGISTRY_BIN), "serve", str(config)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                if _http("GET", f"{base}/v2/")[0] == 200:
                    break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                err = proc.stderr.read().decode() if proc.poll() is not None and proc.stderr else ""
                pytest.fail(f"docker-registry did not start: {err.strip()[-500:]}")
            time.sleep(0.05)
        yield f"127.0.0.1:{port}", _push_image(base, ["1.0", "latest"])
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
