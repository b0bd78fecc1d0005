"""``get_pod_logs(job_id)``: every pod of a montage job, with its log and a one-line diagnosis.

Users know their job id, not pod names: every Job and pod the backend creates carries the
``montage/job-id`` label, so one selector finds all stages and all retries. A container that
restarted also gives its previous log. When the cluster has already deleted the pods (Jobs are
kept for an hour after they finish), the copies in the job store are returned instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .diagnose import failure_kind, pod_index


@dataclass
class PodLog:
    pod: str
    stage: str
    node: str
    index: int
    phase: str
    log: str
    previous_log: str = ""
    diagnosis: str = ""  # one line, for failed or stuck pods

    def header(self) -> str:
        where = f"{self.stage} shard {self.index}" if self.index >= 0 else self.stage
        line = f"── {self.pod} ({where}, node {self.node or '?'}, {self.phase or 'unknown'})"
        return f"{line}: {self.diagnosis}" if self.diagnosis else line


def get_pod_logs(job_id: str, *, api: Any = None, namespace: str | None = None) -> list[PodLog]:
    """Logs and diagnoses of every pod labelled with ``job_id``, oldest first."""
    from kubernetes import client

    from .backend import read_pod_log
    from .config import api_client, resolve

    namespace = namespace or resolve()["namespace"].value
    core = client.CoreV1Api(api or api_client(resolve()["context"].value or None))
    selector = f"montage/job-id={job_id}"
    pods = [p for p in core.list_namespaced_pod(namespace, label_selector=selector).items
            if (p.metadata.labels or {}).get("montage/job-id") == job_id]
    pods.sort(key=lambda p: (str(p.metadata.creation_timestamp or ""), p.metadata.name))
    out = []
    for pod in pods:
        name = pod.metadata.name
        text = read_pod_log(core, namespace, name)
        restarts = sum(cs.restart_count or 0 for cs in (pod.status.container_statuses or [])) if pod.status else 0
        previous = read_pod_log(core, namespace, name, previous=True) if restarts else ""
        kind, diagnosis = failure_kind(pod, text)
        phase = pod.status.phase if pod.status else ""
        out.append(PodLog(name, (pod.metadata.labels or {}).get("montage/stage", ""), pod.spec.node_name or "",
                          pod_index(pod), phase, text, previous, diagnosis if kind else ""))
    return out


def stored_pod_logs(job_id: str, store: Any) -> list[PodLog]:
    """The copies the backend kept in the job store as each pod finished."""
    return [PodLog(row["source"], row["stage"], row["node"], -1, "finished", row["log"], "", row["diagnosis"])
            for row in store.worker_logs(job_id)]


def format_logs(logs: list[PodLog], *, events: bool = False) -> str:
    """Each pod's header, its log (progress event lines left out unless ``events``), then a summary."""
    parts = []
    for entry in logs:
        lines = [line for line in entry.log.splitlines() if events or not line.startswith('{"montage_event"')]
        body = "\n".join(lines)
        if entry.previous_log:
            body = f"(previous container)\n{entry.previous_log.rstrip()}\n(current container)\n{body}"
        parts.append(f"{entry.header()}\n{body}".rstrip())
    failed = [e for e in logs if e.diagnosis]
    if failed:
        parts.append(f"{len(failed)} of {len(logs)} pods failed or could not run:\n" +
                     "\n".join(f"  {e.pod}: {e.diagnosis}" for e in failed))
    return "\n\n".join(parts)
