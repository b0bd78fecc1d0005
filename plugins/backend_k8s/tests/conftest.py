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
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest


@dataclass
class Fault:
    """``kind``: ``oom-below`` (OOMKilled while the memory limit is under ``memory``), ``drain``
    (evicted once, mid-shard), ``image`` (every pod of the stage's Job stuck in ImagePullBackOff)."""

    kind: str
    stage: str
    shard: str = ""  # task id (e.g. analysis-0001); "" = every shard of the stage
    memory: str = "4Gi"
    times: int = 1  # drains: how many times it happens


@dataclass
class _Index:
    failures: int = 0
    state: str = "pending"  # pending | running | succeeded | failed
    pod: str = ""


@dataclass
class _JobState:
    indexes: dict[int, _Index] = field(default_factory=dict)
    done: bool = False


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

    def log_of(self, pod: str) -> bytes:
        path = self.logs / f"{pod}.log"
        return path.read_bytes() if path.exists() else b""

    def _loop(self) -> None:
        from kubernetes import client

        batch, core = client.BatchV1Api(self.api), client.CoreV1Api(self.api)
        while not self._stop.is_set():
            try:
                for job in batch.list_namespaced_job(self.namespace).items:
                    self._reconcile(job, batch, core)
            except Exception as exc:  # keep the cluster alive; the test's assertions will tell
                import traceback

                print(f"fake cluster: {type(exc).__name__}: {str(exc).splitlines()[0]} "
                      f"{traceback.format_exc().splitlines()[-8:]}", file=sys.stderr)
            time.sleep(0.1)

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
            elif info["job"] == name:
                self._inject(job, pod_name, proc, info)
        running = sum(1 for i in state.indexes.values() if i.state == "running")
        for index, slot in state.indexes.items():
            if slot.state == "pending" and running < (job.spec.parallelism or 1):
                self._start_pod(job, index, slot, core)
                running += 1
        completed = [i for i, s in state.indexes.items() if s.state == "succeeded"]
        failed = [i for i, s in state.indexes.items() if s.state == "failed"]
        status: dict[str, Any] = {"completedIndexes": _ranges(completed), "failedIndexes": _ranges(failed),
                                  "succeeded": len(completed), "failed": sum(s.failures for s in state.indexes.values())}
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
        if self._fault("image", job, shard):
            core.patch_namespaced_pod_status(pod, self.namespace, {"status": {"phase": "Pending", "containerStatuses": [
                {"name": "worker", "image": container.image, "imageID": "", "ready": False, "restartCount": 0,
                 "state": {"waiting": {"reason": "ImagePullBackOff", "message":
                           f'Back-off pulling image "{container.image}"'}}}]}})
            return
        env = {**os.environ, "JOB_COMPLETION_INDEX": str(index), "HOSTNAME": pod}
        for var in container.env or []:
            env[var.name] = node if var.value_from else var.value
        memory = container.resources.limits.get("memory", "")
        self.started.append((job.metadata.name, shard, memory))
        log = (self.logs / f"{pod}.log").open("wb")
        proc = subprocess.Popen([sys.executable, "-m", "montage_core", *container.args], stdout=log,
                                stderr=subprocess.STDOUT, env=env)
        self.processes[pod] = (proc, {"job": job.metadata.name, "index": index, "node": node, "shard": shard,
                                      "memory": memory, "start": time.monotonic(), "killed": ""})
        core.patch_namespaced_pod_status(pod, self.namespace, {"status": {"phase": "Running", "startTime": now,
                                         "containerStatuses": [_container(container.image, {"running": {"startedAt": now}})]}})

    @staticmethod
    def _shard_id(args: list[str], index: int) -> str:
        import json

        shard_file = args[args.index("--shards") + 1]
        return json.loads(Path(shard_file).read_text())["tasks"][index]["id"]

    def _inject(self, job: Any, pod: str, proc: subprocess.Popen[bytes], info: dict[str, Any]) -> None:
        """The OOM killer and node drains, once the worker has started its shard."""
        if info["killed"] or b"montage_event" not in self.log_of(pod):
            return
        oom = self._fault("oom-below", job, info["shard"])
        if oom and _mebibytes(info["memory"]) < _mebibytes(oom.memory):
            info["killed"] = "oom"
        drain = self._fault("drain", job, info["shard"])
        if drain and drain.times > 0:
            drain.times -= 1
            info["killed"] = "drain"
        if info["killed"]:
            proc.send_signal(signal.SIGKILL)

    def _finished(self, job: Any, state: _JobState, pod: str, code: int, info: dict[str, Any],
                  batch: Any, core: Any) -> None:
        del self.processes[pod]
        slot = state.indexes[info["index"]]
        now = datetime.datetime.now(datetime.timezone.utc).isoformat()
        image = job.spec.template.spec.containers[0].image
        if info["killed"] == "oom":
            code, reason = 137, "OOMKilled"
        else:
            reason = "Completed" if code == 0 else "Error"
        terminated = {"terminated": {"exitCode": code, "reason": reason, "finishedAt": now}}
        status: dict[str, Any] = {"phase": "Succeeded" if code == 0 and not info["killed"] else "Failed",
                                  "containerStatuses": [_container(image, terminated)]}
        if info["killed"] == "drain":
            self.evicted.append(pod)
            status["conditions"] = [{"type": "DisruptionTarget", "status": "True", "reason": "EvictionByEvictionAPI",
                                     "message": f"Eviction API: evicting (node {info['node']} drained)"}]
            status["containerStatuses"] = [_container(image, {"terminated": {"exitCode": 137, "reason": "Error"}})]
        core.patch_namespaced_pod_status(pod, self.namespace, {"status": status})
        if status["phase"] == "Succeeded":
            slot.state = "succeeded"
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
def kube(kmock: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """kmock as the cluster's API server: a kubeconfig for it, pod logs, access reviews, a namespace."""
    url = str(kmock.url).rstrip("/")
    config = tmp_path / "kubeconfig"
    config.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: test\n"
        f"clusters: [{{name: test, cluster: {{server: '{url}'}}}}]\n"
        "users: [{name: tester, user: {token: test-token}}]\n"
        "contexts: [{name: test, context: {cluster: test, user: tester, namespace: montage}}]\n")
    monkeypatch.setenv("KUBECONFIG", str(config))
    for name in ("KUBERNETES_SERVICE_HOST", "REGISTRY", "PVC_NAME", "MONTAGE_K8S_NAMESPACE", "MONTAGE_IMAGE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MONTAGE_K8S_CONFIG", str(tmp_path / "k8s.json"))
    monkeypatch.setenv("MONTAGE_K8S_POLL", "0.2")
    for resource in ("batch/v1/jobs", "v1/pods", "v1/namespaces", "v1/serviceaccounts"):
        kmock.resources[resource] = {}
    return kmock


def serve_pod_logs(kmock: Any, cluster: FakeCluster) -> None:
    """``GET …/pods/NAME/log`` answers with the pod process's output, as text (the kubelet's job)."""

    def log(request: Any) -> bytes:
        return cluster.log_of(request.name)

    kmock["get", re.compile(r"/api/v1/namespaces/[^/]+/pods/[^/]+/log")] << {"Content-Type": "text/plain"} << log
