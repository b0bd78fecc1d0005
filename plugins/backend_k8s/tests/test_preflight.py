"""``montage preflight --backend k8s`` and the pre-flight before every k8s job.

Real registry (docker-registry on loopback), real file systems for the volume probe (run in a
pod by the test-side cluster), the Kubernetes API faked by kmock.
"""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any

import pytest
from k8s_fakes import REPO, Fault, FakeCluster, read_only_mounts_work, serve_pod_logs
from kmock import resource

from montage_core.testing import run_cli

pytestmark = pytest.mark.asyncio


@pytest.fixture
def settings(tmp_path: Path, registry: tuple[str, str], monkeypatch: pytest.MonkeyPatch) -> Path:
    data = tmp_path / "volume"
    data.mkdir()
    monkeypatch.setenv("MONTAGE_MOUNT_PATH", str(data))
    monkeypatch.setenv("MONTAGE_IMAGE", f"{registry[0]}/{REPO}:1.0")
    return data


def _jobs(kube: Any) -> list[str]:
    return [name for (res, _, name) in kube.objects if res.plural == "jobs"]


async def _preflight(kube: Any, tmp_path: Path, faults: list[Fault] | None = None, *args: str,
                     env: dict[str, str] | None = None) -> tuple[Any, FakeCluster]:
    from montage_backend_k8s.config import api_client

    with FakeCluster(api_client(), "montage", tmp_path / "pod-logs") as cluster:
        cluster.faults = faults or []
        serve_pod_logs(kube, cluster)
        proc = await asyncio.to_thread(run_cli, "preflight", "--backend", "k8s", *args, env=env, timeout=120)
    return proc, cluster


async def test_everything_in_place_passes(kube: Any, settings: Path, tmp_path: Path,
                                          registry: tuple[str, str]) -> None:
    proc, cluster = await _preflight(kube, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "pre-flight passed for backend k8s (k8s)" in proc.stdout
    host, digest = registry
    assert f"image {host}/{REPO}:1.0 is {host}/{REPO}@{digest}" in proc.stderr
    # the probe ran in a pod, on the volume, and reported the mount and its free space
    assert any(job.startswith("montage-preflight-") for job, _, _ in cluster.started)
    line = next(l for l in proc.stderr.splitlines() if "shared volume in the cluster" in l)
    assert f"{settings}: " in line and " free, write/read/delete OK" in line and "(node node-" in line
    assert not list(settings.iterdir())  # the probe file was deleted


async def test_missing_image_is_found_before_any_job_exists(kube: Any, settings: Path, tmp_path: Path,
                                                            registry: tuple[str, str]) -> None:
    image = f"{registry[0]}/{REPO}:9.9"
    proc, _ = await _preflight(kube, tmp_path, env={"MONTAGE_IMAGE": image})
    assert proc.returncode == 1
    assert (f"error: image {image} is not in registry {registry[0]}: push it (docker push {image}) or fix "
            "MONTAGE_IMAGE (tags there: 1.0, latest)") in proc.stderr.splitlines()
    assert _jobs(kube) == []


async def test_registry_down(kube: Any, settings: Path, tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once closed
    proc, _ = await _preflight(kube, tmp_path, env={"MONTAGE_IMAGE": f"127.0.0.1:{port}/{REPO}:1.0"})
    assert proc.returncode == 1
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and f"registry 127.0.0.1:{port} does not answer its /v2/ API" in errors[0]
    assert "connection refused" in errors[0] and _jobs(kube) == []


async def test_the_storage_probe_waits_out_a_passing_pull_error(kube: Any, settings: Path, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MONTAGE_K8S_PULL_GRACE", "20")
    proc, cluster = await _preflight(kube, tmp_path, [Fault("image", "preflight", seconds=2)])
    assert proc.returncode == 0, proc.stderr
    assert len(cluster.pull_failures) == 1 and "shared volume in the cluster" in proc.stderr
    # the same error lasting past the grace is the answer, with its diagnosis
    monkeypatch.setenv("MONTAGE_K8S_PULL_GRACE", "1")
    proc, _ = await _preflight(kube, tmp_path, [Fault("image", "preflight", seconds=60)])
    assert proc.returncode == 1
    assert "cannot run: cannot pull image " in proc.stderr and ": ErrImagePull (failed to pull" in proc.stderr


async def test_a_cluster_older_than_1_29_is_refused_naming_its_version(
        kube: Any, server_version: dict[str, str], settings: Path, tmp_path: Path) -> None:
    server_version.update(major="1", minor="28+", gitVersion="v1.28.9-eks-036c24b")  # EKS writes minor "28+"
    proc, _ = await _preflight(kube, tmp_path)
    assert proc.returncode == 1, proc.stderr
    assert [line for line in proc.stderr.splitlines() if line.startswith("error: ")] == [
        "error: the cluster runs Kubernetes v1.28.9-eks-036c24b; montage needs 1.29 or newer (Indexed Jobs with "
        "backoffLimitPerIndex and the FailIndex pod failure policy): upgrade the cluster"], proc.stderr
    assert _jobs(kube) == []  # no probe Job on a cluster that would drop its fields
    server_version.update(minor="29+", gitVersion="v1.29.3-eks-adc7111")
    proc, _ = await _preflight(kube, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "info: Kubernetes v1.29.3-eks-adc7111 (1.29 or newer: per-shard retries)" in proc.stderr.splitlines()


async def test_local_mount_missing_on_this_machine_names_its_own_setting(kube: Any, settings: Path,
                                                                         tmp_path: Path) -> None:
    """A laptop whose view of the volume (local_mount) is not mounted: the line is about this machine
    and MONTAGE_LOCAL_MOUNT, not the pods' mount path."""
    missing = tmp_path / "nfs not mounted here"
    proc, _ = await _preflight(kube, tmp_path, env={"MONTAGE_LOCAL_MOUNT": str(missing)})
    assert proc.returncode == 1
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert errors == [f"error: shared volume (local_mount): {missing} does not exist on this machine: mount the "
                      "shared volume there (the PVC the pods mount) or set MONTAGE_LOCAL_MOUNT to where this machine "
                      "mounts it"], proc.stderr
    assert "in the pod" not in proc.stderr and "MONTAGE_MOUNT_PATH" not in proc.stderr


async def test_mount_path_missing_in_the_pod(kube: Any, settings: Path, tmp_path: Path) -> None:
    missing = tmp_path / "not mounted"
    proc, _ = await _preflight(kube, tmp_path, env={"MONTAGE_MOUNT_PATH": str(missing),
                                                    "MONTAGE_LOCAL_MOUNT": str(settings)})
    assert proc.returncode == 1
    assert (f"error: in the cluster (PVC montage-data, node node-1): {missing} does not exist in the pod: mount "
            "the PVC there (volumeMounts mountPath) or set MONTAGE_MOUNT_PATH") in proc.stderr.splitlines()


@pytest.mark.skipif(not read_only_mounts_work(), reason="needs mount namespaces (unshare -m) for a read-only mount")
async def test_read_only_volume_in_the_pod(kube: Any, settings: Path, tmp_path: Path) -> None:
    proc, _ = await _preflight(kube, tmp_path, [Fault("read-only", "preflight")])
    assert proc.returncode == 1
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and f"{settings} is mounted read-only" in errors[0], proc.stderr
    assert not list(settings.iterdir())


async def test_rbac_namespace_account_and_claim(kube: Any, denied: set[tuple[str, str]], settings: Path,
                                                tmp_path: Path) -> None:
    denied.update({("delete", "jobs"), ("get", "pods/log")})
    claim = kube.objects[resource("v1/persistentvolumeclaims"), "montage", "montage-data"]
    claim.patch({"spec": {"accessModes": ["ReadWriteOnce"]}})
    proc, _ = await _preflight(kube, tmp_path, env={"MONTAGE_SERVICE_ACCOUNT": "renderer"})
    assert proc.returncode == 1
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert errors == [
        "error: not allowed to delete jobs.batch, get pods/log in namespace montage: kubectl apply -k deploy/base "
        "(Role montage: jobs, pods, pods/log, events) and bind it to this user (deploy/user/rolebinding.yaml)",
        "error: service account renderer does not exist in namespace montage: kubectl apply -k deploy/base, "
        "or set MONTAGE_SERVICE_ACCOUNT",
        "error: PVC montage-data is ReadWriteOnce: pods on different nodes cannot share it; use a ReadWriteMany "
        "storage class (NFS, CephFS)",
    ], proc.stderr
    assert _jobs(kube) == []  # no storage probe either: nothing is submitted while anything is wrong

    other = await asyncio.to_thread(run_cli, "preflight", "--backend", "k8s", env={"MONTAGE_K8S_NAMESPACE": "edits"})
    assert "error: namespace edits does not exist: kubectl apply -k deploy/base, or set MONTAGE_K8S_NAMESPACE" \
        in other.stderr.splitlines()


async def test_unreachable_api(settings: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "kubeconfig"
    config.write_text("apiVersion: v1\nkind: Config\ncurrent-context: t\n"
                      "clusters: [{name: t, cluster: {server: 'http://127.0.0.1:9'}}]\n"
                      "users: [{name: u, user: {token: x}}]\ncontexts: [{name: t, context: {cluster: t, user: u}}]\n")
    monkeypatch.setenv("KUBECONFIG", str(config))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    proc = await asyncio.to_thread(run_cli, "preflight", "--backend", "k8s")
    assert proc.returncode == 1
    assert "error: cannot reach the Kubernetes API at http://127.0.0.1:9 (" in proc.stderr


async def test_run_stops_before_submitting_when_preflight_fails(kube: Any, settings: Path, tmp_path: Path,
                                                                registry: tuple[str, str], media: Any) -> None:
    clip, _ = media.clip([(0, 2.0), (1, 2.0)])
    music, _ = media.music(seconds=6)
    proc = await asyncio.to_thread(run_cli, "run", str(clip), "--music", str(music), "-o", str(tmp_path / "o.mp4"),
                                   "--backend", "k8s", env={"MONTAGE_IMAGE": f"{registry[0]}/{REPO}:nope"})
    assert proc.returncode == 1
    assert f"error: image {registry[0]}/{REPO}:nope is not in registry" in proc.stderr
    assert _jobs(kube) == [] and not (tmp_path / "o.mp4").exists()


def _job_images(kube: Any) -> list[str]:
    return [kube.objects[key].last.raw["spec"]["template"]["spec"]["containers"][0]["image"]
            for key in kube.objects if key[0].plural == "jobs"]


async def test_nodes_pull_through_the_node_port_while_the_registry_is_checked_where_it_is_reached(
        kube: Any, settings: Path, tmp_path: Path, registry: tuple[str, str]) -> None:
    """The default: pods pull localhost:30500/... (the NodePort on their node); this machine asks the
    registry at push_registry, and the Jobs name the image by the nodes' address, pinned to its digest."""
    host, digest = registry
    env = {"MONTAGE_IMAGE": f"localhost:30500/{REPO}:1.0", "MONTAGE_PUSH_REGISTRY": host}
    proc, _ = await _preflight(kube, tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr
    assert f"image localhost:30500/{REPO}:1.0 is localhost:30500/{REPO}@{digest}" in proc.stderr
    assert _job_images(kube) == [f"localhost:30500/{REPO}@{digest}"]  # the storage probe's pod
    # a tag the registry lacks: the fix names the address to push to
    missing = await asyncio.to_thread(run_cli, "preflight", "--backend", "k8s", timeout=120,
                                      env={**env, "MONTAGE_IMAGE": f"localhost:30500/{REPO}:2.0"})
    assert missing.returncode == 1
    assert (f"error: image {host}/{REPO}:2.0 is not in registry {host}: push it (docker push {host}/{REPO}:2.0)"
            in missing.stderr), missing.stderr


async def test_a_pull_registry_named_by_cluster_dns_is_refused_in_one_line(
        kube: Any, settings: Path, tmp_path: Path, registry: tuple[str, str]) -> None:
    """The image is in the registry (reached here through push_registry), yet no node could pull it by that name."""
    service = "registry.registry.svc.cluster.local:5000"
    env = {"REGISTRY": service, "MONTAGE_IMAGE": f"{service}/{REPO}:1.0", "MONTAGE_PUSH_REGISTRY": registry[0]}
    proc, _ = await _preflight(kube, tmp_path, env=env)
    assert proc.returncode == 1
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert errors == [
        f"error: image registry {service} is a cluster DNS name that nodes cannot resolve when they pull: "
        "kubectl apply -k deploy/registry and unset REGISTRY (nodes pull from localhost:30500), or set REGISTRY to "
        "a name the nodes resolve (MONTAGE_K8S_NODES_RESOLVE_CLUSTER_DNS=1 if their runtime maps this one)"], proc.stderr
    assert _jobs(kube) == []  # refused before anything is submitted
    # nodes whose runtime does map the name (a containerd mirror): the operator says so, and it passes
    proc, _ = await _preflight(kube, tmp_path, env={**env, "MONTAGE_K8S_NODES_RESOLVE_CLUSTER_DNS": "1"})
    assert proc.returncode == 0, proc.stderr
