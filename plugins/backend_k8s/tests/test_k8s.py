"""Cluster settings, Indexed Job manifests and pod diagnoses, checked with the official client's models."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from kubernetes import client

from montage_backend_k8s.config import resolve
from montage_backend_k8s.diagnose import diagnose_pod
from montage_backend_k8s.jobs import EXIT_BAD_INPUT, EXIT_OOM, job_manifest, manifest_dict
from montage_core.testing import run_cli

ROOT = Path(__file__).resolve().parents[3]


def _deserialize(data: dict, kind: str):  # type: ignore[no-untyped-def]
    """What the client makes of an API server's JSON answer."""
    return client.ApiClient().deserialize(json.dumps(data), kind, "application/json")


@pytest.fixture(autouse=True)
def _no_cluster_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("KUBERNETES_SERVICE_HOST", "REGISTRY", "PVC_NAME", "MONTAGE_K8S_NAMESPACE", "MONTAGE_IMAGE",
                 "MONTAGE_REGISTRY_NAMESPACE", "MONTAGE_PUSH_REGISTRY", "MONTAGE_K8S_DEVICE_GROUPS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MONTAGE_K8S_CONFIG", str(tmp_path / "k8s.json"))


def test_defaults_follow_one_pattern() -> None:
    from montage_core import __version__

    s = resolve()
    assert (s["namespace"].value, s["pvc"].value) == ("montage", "montage-data")
    # nodes pull through deploy/registry's NodePort on their own localhost, not by a cluster DNS name
    assert s["registry"].value == "localhost:30500"
    assert s["image"].value == f"localhost:30500/montage:{__version__}"
    assert all(s[n].source == "default pattern" for n in ("namespace", "registry", "pvc", "image", "mount_path"))
    assert (s["local_mount"].value, s["local_mount"].source) == ("/data", "default (= mount_path)")
    # outside the cluster this machine reaches the registry at the same address (a port-forward, or a node)
    assert s["push_registry"].value == "localhost:30500" and "port-forward" in s["push_registry"].source


def test_push_registry_is_the_service_from_a_pod_and_the_registry_when_one_is_named(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    account = tmp_path / "serviceaccount"
    account.mkdir()
    (account / "namespace").write_text("montage\n")
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    monkeypatch.setenv("MONTAGE_REGISTRY_NAMESPACE", "infra")
    s = resolve(service_account=account)
    assert s["registry"].value == "localhost:30500"  # what the nodes pull from: the same everywhere
    assert s["push_registry"].value == "registry.infra.svc.cluster.local:5000"  # a pod has its own localhost
    monkeypatch.setenv("REGISTRY", "harbor.example.com")
    s = resolve(service_account=account)
    assert (s["push_registry"].value, s["push_registry"].source) == ("harbor.example.com", "default (= registry)")
    monkeypatch.setenv("MONTAGE_PUSH_REGISTRY", "10.1.2.3:5000")
    assert resolve(service_account=account)["push_registry"].value == "10.1.2.3:5000"


def test_registry_manifests_expose_the_default_registry_port_on_every_node() -> None:
    import yaml

    from montage_backend_k8s.config import REGISTRY_NODE_PORT, REGISTRY_SERVICE_PORT

    folder = ROOT / "deploy" / "registry"
    service = yaml.safe_load((folder / "service.yaml").read_text())
    assert service["spec"]["type"] == "NodePort"
    (port,) = service["spec"]["ports"]
    assert (port["nodePort"], port["port"]) == (REGISTRY_NODE_PORT, REGISTRY_SERVICE_PORT)
    assert resolve()["registry"].value == f"localhost:{port['nodePort']}"
    # the coordinator in a pod reaches the Service by name: its name and namespace are the default pattern's
    kustomization = yaml.safe_load((folder / "kustomization.yaml").read_text())
    assert (service["metadata"]["name"], kustomization["namespace"]) == ("registry", resolve()["registry_namespace"].value)
    deployment = yaml.safe_load((folder / "deployment.yaml").read_text())
    pod = deployment["spec"]["template"]
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    container = pod["spec"]["containers"][0]
    assert container["ports"][0] == {"name": port["targetPort"], "containerPort": REGISTRY_SERVICE_PORT}
    assert sorted(kustomization["resources"]) == sorted(p.name for p in folder.glob("*.yaml")
                                                        if p.name != "kustomization.yaml")


def test_sources_in_order_flag_env_file_in_cluster(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "k8s.json").write_text(json.dumps({"registry_namespace": "infra", "pvc": "shared-nfs"}))
    account = tmp_path / "serviceaccount"
    account.mkdir()
    (account / "namespace").write_text("video-team\n")
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    monkeypatch.setenv("REGISTRY", "reg.example:5000")
    s = resolve({"image": "reg.example:5000/montage@sha256:abc"}, service_account=account)
    assert (s["namespace"].value, s["namespace"].source) == ("video-team", "in-cluster (service account)")
    assert s["registry"].source == "environment ($REGISTRY)" and s["registry_namespace"].value == "infra"
    assert s["pvc"].value == "shared-nfs" and s["pvc"].source.startswith("config file (")
    assert s["image"].source == "flag"


def test_config_show_prints_values_and_sources(tmp_path: Path) -> None:
    (tmp_path / "k8s.json").write_text(json.dumps({"pvc": "nfs-data"}))
    proc = run_cli("config", "--show", "--namespace", "edits")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert any(line.startswith("namespace") and "edits" in line and "← flag" in line for line in lines)
    assert any("nfs-data" in line and "← config file (" in line for line in lines)
    assert any(line.startswith("registry ") and "← default pattern" in line for line in lines)
    (tmp_path / "k8s.json").write_text(json.dumps({"pvcs": "x"}))
    bad = run_cli("config", "--show")
    assert bad.returncode == 2 and "unknown setting(s) pvcs (known: context, namespace" in bad.stderr


def _job(**kwargs):  # type: ignore[no-untyped-def]
    return job_manifest(name="montage-abc-analysis", namespace="montage", image="reg:5000/montage:1", pvc="montage-data",
                        mount_path="/data", stage="analysis", shards=12, shard_file="/data/jobs/abc/analysis.json",
                        **kwargs)


def test_indexed_job_retries_per_index_with_a_failure_policy() -> None:
    data = manifest_dict(_job())
    spec = data["spec"]
    assert spec["completionMode"] == "Indexed" and spec["completions"] == 12 and spec["backoffLimitPerIndex"] == 2
    rules = spec["podFailurePolicy"]["rules"]
    assert rules[0] == {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]}
    assert rules[1]["action"] == "FailIndex" and rules[1]["onExitCodes"]["values"] == [EXIT_BAD_INPUT]
    assert rules[2]["action"] == "Count" and rules[2]["onExitCodes"]["values"] == [EXIT_OOM]
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never"  # required by podFailurePolicy
    assert pod["containers"][0]["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["volumes"][0]["persistentVolumeClaim"]["claimName"] == "montage-data"
    assert _deserialize(data, "V1Job") == _job()  # the API server's JSON reads back to the same object


@pytest.mark.parametrize("vendor,plugin,resource,label", [
    ("nvidia", "montage_hwaccel_nvenc:NvencAccelerator", "nvidia.com/gpu", "nvidia.com/gpu.present"),
    ("amd", "montage_hwaccel_vaapi:VaapiAccelerator", "amd.com/gpu", "feature.node.kubernetes.io/pci-0300_1002.present"),
    ("intel", "montage_hwaccel_qsv:QsvAccelerator", "gpu.intel.com/i915", "intel.feature.node.kubernetes.io/gpu"),
])
def test_gpu_vendor_resources_and_affinity(vendor: str, plugin: str, resource: str, label: str) -> None:
    import importlib

    module, cls = plugin.split(":")
    accel = getattr(pytest.importorskip(module), cls)()
    pinned = manifest_dict(_job(accelerator=accel, vendor=vendor, require_accelerator=True))["spec"]["template"]["spec"]
    assert pinned["containers"][0]["resources"]["limits"][resource] == "1"
    term = pinned["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"][0]
    assert term["matchExpressions"][0]["key"] == label
    auto = manifest_dict(_job(accelerator=accel, vendor=vendor))["spec"]["template"]["spec"]
    assert resource not in auto["containers"][0]["resources"]["limits"]  # CPU-only nodes still qualify
    preferred = auto["affinity"]["nodeAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0]
    assert preferred["preference"]["matchExpressions"][0]["key"] == label


def _pod(status: dict) -> client.V1Pod:
    return _deserialize({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "montage-abc-analysis-3-x"},
                         "status": status}, "V1Pod")


def _terminated(**terminated: object) -> dict:
    return {"phase": "Failed", "containerStatuses": [{
        "name": "worker", "image": "reg:5000/montage:1", "imageID": "", "ready": False, "restartCount": 0,
        "state": {"terminated": {"exitCode": 1, "startedAt": None, **terminated}}}]}


@pytest.mark.parametrize("status,log,expected", [
    (_terminated(exitCode=137, reason="OOMKilled"), "", "OOMKilled: the shard needs more memory"),
    ({"phase": "Failed", "reason": "Evicted", "message": "The node was low on resource: memory."}, "",
     "evicted (The node was low on resource: memory.); not counted against the shard"),
    ({"phase": "Failed", "conditions": [{"type": "DisruptionTarget", "status": "True", "reason": "EvictionByEvictionAPI"}]},
     "", "evicted (node drained or pre-empted)"),
    ({"phase": "Pending", "containerStatuses": [{"name": "worker", "image": "reg:5000/montage:9", "imageID": "",
                                                 "ready": False, "restartCount": 0, "state": {"waiting": {
                                                     "reason": "ImagePullBackOff",
                                                     "message": "Back-off pulling image \"reg:5000/montage:9\""}}}]},
     "", "cannot pull image reg:5000/montage:9: ImagePullBackOff"),
    (_terminated(exitCode=1, reason="Error"), "exec /usr/local/bin/montage: exec format error",
     "exec format error: image reg:5000/montage:1 is built for another CPU architecture"),
    ({"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                                          "message": "0/3 nodes are available: 3 Insufficient nvidia.com/gpu."}]},
     "", "unschedulable: 0/3 nodes are available: 3 Insufficient nvidia.com/gpu."),
    (_terminated(exitCode=3, reason="Error"), "error: /data/in/clip.mp4: not a media file ffmpeg can read",
     "bad input: /data/in/clip.mp4: not a media file ffmpeg can read"),
])
def test_one_line_diagnosis_per_failed_pod(status: dict, log: str, expected: str) -> None:
    assert diagnose_pod(_pod(status), log).startswith(expected)


def test_kustomize_base_renders_into_client_models() -> None:
    import yaml

    kubectl = shutil.which("kubectl")
    if not kubectl:
        pytest.skip("kubectl is not installed")
    rendered = subprocess.run([kubectl, "kustomize", str(ROOT / "deploy" / "base")], capture_output=True, text=True,
                              check=True).stdout
    objects = [o for o in yaml.safe_load_all(rendered) if o]
    kinds = {o["kind"] for o in objects}
    assert kinds == {"Namespace", "ServiceAccount", "Role", "RoleBinding", "PersistentVolumeClaim"}
    for obj in objects:
        model = _deserialize(obj, f"V1{obj['kind']}")
        assert model.metadata.name and (obj["kind"] == "Namespace" or model.metadata.namespace == "montage")
    role = next(o for o in objects if o["kind"] == "Role")
    granted = {(r["apiGroups"][0], res) for r in role["rules"] for res in r["resources"]}
    assert granted == {("batch", "jobs"), ("", "pods"), ("", "pods/log"), ("", "events")}  # least privilege
    # ... and exactly the verbs the backend uses, which pre-flight asks the API server about
    from montage_backend_k8s.preflight import NEEDED

    verbs = {(r["apiGroups"][0], res, verb) for r in role["rules"] for res in r["resources"] for verb in r["verbs"]}
    assert verbs == {(group, f"{res}/{sub}" if sub else res, verb) for verb, group, res, sub in NEEDED}


def test_paths_index_ranges_and_memory_steps() -> None:
    from montage_backend_k8s.backend import PathMap, more_memory, parse_indexes

    volume = PathMap(local="/mnt/nfs share", pod="/data")
    payload = {"main": {"source": "/mnt/nfs share/clips/a b.mp4"}, "other": "/mnt/nfs sharex/c.mp4", "n": 3,
               "list": ["/mnt/nfs share/x", "rel/y"]}
    assert volume.to_pod(payload) == {"main": {"source": "/data/clips/a b.mp4"}, "other": "/mnt/nfs sharex/c.mp4",
                                      "n": 3, "list": ["/data/x", "rel/y"]}
    assert volume.to_local(volume.to_pod(payload)) == payload
    assert volume.on_volume("/mnt/nfs share/clips/a.mp4") and not volume.on_volume("/mnt/nfs sharex/a.mp4")
    assert parse_indexes("0-2,5,7-8") == {0, 1, 2, 5, 7, 8} and parse_indexes(None) == set()
    assert more_memory("2Gi", "16Gi") == "4096Mi" and more_memory("12Gi", "16Gi") == "16384Mi"
    assert more_memory("16Gi", "16Gi") is None


def test_worker_image_carries_every_plugin_a_worker_may_need() -> None:
    """Workers run the analyzers and encoders the coordinator chose: the image must have their plugins."""
    import re

    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    listed = set(re.search(r'ARG PLUGINS="([^"]+)"', dockerfile).group(1).split())  # type: ignore[union-attr]
    plugins = {p.name for p in (ROOT / "plugins").iterdir() if (p / "pyproject.toml").exists()}
    assert listed == plugins - {"embedder_minilm"}  # PyTorch: opt-in, see the Dockerfile
    assert "USER 10001" in dockerfile and "NUMBA_CACHE_DIR=/tmp" in dockerfile


def test_media_a_shard_reads_must_be_on_the_volume_labels_need_not() -> None:
    from montage_backend_k8s.backend import _sources
    from montage_core.interfaces import ShardTask
    from montage_core.specs import RenderSpec, ScoreSpec, SegmentSource

    spec = RenderSpec(index=1, frames=25, fps=25.0, width=320, height=180, grade="", encoders=[], accel="auto",
                      quality="preview", main=SegmentSource(source="/data/a.mp4", start=0.0),
                      blend=SegmentSource(source="/data/b.mp4", start=0.0, frames=4))
    assert _sources(ShardTask("segment-0001", "render", "/data/a.mp4", spec)) == ["/data/a.mp4", "/data/b.mp4"]
    score = ScoreSpec(embedder="descriptor", shot_vectors=[], lines=["a"])
    assert _sources(ShardTask("broll-0000", "plan", "lines 1–8", score)) == []



def test_worker_pods_meet_pod_security_restricted_and_hold_no_api_power() -> None:
    pod = manifest_dict(_job())["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "montage-worker" and pod["automountServiceAccountToken"] is False
    assert pod["securityContext"] == {"runAsNonRoot": True, "runAsUser": 10001, "runAsGroup": 10001, "fsGroup": 10001,
                                      "fsGroupChangePolicy": "OnRootMismatch",
                                      "seccompProfile": {"type": "RuntimeDefault"}}
    container = pod["containers"][0]["securityContext"]
    assert container["allowPrivilegeEscalation"] is False and container["capabilities"] == {"drop": ["ALL"]}
    assert container["seccompProfile"] == {"type": "RuntimeDefault"} and container["runAsNonRoot"] is True
    assert "tolerations" not in pod  # CPU work never lands on tainted GPU nodes
    deploy = Path(__file__).resolve().parents[3] / "deploy"
    accounts = (deploy / "base" / "serviceaccount.yaml").read_text()
    assert "name: montage-worker" in accounts and "automountServiceAccountToken: false" in accounts
    assert "pod-security.kubernetes.io/enforce: restricted" in (deploy / "base" / "namespace.yaml").read_text()
    assert "kind: User" in (deploy / "user" / "rolebinding.yaml").read_text()


@pytest.mark.parametrize("vendor,plugin,groups", [
    ("intel", "montage_hwaccel_qsv:QsvAccelerator", [44, 105, 107, 109, 110]),
    ("intel", "montage_hwaccel_vaapi:VaapiAccelerator", [44, 105, 107, 109, 110]),
    ("amd", "montage_hwaccel_vaapi:VaapiAccelerator", [44, 105, 107, 109, 110]),
    ("nvidia", "montage_hwaccel_nvenc:NvencAccelerator", None),  # its runtime's device nodes need no group
])
def test_pods_with_a_dri_device_join_the_nodes_video_and_render_groups(
        vendor: str, plugin: str, groups: list[int] | None) -> None:
    from montage_backend_k8s.config import device_groups

    module, cls = plugin.split(":")
    accel = getattr(pytest.importorskip(module), cls)()
    configured = device_groups(resolve()["device_groups"].value)
    pod = manifest_dict(_job(accelerator=accel, vendor=vendor, require_accelerator=True,
                             device_groups=configured))["spec"]["template"]["spec"]
    assert pod["securityContext"].get("supplementalGroups") == groups
    assert pod["securityContext"]["runAsUser"] == 10001 and pod["securityContext"]["fsGroup"] == 10001
    # no device requested (--accel auto's preference, a CPU Job): no groups
    preferred = manifest_dict(_job(accelerator=accel, vendor=vendor, device_groups=configured))
    assert "supplementalGroups" not in preferred["spec"]["template"]["spec"]["securityContext"]
    assert "supplementalGroups" not in manifest_dict(_job(device_groups=configured))["spec"]["template"]["spec"][
        "securityContext"]


def test_device_groups_come_from_the_environment_and_are_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    from montage_backend_k8s.config import device_groups
    from montage_core.errors import UsageError

    monkeypatch.setenv("MONTAGE_K8S_DEVICE_GROUPS", "44, 992,44")
    setting = resolve()["device_groups"]
    assert setting.source == "environment ($MONTAGE_K8S_DEVICE_GROUPS)" and device_groups(setting.value) == [44, 992]
    accel = pytest.importorskip("montage_hwaccel_qsv").QsvAccelerator()
    pod = manifest_dict(_job(accelerator=accel, vendor="intel", require_accelerator=True,
                             device_groups=device_groups(setting.value)))["spec"]["template"]["spec"]
    assert pod["securityContext"]["supplementalGroups"] == [44, 992]
    assert device_groups("none") == []
    monkeypatch.setenv("MONTAGE_K8S_DEVICE_GROUPS", "video,render")
    with pytest.raises(UsageError, match="not a list of numeric group ids"):
        resolve()


def test_gpu_pods_tolerate_their_devices_taint_and_get_the_video_driver() -> None:
    accel = pytest.importorskip("montage_hwaccel_nvenc").NvencAccelerator()
    pod = manifest_dict(_job(accelerator=accel, vendor="nvidia", require_accelerator=True))["spec"]["template"]["spec"]
    assert pod["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
    assert env["NVIDIA_DRIVER_CAPABILITIES"] == "compute,video,utility"


def _placed(settings: dict, placement, stage: str = "render") -> dict:  # type: ignore[no-untyped-def]
    from montage_backend_k8s.manifests import stage_job

    return manifest_dict(stage_job(settings, name="montage-abc-render-1", stage=stage, shards=2,
                                   shard_file="/data/jobs/abc/montage-abc-render-1/shards.json", placement=placement,
                                   memory="2Gi", job_id="abc"))["spec"]["template"]["spec"]


def test_tolerations_and_node_selector_place_every_worker_and_probe_pod(monkeypatch: pytest.MonkeyPatch) -> None:
    from montage_backend_k8s.manifests import probe_job
    from montage_backend_k8s.placement import Placement

    plain = {n: s.value for n, s in resolve().items()}
    assert "tolerations" not in _placed(plain, Placement([]), "analysis")
    assert "nodeSelector" not in _placed(plain, Placement([]), "analysis")
    monkeypatch.setenv("MONTAGE_K8S_TOLERATIONS", "dedicated=video:NoSchedule, spot:NoExecute")
    monkeypatch.setenv("MONTAGE_K8S_NODE_SELECTOR", "kubernetes.io/arch=amd64,pool=video")
    settings = {n: s.value for n, s in resolve().items()}
    wanted = [{"key": "dedicated", "operator": "Equal", "value": "video", "effect": "NoSchedule"},
              {"key": "spot", "operator": "Exists", "effect": "NoExecute"}]
    selector = {"kubernetes.io/arch": "amd64", "pool": "video"}
    cpu = _placed(settings, Placement([]), "analysis")
    assert (cpu["tolerations"], cpu["nodeSelector"]) == (wanted, selector)
    # a GPU pod keeps its device's toleration and affinity, and is placed like the others too
    accel = pytest.importorskip("montage_hwaccel_nvenc").NvencAccelerator()
    gpu = _placed(settings, Placement([], "nvidia", accel, required=True))
    assert gpu["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}, *wanted]
    assert gpu["nodeSelector"] == selector and gpu["affinity"]["nodeAffinity"]
    # the storage probe checks the volume from where the workers will run
    probe = manifest_dict(probe_job(settings, "montage-preflight-1"))["spec"]["template"]["spec"]
    assert (probe["tolerations"], probe["nodeSelector"]) == (wanted, selector)
    # the API's own form, for what the short one cannot say; a config file may give it as a list
    monkeypatch.setenv("MONTAGE_K8S_TOLERATIONS", '[{"key": "spot", "operator": "Exists", "effect": "NoExecute", '
                                                  '"tolerationSeconds": 300}, {"operator": "Exists"}]')
    settings = {n: s.value for n, s in resolve().items()}
    assert _placed(settings, Placement([]))["tolerations"] == [
        {"key": "spot", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}, {"operator": "Exists"}]


def test_placement_settings_from_the_config_file(tmp_path: Path) -> None:
    (tmp_path / "k8s.json").write_text(json.dumps({"tolerations": [{"key": "pool", "operator": "Equal", "value": "gpu",
                                                                    "effect": "NoSchedule"}],
                                                   "node_selector": {"pool": "gpu"}}))
    s = resolve()
    assert s["tolerations"].source.startswith("config file (")
    from montage_backend_k8s.config import node_selector, tolerations

    assert tolerations(s["tolerations"].value) == [{"key": "pool", "operator": "Equal", "value": "gpu",
                                                    "effect": "NoSchedule"}]
    assert node_selector(s["node_selector"].value) == {"pool": "gpu"}


@pytest.mark.parametrize("variable,value,problem", [
    ("MONTAGE_K8S_TOLERATIONS", "dedicated=video:NoSchedul",
     "effect 'NoSchedul' is not one of NoSchedule, PreferNoSchedule, NoExecute"),
    ("MONTAGE_K8S_TOLERATIONS", "dedicated video", "'dedicated video' is not a taint key"),
    ("MONTAGE_K8S_TOLERATIONS", "spot=:NoExecute,=x", "'' is not a taint key"),
    ("MONTAGE_K8S_TOLERATIONS", '[{"key": "spot", "operator": "Exists", "value": "yes"}]',
     "spot: operator Exists takes no value"),
    ("MONTAGE_K8S_TOLERATIONS", '[{"key": "spot", "tolerationSeconds": 30}]',
     "tolerationSeconds is a whole number of seconds, for effect NoExecute only"),
    ("MONTAGE_K8S_TOLERATIONS", "[{", "not valid JSON"),
    ("MONTAGE_K8S_NODE_SELECTOR", "pool", "'pool' has no =value"),
    ("MONTAGE_K8S_NODE_SELECTOR", "pool=video team", "'video team' is not a label value"),
    ("MONTAGE_K8S_NODE_SELECTOR", "-pool=video", "'-pool' is not a label key"),
])
def test_placement_settings_are_checked_in_one_line_naming_the_variable(variable: str, value: str,
                                                                          problem: str) -> None:
    proc = run_cli("config", "--show", env={variable: value})
    assert proc.returncode == 2
    (line,) = proc.stderr.splitlines()
    assert line.startswith(f"error: {variable} {value!r}: {problem}"), line
    assert "write " in line  # and the form it takes
