"""Indexed Job manifests: one index per shard, retried per index, never "redo everything".

Exit codes of ``montage worker``: 0 done, 3 the shard's own input is bad (permanent), anything
else (137 from the OOM killer, a crash) is worth another try. The pod failure policy says so to
Kubernetes: a node drain or pre-emption (``DisruptionTarget``) does not count against the shard,
bad input fails the index at once, the rest counts against ``backoffLimitPerIndex``.
"""

from __future__ import annotations

from typing import Any

from montage_core.interfaces import DevicePlacement

from .diagnose import EXIT_BAD_INPUT, EXIT_OOM

__all__ = ["EXIT_BAD_INPUT", "EXIT_OOM", "job_manifest", "manifest_dict"]


#: the uid and gid worker pods run as (the image's montage user); files on the shared volume are theirs
WORKER_UID = 10001
#: vendors whose device plugin hands the pod DRM nodes (/dev/dri/card*, renderD*) for VA-API and QSV,
#: owned by the node's video and render groups (mode 0660): a uid-10001 pod must be in those groups.
#: NVIDIA's container runtime injects /dev/nvidia* readable by everyone, so NVIDIA pods need no group.
DRI_VENDORS = ("amd", "intel")


def job_manifest(*, name: str, namespace: str, image: str, pvc: str, mount_path: str, stage: str, shards: int,
                 shard_file: str, parallelism: int = 4, retries_per_index: int = 2, memory: str = "2Gi",
                 cpu: str = "1", accelerator: Any = None, vendor: str | None = None,
                 require_accelerator: bool = False, job_id: str = "", cache_dir: str | None = None,
                 service_account: str = "montage-worker", command: list[str] | None = None,
                 device_groups: list[int] | None = None, tolerations: list[dict[str, Any]] | None = None,
                 node_selector: dict[str, str] | None = None) -> Any:
    """A ``batch/v1`` Indexed Job running ``montage worker`` for each shard of ``stage``.

    ``job_id`` (the montage job) labels the Job and its pods, so ``montage logs JOB_ID`` finds
    every pod of every stage and retry. ``command`` replaces the worker (the storage probe).
    ``device_groups``: the node's video/render GIDs, joined by pods that get a /dev/dri device.
    ``tolerations`` and ``node_selector`` (``MONTAGE_K8S_TOLERATIONS``, ``MONTAGE_K8S_NODE_SELECTOR``,
    in the API's own form) place every pod, on top of a GPU pod's own toleration and affinity.
    """
    from kubernetes import client

    resources = {"cpu": cpu, "memory": memory}
    limits = {"memory": memory}
    affinity = None
    tolerate: list[Any] = []
    env = []
    supplemental: list[int] = []
    if accelerator is not None and vendor:
        device = accelerator.placement.get(vendor) or DevicePlacement()
        # GPU nodes are often tainted with their device resource's name; only pods that want the device tolerate it
        tolerate = [client.V1Toleration(key=resource, operator="Exists", effect="NoSchedule")
                        for resource in sorted(device.resources)]
        if vendor == "nvidia":  # without "video" the NVIDIA runtime injects no encode library: NVENC would fail
            env.append(client.V1EnvVar(name="NVIDIA_DRIVER_CAPABILITIES", value="compute,video,utility"))
        terms = [client.V1NodeSelectorRequirement(key=k, operator="In", values=[v])
                 for k, v in device.node_labels.items()]
        if require_accelerator and device.resources:
            # extended resources are requested through limits
            limits.update((resource, str(count)) for resource, count in device.resources.items())
            if vendor in DRI_VENDORS:  # the GIDs differ per node OS, hence configurable (device_groups)
                supplemental = sorted(set(device_groups or []))
            affinity = client.V1Affinity(node_affinity=client.V1NodeAffinity(
                required_during_scheduling_ignored_during_execution=client.V1NodeSelector(
                    node_selector_terms=[client.V1NodeSelectorTerm(match_expressions=terms)])))
        elif terms:  # --accel auto: prefer GPU nodes, still run on CPU-only ones
            affinity = client.V1Affinity(node_affinity=client.V1NodeAffinity(
                preferred_during_scheduling_ignored_during_execution=[client.V1PreferredSchedulingTerm(
                    weight=50, preference=client.V1NodeSelectorTerm(match_expressions=terms))]))
    for item in tolerations or []:  # the cluster's own taints: dedicated pools, spot nodes
        toleration = client.V1Toleration(key=item.get("key") or None, operator=item.get("operator"),
                                         value=item.get("value") or None, effect=item.get("effect") or None,
                                         toleration_seconds=item.get("tolerationSeconds"))
        if toleration not in tolerate:
            tolerate.append(toleration)
    container = client.V1Container(
        name="worker", image=image, image_pull_policy="IfNotPresent",
        args=command or ["worker", "--stage", stage, "--shards", shard_file],
        env=[client.V1EnvVar(name="MONTAGE_CACHE_DIR", value=cache_dir or f"{mount_path}/cache"),
             client.V1EnvVar(name="MONTAGE_HOME", value=f"{mount_path}/state"),
             client.V1EnvVar(name="MONTAGE_NODE_NAME", value_from=client.V1EnvVarSource(
                 field_ref=client.V1ObjectFieldSelector(field_path="spec.nodeName"))), *env],
        resources=client.V1ResourceRequirements(requests=resources, limits=limits),
        volume_mounts=[client.V1VolumeMount(name="data", mount_path=mount_path),
                       client.V1VolumeMount(name="tmp", mount_path="/tmp")],
        # Pod Security "restricted": no privileges to gain, no capabilities, the runtime's seccomp profile
        security_context=client.V1SecurityContext(
            run_as_non_root=True, read_only_root_filesystem=True, allow_privilege_escalation=False,
            capabilities=client.V1Capabilities(drop=["ALL"]),
            seccomp_profile=client.V1SeccompProfile(type="RuntimeDefault")))
    pod = client.V1PodSpec(
        restart_policy="Never", containers=[container], affinity=affinity, tolerations=tolerate or None,
        node_selector=dict(node_selector) if node_selector else None,
        # Workers decode untrusted media: they run as an account with no API rights and no token at all.
        service_account_name=service_account, automount_service_account_token=False,
        security_context=client.V1PodSecurityContext(
            run_as_non_root=True, run_as_user=WORKER_UID, run_as_group=WORKER_UID, fs_group=WORKER_UID,
            fs_group_change_policy="OnRootMismatch", supplemental_groups=supplemental or None,
            seccomp_profile=client.V1SeccompProfile(type="RuntimeDefault")),
        volumes=[client.V1Volume(name="data", persistent_volume_claim=client.V1PersistentVolumeClaimVolumeSource(
                     claim_name=pvc)),
                 client.V1Volume(name="tmp", empty_dir=client.V1EmptyDirVolumeSource())])
    policy = client.V1PodFailurePolicy(rules=[
        client.V1PodFailurePolicyRule(action="Ignore", on_pod_conditions=[
            client.V1PodFailurePolicyOnPodConditionsPattern(type="DisruptionTarget", status="True")]),
        client.V1PodFailurePolicyRule(action="FailIndex", on_exit_codes=client.V1PodFailurePolicyOnExitCodesRequirement(
            container_name="worker", operator="In", values=[EXIT_BAD_INPUT])),
        client.V1PodFailurePolicyRule(action="Count", on_exit_codes=client.V1PodFailurePolicyOnExitCodesRequirement(
            container_name="worker", operator="In", values=[EXIT_OOM])),
    ])
    labels = {"app.kubernetes.io/name": "montage", "montage/stage": stage}
    if job_id:
        labels["montage/job-id"] = job_id
    return client.V1Job(
        api_version="batch/v1", kind="Job",
        metadata=client.V1ObjectMeta(name=name, namespace=namespace, labels=labels),
        spec=client.V1JobSpec(
            completion_mode="Indexed", completions=shards, parallelism=min(parallelism, shards),
            backoff_limit_per_index=retries_per_index, pod_failure_policy=policy, ttl_seconds_after_finished=3600,
            template=client.V1PodTemplateSpec(metadata=client.V1ObjectMeta(labels={**labels, "montage/run": name}),
                                              spec=pod)))


def manifest_dict(job: Any) -> dict[str, Any]:
    """The manifest as the API server receives it (camelCase JSON)."""
    from kubernetes import client

    return client.ApiClient().sanitize_for_serialization(job)
