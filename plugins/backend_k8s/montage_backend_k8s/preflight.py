"""Pre-flight for Kubernetes jobs: everything that would otherwise fail after the Jobs are created.

Run by ``montage preflight --backend k8s`` and, through the pre-flight hook, before every k8s job:

1. the API answers, and it is Kubernetes 1.29 or newer; the namespace, service account and PVC
   exist (where this user may read them), the PVC is ReadWriteMany; RBAC allows every verb the
   backend uses (one ``SelfSubjectAccessReview`` per verb, which every authenticated user may ask);
2. the nodes can resolve the image's registry (not a cluster DNS name: kubelets pull with the
   node's DNS); the registry answers its ``/v2/`` API and has the image; a tag is resolved to
   its digest now, so every Job of the run pulls the same image even if the tag moves;
3. the shared volume, from the coordinator and from inside the cluster: a one-pod Job writes,
   reads and deletes a probe file at the mount path and reports the mount's type and free space.

Each problem is one line naming what is missing and how to fix it.
"""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
from typing import Any

from montage_core.interfaces import PreflightCheck

from .config import REGISTRY_NODE_PORT

log = logging.getLogger("montage.k8s.preflight")

#: (verb, API group, resource, subresource) the backend uses; deploy/base's Role grants exactly these
NEEDED = [("create", "batch", "jobs", ""), ("get", "batch", "jobs", ""), ("list", "batch", "jobs", ""),
          ("delete", "batch", "jobs", ""), ("get", "", "pods", ""), ("list", "", "pods", ""),
          ("get", "", "pods", "log"), ("list", "", "events", "")]
FIX_RBAC = ("kubectl apply -k deploy/base (Role montage: jobs, pods, pods/log, events) and bind it to this user "
            "(deploy/user/rolebinding.yaml)")
PROBE_TIMEOUT = 120.0
#: the oldest Kubernetes the Jobs work on: backoffLimitPerIndex and the FailIndex pod failure
#: action are beta and on by default from 1.29 (alpha, off, in 1.28: the API server would drop them)
MIN_VERSION = (1, 29)


def _status(exc: Exception) -> int:
    return int(getattr(exc, "status", 0) or 0)


def _number(text: str | None) -> int:
    """The leading number of a version part: "29+" → 29."""
    import re

    digits = re.match(r"\d+", text or "")
    return int(digits.group()) if digits else 0


def check_server_version(api: Any) -> list[str]:
    """The API server is Kubernetes 1.29 or newer, where each shard's retries are its own."""
    from kubernetes import client
    from kubernetes.client import ApiException

    try:
        info = client.VersionApi(api).get_code()
    except ApiException as exc:  # /version is public; a proxy in front may still refuse it
        log.warning("the API server did not tell its version (%s %s); montage needs Kubernetes %d.%d or newer",
                    _status(exc), exc.reason, *MIN_VERSION)
        return []
    # minor is "29", or "29+" on GKE and EKS; gitVersion "v1.29.3-eks-adc7111" names the build
    found = (_number(info.major), _number(info.minor))
    name = info.git_version or f"{info.major}.{info.minor}"
    if found < MIN_VERSION:
        return [f"the cluster runs Kubernetes {name}; montage needs {MIN_VERSION[0]}.{MIN_VERSION[1]} or newer "
                "(Indexed Jobs with backoffLimitPerIndex and the FailIndex pod failure policy): upgrade the cluster"]
    log.info("Kubernetes %s (%d.%d or newer: per-shard retries)", name, *MIN_VERSION)
    return []


def check_access(api: Any, settings: dict[str, Any]) -> list[str]:
    """Namespace, service account, PVC and RBAC; stops at the first sign the API is unreachable."""
    from kubernetes import client
    from kubernetes.client import ApiException

    core, namespace = client.CoreV1Api(api), settings["namespace"]
    problems: list[str] = []
    try:
        core.read_namespace(namespace)
    except ApiException as exc:
        if _status(exc) == 404:
            return [f"namespace {namespace} does not exist: kubectl apply -k deploy/base, or set MONTAGE_K8S_NAMESPACE"]
        if _status(exc) not in (401, 403):
            problems.append(f"namespace {namespace}: the API server answered {_status(exc)} ({exc.reason})")
        if _status(exc) == 401:
            return [f"the Kubernetes API refused the credentials (401): refresh the kubeconfig ({exc.reason})"]
    except Exception as exc:  # connection refused, DNS, TLS: nothing else can be checked
        host = api.configuration.host
        return [f"cannot reach the Kubernetes API at {host} ({type(exc).__name__}): check KUBECONFIG and the context"]
    problems += check_server_version(api)
    auth = client.AuthorizationV1Api(api)
    denied = []
    for verb, group, resource, sub in NEEDED:
        review = client.V1SelfSubjectAccessReview(spec=client.V1SelfSubjectAccessReviewSpec(
            resource_attributes=client.V1ResourceAttributes(namespace=namespace, verb=verb, group=group,
                                                            resource=resource, subresource=sub or None)))
        try:
            answer = auth.create_self_subject_access_review(review)
        except ApiException as exc:
            return problems + [f"cannot ask the API server what this user may do ({_status(exc)} {exc.reason}): "
                               "check the kubeconfig's user"]
        if not (answer.status and answer.status.allowed):
            denied.append(f"{verb} {resource}{'/' + sub if sub else ''}{'.' + group if group else ''}")
    if denied:
        problems.append(f"not allowed to {', '.join(denied)} in namespace {namespace}: {FIX_RBAC}")
    for kind, read, name, fix in (
            ("service account", core.read_namespaced_service_account, settings["service_account"],
             "kubectl apply -k deploy/base, or set MONTAGE_SERVICE_ACCOUNT"),
            ("PVC", core.read_namespaced_persistent_volume_claim, settings["pvc"],
             "kubectl apply -k deploy/base (an RWX claim), or set PVC_NAME")):
        try:
            found = read(name, namespace)
        except ApiException as exc:
            if _status(exc) == 404:
                problems.append(f"{kind} {name} does not exist in namespace {namespace}: {fix}")
            continue  # 403: the least-privilege Role may not read it; the pods will tell
        if kind == "PVC":
            modes = (found.spec.access_modes or []) if found.spec else []
            if "ReadWriteMany" not in modes:
                problems.append(f"PVC {name} is {', '.join(modes) or 'without access modes'}: pods on different "
                                "nodes cannot share it; use a ReadWriteMany storage class (NFS, CephFS)")
            elif found.status and found.status.phase and found.status.phase != "Bound":
                problems.append(f"PVC {name} is {found.status.phase}, not Bound: check its storage class "
                                f"(kubectl describe pvc {name} -n {namespace})")
    return problems


def check_registry(settings: dict[str, Any]) -> list[str]:
    """The nodes can pull the image and it is in the registry; pins ``image_pinned`` to its digest.

    Pods pull ``image`` by its name; this machine asks the registry through ``push_registry``
    when the image is on the pull ``registry`` and the two addresses differ (the NodePort's
    ``localhost:30500`` is the registry only on a node)."""
    from .config import cluster_dns_name
    from .registry import check_image, parse_image

    image = settings["image"]
    ref = parse_image(image)
    problems = []
    if cluster_dns_name(ref.registry) and not os.environ.get("MONTAGE_K8S_NODES_RESOLVE_CLUSTER_DNS"):
        # the kubelet and containerd resolve with the node's DNS, not the cluster's: such a pull fails on every node
        problems.append(
            f"image registry {ref.registry} is a cluster DNS name that nodes cannot resolve when they pull: "
            f"kubectl apply -k deploy/registry and unset REGISTRY (nodes pull from localhost:{REGISTRY_NODE_PORT}), "
            "or set REGISTRY to a name the nodes resolve (MONTAGE_K8S_NODES_RESOLVE_CLUSTER_DNS=1 if their "
            "runtime maps this one)")
    reach = settings.get("push_registry") or settings["registry"]
    if ref.registry == settings["registry"] and reach != ref.registry:
        tag = f":{ref.tag}" if ref.tag else ""
        check = check_image(f"{reach}/{ref.repository}{tag}{'@' + ref.digest if ref.digest else ''}")
        pinned = ref.pinned(check.digest) if check.digest else None  # by the name the nodes pull it by
    else:
        check = check_image(image)
        pinned = check.pinned
    if check.ok and pinned:
        settings["image_pinned"] = pinned
        log.info("image %s is %s", image, pinned)
    return problems + check.problems


def check_local_volume(settings: dict[str, Any]) -> list[str]:
    """The coordinator writes shard files and reads results at ``local_mount``."""
    from .storage import probe_storage

    report = probe_storage(settings["local_mount"], min_free_bytes=0, where="here")
    if report.ok:
        log.info("shared volume here: %s", report.describe())
        return []
    return [f"shared volume (local_mount): {report.problem}"]


def check_volume_in_cluster(api: Any, settings: dict[str, Any], timeout: float = PROBE_TIMEOUT) -> list[str]:
    """A one-pod Job writes, reads and deletes a probe file at the mount path, as the workers will."""
    from kubernetes import client

    from .backend import job_pods, permanent_pull_failure, pull_grace, read_pod_log
    from .diagnose import failure_kind
    from .manifests import probe_job

    namespace = settings["namespace"]
    name = f"montage-preflight-{uuid.uuid4().hex[:8]}"
    job = probe_job(settings, name)  # placed where the workers go: their tolerations and node selector
    batch, core = client.BatchV1Api(api), client.CoreV1Api(api)
    batch.create_namespaced_job(namespace, job)
    pull_failing: dict[str, float] = {}  # pod -> when its image pull was first seen failing
    pull_error = ""  # the last poll's pull failure, if any
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pull_error = ""
            for pod in job_pods(core, namespace, name):
                kind, why = failure_kind(pod)
                # a pull error may be a registry's passing refusal (429): the workers' grace applies here too
                if kind == "image" and not permanent_pull_failure(why):
                    first = pull_failing.setdefault(pod.metadata.name, time.monotonic())
                    pull_error = f"storage probe pod {pod.metadata.name} cannot run: {why}"
                    if time.monotonic() - first <= pull_grace():
                        continue
                if kind in ("image", "architecture"):
                    return [f"storage probe pod {pod.metadata.name} cannot run: {why}"]
                if pod.status and pod.status.phase in ("Succeeded", "Failed"):
                    return _probe_answer(read_pod_log(core, namespace, pod.metadata.name), pod, settings)
            time.sleep(0.5)
        if pull_error:  # still failing to pull when time ran out: that is the reason
            return [pull_error]
        return [f"storage probe Job {name} did not finish in {timeout:.0f} s: "
                f"kubectl describe job {name} -n {namespace}"]
    finally:
        try:
            batch.delete_namespaced_job(name, namespace, propagation_policy="Background")
        except Exception as exc:
            log.warning("could not delete Job %s: %s", name, exc)


def _probe_answer(text: str, pod: Any, settings: dict[str, Any]) -> list[str]:
    from .diagnose import failure_kind

    for line in text.splitlines():
        if line.startswith('{"montage_storage"'):
            report = json.loads(line)["montage_storage"]
            if report["ok"]:
                log.info("shared volume in the cluster (node %s): %s", pod.spec.node_name or "?", report["describe"])
                return []
            return [f"in the cluster (PVC {settings['pvc']}, node {pod.spec.node_name or '?'}): {report['problem']}"]
    return [f"storage probe pod {pod.metadata.name} gave no report: {failure_kind(pod, text)[1]}"]


class ClusterPreflight(PreflightCheck):
    name = "k8s"
    description = "API access and RBAC, namespace/service account/PVC, registry and image, the shared volume"

    def applies_to(self, backend: str) -> bool:
        return backend == "k8s"

    def run(self, context: dict[str, Any]) -> list[str]:
        backend = context["backend"]
        settings = backend.settings
        problems = check_registry(settings) + check_local_volume(settings)
        try:
            api = backend.api
        except Exception as exc:  # a broken kubeconfig
            return problems + [f"cannot load the cluster configuration: {exc}"]
        access = check_access(api, settings)
        if access or problems or context.get("skip_storage_probe"):
            return problems + access
        return check_volume_in_cluster(api, settings)
