"""One line per failed pod saying why, from what the API server reports (and the last log lines).

:func:`failure_kind` classifies as well, because what the backend does next depends on it: an
OOM kill is retried with more memory, bad input and a wrong architecture are final, a pod that
cannot pull its image or find a node will never start.
"""

from __future__ import annotations

from typing import Any

EXIT_BAD_INPUT = 3
EXIT_OOM = 137
PULL_FAILURES = ("ImagePullBackOff", "ErrImagePull", "InvalidImageName", "ErrImageNeverPull")


def last_error(log: str) -> str:
    """The worker's last ``error: …`` line without its prefix (what went wrong with the shard), or ""."""
    lines = [line for line in log.strip().splitlines() if line.startswith("error: ")]
    return lines[-1][len("error: "):] if lines else ""


def pod_index(pod: Any) -> int:
    """The Indexed Job completion index of a pod (label, else annotation), -1 when absent."""
    for source in (pod.metadata.labels or {}, pod.metadata.annotations or {}):
        value = source.get("batch.kubernetes.io/job-completion-index")
        if value is not None:
            return int(value)
    return -1


def failure_kind(pod: Any, log_tail: str = "") -> tuple[str, str]:
    """``(kind, one-line diagnosis)``; kind is one of ``evicted``, ``unschedulable``, ``image``,
    ``oom``, ``architecture``, ``bad-input``, ``error`` or ``""`` (nothing wrong seen)."""
    status = pod.status
    if status is None:
        return "", "no status yet"
    reason = status.reason or ""
    conditions = status.conditions or []
    if reason == "Evicted" or any(c.type == "DisruptionTarget" and c.status == "True" for c in conditions):
        why = status.message or next((c.message for c in conditions if c.type == "DisruptionTarget" and c.message),
                                     "node drained or pre-empted")
        return "evicted", f"evicted ({why}); not counted against the shard"
    for c in conditions:
        if c.type == "PodScheduled" and c.status == "False" and c.reason == "Unschedulable":
            return "unschedulable", f"unschedulable: {c.message}"
    for cs in (status.container_statuses or []) + (status.init_container_statuses or []):
        waiting = cs.state.waiting if cs.state else None
        if waiting and waiting.reason in PULL_FAILURES:
            return "image", (f"cannot pull image {cs.image}: {waiting.reason} "
                             f"({waiting.message or 'check the registry and tag'}); run montage preflight")
        terminated = (cs.state.terminated if cs.state else None) or (
            cs.last_state.terminated if cs.last_state else None)
        if not terminated:
            continue
        if "exec format error" in log_tail or "exec format error" in (terminated.message or ""):
            return "architecture", (f"exec format error: image {cs.image} is built for another CPU architecture "
                                    f"than node {pod.spec.node_name if pod.spec else '?'}; build it for that "
                                    "platform (docker buildx --platform) or pin the Job to matching nodes")
        if terminated.reason == "OOMKilled" or terminated.exit_code == EXIT_OOM:
            return "oom", "OOMKilled: the shard needs more memory than its limit (retried with more, up to the cap)"
        if terminated.exit_code == EXIT_BAD_INPUT:
            return "bad-input", f"bad input: {last_error(log_tail) or 'see the pod log'}"
        if terminated.exit_code:
            return "error", f"exited with {terminated.exit_code} ({terminated.reason or 'Error'})"
    return "", reason or "no failure recorded"


def diagnose_pod(pod: Any, log_tail: str = "") -> str:
    """``OOMKilled``, evicted by a drain, image pull failure, wrong architecture, unschedulable, or the exit."""
    return failure_kind(pod, log_tail)[1]
