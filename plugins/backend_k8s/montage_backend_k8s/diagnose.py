"""One line per failed pod saying why, from what the API server reports (and the last log lines)."""

from __future__ import annotations

from typing import Any


def diagnose_pod(pod: Any, log_tail: str = "") -> str:
    """``OOMKilled``, evicted by a drain, image pull failure, wrong architecture, unschedulable, or the exit."""
    status = pod.status
    reason = (status.reason or "") if status else ""
    if reason == "Evicted" or any(c.type == "DisruptionTarget" and c.status == "True" for c in status.conditions or []):
        return f"evicted ({status.message or 'node drained or pre-empted'}); not counted against the shard"
    for c in status.conditions or []:
        if c.type == "PodScheduled" and c.status == "False" and c.reason == "Unschedulable":
            return f"unschedulable: {c.message}"
    for cs in (status.container_statuses or []) + (status.init_container_statuses or []):
        waiting = cs.state.waiting if cs.state else None
        if waiting and waiting.reason in ("ImagePullBackOff", "ErrImagePull", "InvalidImageName"):
            return f"cannot pull image {cs.image}: {waiting.reason} ({waiting.message or 'check the registry and tag'})"
        terminated = (cs.state.terminated if cs.state else None) or (
            cs.last_state.terminated if cs.last_state else None)
        if terminated:
            if terminated.reason == "OOMKilled" or terminated.exit_code == 137:
                return "OOMKilled: the shard needs more memory than its limit (it is retried with more, up to the cap)"
            if "exec format error" in log_tail or "exec format error" in (terminated.message or ""):
                return f"exec format error: image {cs.image} is built for another CPU architecture than the node"
            if terminated.exit_code == 3:
                return f"bad input: {log_tail.strip().splitlines()[-1] if log_tail.strip() else 'see the pod log'}"
            if terminated.exit_code:
                return f"exited with {terminated.exit_code} ({terminated.reason or 'Error'})"
    return reason or "no failure recorded"
