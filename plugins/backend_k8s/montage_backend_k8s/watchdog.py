"""Why a Job makes no progress, in the cluster's own words: its conditions and the Warning events
of the Job and its pods.

A Job whose pods are refused (a ResourceQuota, Pod Security admission, an admission webhook, a
missing service account) shows nothing in its status: the Job controller reports each refusal as
a ``FailedCreate`` event on the Job. A pod that was scheduled but never starts (a volume that
does not mount, a container that cannot be created) says why in its own events. A Job that
failed as a whole (``Failed``/``FailureTarget``: a deadline, a policy) or is held
(``Suspended``: Kueue, or ``kubectl patch``) says so in its conditions. The backend quotes these
in one line naming the Job, instead of guessing or waiting forever.
"""

from __future__ import annotations

import datetime
import logging
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("montage.k8s")

#: refusals that may pass by themselves: quota frees up as other pods end, a webhook comes back.
#: Anything else (Pod Security, a webhook's "denied", a missing service account) is the same on
#: every retry of the Job controller, so waiting for it only delays the error.
PASSING = ("exceeded quota", "failed calling webhook", "context deadline exceeded", "timeout", "try again",
           "the object has been modified", "etcdserver")
#: container waiting reasons the kubelet never gets past on its own (the pod spec or image is wrong)
STUCK_WAITING = ("CreateContainerConfigError", "CreateContainerError", "RunContainerError")
#: conditions of a Job that has failed as a whole; FailureTarget (1.31+) comes first, while pods terminate
FAILED = ("FailureTarget", "Failed")


@dataclass(frozen=True)
class ClusterWarning:
    """One Warning event, as the API reports it."""

    reason: str
    message: str
    at: datetime.datetime | None  # when it was last seen

    def quote(self) -> str:
        # the Job controller prefixes every pod-creation error with "Error creating: "
        message = self.message.strip().removeprefix("Error creating: ")
        return f"{self.reason}: {message}" if self.reason else message


def passing(warning: ClusterWarning) -> bool:
    """A refusal worth waiting for (until the pending timeout)."""
    text = warning.message.lower()
    return any(marker in text for marker in PASSING)


def _stamp(event: Any) -> datetime.datetime | None:
    """When an event was last seen: core/v1 events fill ``lastTimestamp``, events.k8s.io ones ``eventTime``."""
    for value in (event.last_timestamp, event.event_time, event.first_timestamp, event.metadata.creation_timestamp):
        if isinstance(value, datetime.datetime):
            return value
    return None


def warning_events(core: Any, namespace: str, names: set[str]) -> dict[str, list[ClusterWarning]]:
    """Warning events of the objects named ``names`` (Jobs and pods), oldest first, by name.

    One list call for all of them (``type=Warning`` is a field the API server selects on); a
    Role without ``list events`` gives nothing, and the callers fall back to their own words.
    """
    from kubernetes.client import ApiException

    if not names:
        return {}
    try:
        events = core.list_namespaced_event(namespace, field_selector="type=Warning").items
    except ApiException as exc:
        if exc.status in (401, 403, 404):
            return {}
        raise
    found: dict[str, list[ClusterWarning]] = {}
    for event in events:
        involved = event.involved_object
        # selected by the API server already; checked again because it costs nothing
        if event.type != "Warning" or involved is None or involved.name not in names:
            continue
        warning = ClusterWarning(event.reason or "", event.message or "", _stamp(event))
        found.setdefault(involved.name, []).append(warning)
    epoch = datetime.datetime.min.replace(tzinfo=datetime.timezone.utc)
    for items in found.values():
        items.sort(key=lambda w: w.at or epoch)
    return found


def refused_creation(warnings: list[ClusterWarning], since: datetime.datetime | None = None) -> ClusterWarning | None:
    """The Job controller's latest refusal to create a pod (``FailedCreate``), if any, not older
    than ``since`` (the newest pod: a refusal before it was followed by a pod that was created)."""
    refusals = [w for w in warnings if w.reason == "FailedCreate" and (since is None or w.at is None or w.at >= since)]
    return refusals[-1] if refusals else None


def condition(job: Any, *types: str) -> Any:
    """The Job's first true condition of ``types``, or None."""
    for c in ((job.status.conditions if job.status else None) or []):
        if c.type in types and c.status == "True":
            return c
    return None


def describe_condition(c: Any) -> str:
    """``Reason: message`` of a condition, whichever parts it has."""
    parts = [p for p in (c.reason, c.message) if p]
    return ": ".join(parts) or c.type


def not_starting(pod: Any, warnings: list[ClusterWarning]) -> str:
    """Why a scheduled pod does not start, or "": its latest Warning event (FailedMount,
    FailedCreatePodSandBox, ...) or a container waiting reason the kubelet never gets past."""
    status = pod.status
    if status is None or status.phase != "Pending":
        return ""
    for cs in (status.container_statuses or []) + (status.init_container_statuses or []):
        waiting = cs.state.waiting if cs.state else None
        if waiting and waiting.reason in STUCK_WAITING:
            return f"{waiting.reason}: {waiting.message or 'see kubectl describe pod'}"
    if warnings:
        return warnings[-1].quote()
    return ""
