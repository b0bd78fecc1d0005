"""Every manifest montage gives a cluster, checked against the API's own schemas, strictly.

deploy/ and the Jobs the backend builds are validated with kubernetes-validate in strict mode (an
unknown or misplaced field is an error, as ``kubectl apply --validate=strict`` makes it) for each
Kubernetes version the backend supports: from 1.29, where ``backoffLimitPerIndex`` and the
``FailIndex`` pod failure policy are on by default, to the newest the package knows.
"""

from __future__ import annotations

import asyncio
import copy
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from montage_backend_k8s.config import device_groups, node_selector, resolve, tolerations
from montage_backend_k8s.jobs import job_manifest, manifest_dict
from montage_core.jobstore import JobStore
from montage_core.testing import MediaFactory, run_cli

kubernetes_validate = pytest.importorskip("kubernetes_validate")  # in the plugin's test extras

ROOT = Path(__file__).resolve().parents[3]
VERSIONS = ["1.29.0", "1.31.0", "1.33.0", str(kubernetes_validate.latest_version())]
MANIFESTS = sorted(p for p in (ROOT / "deploy").rglob("*.yaml") if p.name != "kustomization.yaml")


@pytest.fixture(autouse=True)
def _no_settings_from_here(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The manifests are built from the defaults, whatever this machine's environment or config file says."""
    monkeypatch.setenv("MONTAGE_K8S_CONFIG", str(tmp_path / "k8s.json"))
    for name in ("MONTAGE_K8S_DEVICE_GROUPS", "MONTAGE_K8S_TOLERATIONS", "MONTAGE_K8S_NODE_SELECTOR",
                 "MONTAGE_GPU_VENDORS"):
        monkeypatch.delenv(name, raising=False)


def _validate(obj: dict[str, Any], version: str) -> None:
    try:
        kubernetes_validate.validate(obj, version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        pytest.fail(f"{obj['kind']} {obj['metadata'].get('name')} on Kubernetes {version}: {exc.message} "
                    f"at {'.'.join(str(p) for p in exc.path)}")


def _jobs() -> dict[str, dict[str, Any]]:
    """A Job of every shape the backend submits: CPU, each GPU vendor required and preferred, the probe."""
    base: dict[str, Any] = {
        "namespace": "montage", "image": "localhost:30500/montage@sha256:" + "0" * 64, "pvc": "montage-data",
        "mount_path": "/data", "shards": 4, "shard_file": "/data/jobs/x/shards.json", "job_id": "20300101-000000-ab12",
        "cache_dir": "/data/cache", "device_groups": device_groups(resolve()["device_groups"].value)}
    jobs = {"cpu": manifest_dict(job_manifest(name="montage-x-analys-1", stage="analysis", **base)),
            "probe": manifest_dict(job_manifest(name="montage-preflight-1", stage="preflight", retries_per_index=0,
                                                command=["k8s-probe-storage", "/data"], **{**base, "shards": 1}))}
    for vendor, plugin in (("nvidia", "montage_hwaccel_nvenc:NvencAccelerator"),
                           ("intel", "montage_hwaccel_qsv:QsvAccelerator"),
                           ("amd", "montage_hwaccel_vaapi:VaapiAccelerator")):
        module, cls = plugin.split(":")
        accel = getattr(pytest.importorskip(module), cls)()
        for required in (True, False):
            jobs[f"{vendor}-{'required' if required else 'preferred'}"] = manifest_dict(job_manifest(
                name=f"montage-x-render-{vendor}", stage="render", accelerator=accel, vendor=vendor,
                require_accelerator=required, **base))
    # MONTAGE_K8S_TOLERATIONS (both forms) and MONTAGE_K8S_NODE_SELECTOR on a GPU Job
    placed = tolerations("dedicated=video:NoSchedule,spot:NoExecute") + tolerations(
        '[{"key": "drain", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}]')
    jobs["nvidia-placed"] = manifest_dict(job_manifest(
        name="montage-x-render-placed", stage="render", accelerator=accel_of("nvidia"), vendor="nvidia",
        require_accelerator=True, tolerations=placed,
        node_selector=node_selector("kubernetes.io/arch=amd64,example.com/pool=video"), **base))
    return jobs


def accel_of(vendor: str) -> Any:
    plugin = {"nvidia": "montage_hwaccel_nvenc:NvencAccelerator", "intel": "montage_hwaccel_qsv:QsvAccelerator",
              "amd": "montage_hwaccel_vaapi:VaapiAccelerator"}[vendor]
    module, cls = plugin.split(":")
    return getattr(pytest.importorskip(module), cls)()


def test_there_are_manifests_to_check() -> None:
    names = {p.relative_to(ROOT / "deploy").as_posix() for p in MANIFESTS}
    assert {"base/role.yaml", "base/pvc.yaml", "registry/service.yaml", "registry/deployment.yaml",
            "user/rolebinding.yaml"} <= names
    jobs = _jobs()
    # the fields this check is for: they must be in what is validated
    assert jobs["intel-required"]["spec"]["template"]["spec"]["securityContext"]["supplementalGroups"]
    assert jobs["cpu"]["spec"]["backoffLimitPerIndex"] == 2 and jobs["cpu"]["spec"]["podFailurePolicy"]
    placed = jobs["nvidia-placed"]["spec"]["template"]["spec"]
    assert len(placed["tolerations"]) == 4 and placed["tolerations"][-1]["tolerationSeconds"] == 300
    assert placed["nodeSelector"] == {"kubernetes.io/arch": "amd64", "example.com/pool": "video"}


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.relative_to(ROOT / "deploy").as_posix())
def test_deploy_manifests_are_valid(path: Path, version: str) -> None:
    documents = [d for d in yaml.safe_load_all(path.read_text()) if d]
    assert documents
    for obj in documents:
        _validate(obj, version)


@pytest.mark.parametrize("folder", ["base", "registry"])
def test_kustomized_deploy_folders_are_valid(folder: str) -> None:
    """What ``kubectl apply -k`` sends: the folder's objects with its kustomization applied."""
    kubectl = shutil.which("kubectl")
    if not kubectl:
        pytest.skip("kubectl is not installed")
    rendered = subprocess.run([kubectl, "kustomize", str(ROOT / "deploy" / folder)], capture_output=True, text=True,
                              check=True).stdout
    objects = [o for o in yaml.safe_load_all(rendered) if o]
    assert len(objects) >= 4
    for version in VERSIONS:
        for obj in objects:
            _validate(obj, version)


@pytest.mark.parametrize("version", VERSIONS)
def test_the_jobs_the_backend_builds_are_valid(version: str) -> None:
    for obj in _jobs().values():
        _validate(obj, version)


def test_strict_validation_catches_a_field_the_api_does_not_have() -> None:
    job = copy.deepcopy(_jobs()["intel-required"])
    security = job["spec"]["template"]["spec"]["securityContext"]
    security["supplementalGroup"] = security.pop("supplementalGroups")  # a typo kubectl apply would refuse
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(job, VERSIONS[-1], strict=True)
    service = yaml.safe_load((ROOT / "deploy" / "registry" / "service.yaml").read_text())
    service["spec"]["ports"][0]["nodePort"] = "30500"  # a string where the API wants an integer
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(service, VERSIONS[-1], strict=True)


# --------------------------------------------------------------------------- --dry-run
@pytest.fixture
def volume(tmp_path: Path, media: MediaFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Two clips and a music track on the shared volume (seen at the same path here and in pods)."""
    data = tmp_path / "volume"
    (data / "clips").mkdir(parents=True)
    for k, shots in enumerate([[(0, 2.0), (1, 2.0)], [(2, 2.0), (3, 2.0)]]):
        clip, _ = media.clip(shots)
        shutil.copy(clip, data / "clips" / f"clip {k}.mp4")
    music, _ = media.music(seconds=6)
    shutil.copy(music, data / "music.wav")
    monkeypatch.setenv("MONTAGE_MOUNT_PATH", str(data))
    monkeypatch.setenv("MONTAGE_CACHE_DIR", str(data / "cache"))
    return data


def _dry_run_docs(proc: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    assert proc.returncode == 0, proc.stderr
    documents = [d for d in yaml.safe_load_all(proc.stdout) if d]
    assert proc.stdout.count("\n---\n") == len(documents) - 1  # one YAML stream, --- between documents
    for version in VERSIONS:
        for obj in documents:
            _validate(obj, version)
    return documents


def _stage(doc: dict[str, Any]) -> str:
    return str(doc["metadata"]["labels"]["montage/stage"])


@pytest.mark.asyncio
async def test_dry_run_prints_every_job_it_would_create_valid_and_creates_nothing(
        kube: Any, volume: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MONTAGE_GPU_VENDORS", "nvidia")
    monkeypatch.setenv("MONTAGE_K8S_TOLERATIONS", "dedicated=video:NoSchedule")
    out = volume / "out.mp4"
    args = ["run", str(volume / "clips"), "--music", str(volume / "music.wav"), "-o", str(out), "--accel", "nvenc",
            "--resolution", "320x180", "--dry-run"]
    proc = await asyncio.to_thread(run_cli, *args, "--backend", "k8s")
    documents = _dry_run_docs(proc)
    assert [(d["kind"], _stage(d)) for d in documents] == [("Job", "preflight"), ("Job", "analysis"),
                                                          ("Job", "render")]
    probe, analysis, render = documents
    assert analysis["spec"]["completions"] == 2  # one shard per clip
    assert "one shard per cut; the cuts are known once the clips are analysed" in proc.stdout
    pod = render["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "montage-worker" and pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["fsGroup"] == 10001
    container = pod["containers"][0]
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert pod["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
                                  {"key": "dedicated", "operator": "Equal", "value": "video", "effect": "NoSchedule"}]
    assert {"name": "NVIDIA_DRIVER_CAPABILITIES", "value": "compute,video,utility"} in container["env"]
    assert probe["spec"]["template"]["spec"]["tolerations"] == pod["tolerations"][1:]
    # nothing asked of the API server at all, so nothing created; no job, no file on the volume
    assert [(r.method, r.url.path) for r in kube] == []
    assert JobStore().jobs() == [] and not out.exists() and not (volume / "jobs").exists()

    other = await asyncio.to_thread(run_cli, *args, "--backend", "local")
    assert other.returncode == 2
    assert other.stderr.splitlines() == [
        "error: --dry-run shows what a cluster backend would submit, and backend 'local' submits nothing; use "
        "--backend k8s"]


@pytest.mark.asyncio
async def test_dry_run_of_a_timeline_has_one_index_per_cut_and_skips_cached_clips(
        kube: Any, volume: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``montage plan`` here (local), then ``render TIMELINE --dry-run``: the render Jobs' indexes
    are the cuts, split across the GPU vendors; and a run of the same clips analyses none again."""
    import json

    timeline = volume / "timeline.json"
    planned = await asyncio.to_thread(run_cli, "plan", str(volume / "clips"), "--music", str(volume / "music.wav"),
                                      "-o", str(timeline), "--resolution", "320x180", "--fps", "25")
    assert planned.returncode == 0, planned.stderr
    cuts = len(json.loads(timeline.read_text())["cuts"])
    monkeypatch.setenv("MONTAGE_GPU_VENDORS", "amd,nvidia")
    proc = await asyncio.to_thread(run_cli, "render", str(timeline), "-o", str(volume / "out.mp4"), "--backend",
                                   "k8s", "--dry-run")
    documents = _dry_run_docs(proc)
    renders = [d for d in documents if _stage(d) == "render"]
    limits = [set(d["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]) - {"memory"}
              for d in renders]
    assert limits == [{"amd.com/gpu"}, {"nvidia.com/gpu"}]  # --accel auto: each vendor's share
    assert sum(d["spec"]["completions"] for d in renders) == cuts > 1
    again = await asyncio.to_thread(run_cli, "analyze", str(volume / "clips"), "--backend", "k8s", "--dry-run")
    assert [_stage(d) for d in _dry_run_docs(again)] == ["preflight"]  # analysed by the plan: cached
    assert [(r.method, r.url.path) for r in kube] == []


# --------------------------------------------------------------------------- the image's build context
def _dockerignore() -> list[tuple[bool, re.Pattern[str]]]:
    """(exclude, pattern) per line of the repository's .dockerignore, as Docker reads them: paths from
    the context's root, ``*`` and ``?`` within one path element, ``**`` across any number, ``!`` to
    take an earlier exclusion back."""
    rules = []
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        exclude = not line.startswith("!")
        pattern = line.lstrip("!").strip("/")
        regex = ""
        for part in re.split(r"(\*\*/|\*\*|\*|\?|\[[^]]*\])", pattern):
            regex += {"**/": "(.*/)?", "**": ".*", "*": "[^/]*", "?": "[^/]"}.get(
                part, part if part.startswith("[") else re.escape(part))
        rules.append((exclude, re.compile(regex)))
    return rules


def _ignored(path: str, rules: list[tuple[bool, re.Pattern[str]]]) -> bool:
    """Whether Docker leaves ``path`` out of the build context: the last rule matching it, or any
    folder above it, decides."""
    parts = path.split("/")
    ignored = False
    for exclude, pattern in rules:
        if any(pattern.fullmatch("/".join(parts[:n])) for n in range(1, len(parts) + 1)):
            ignored = exclude
    return ignored


def test_the_image_build_context_leaves_out_history_caches_and_results_and_keeps_what_pip_installs() -> None:
    rules = _dockerignore()
    for path in (".git", ".git/HEAD", ".git/objects/ab/cdef", "montage_core/__pycache__/job.cpython-311.pyc",
                 "plugins/backend_k8s/montage_backend_k8s/__pycache__/jobs.cpython-311.pyc",
                 "numba-cache/montage_core/kernels.f-12.py311.nbi", "montage_core/analysis/x.py311.1.nbc",
                 "bench/results/render.json", ".venv/bin/python", "plugins/hwaccel_qsv/.venv/lib/site.py",
                 ".pytest_cache/v/cache", "montage_core.egg-info/PKG-INFO", "tests/test_web.py",
                 "plugins/backend_k8s/tests/k8s_fakes.py"):
        assert _ignored(path, rules), f"{path} would be copied into the image"
    # what deploy/Dockerfile installs: the core (its readme too) and each plugin it names, whole
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    assert "COPY . /src" in dockerfile and "pip install --no-cache-dir /src $paths" in dockerfile
    plugins = re.search(r'ARG PLUGINS="([^"]+)"', dockerfile).group(1).split()  # type: ignore[union-attr]
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    needed = ["pyproject.toml", "README.md", *[f for f in tracked if f.startswith("montage_core/")],
              *[f for f in tracked for p in plugins
                if f.startswith(f"plugins/{p}/") and not f.startswith(f"plugins/{p}/tests/")]]
    assert any(f.startswith("montage_core/web/templates/") for f in needed)  # package data
    assert [f for f in needed if _ignored(f, rules)] == []
    assert all(any(f == f"plugins/{p}/pyproject.toml" for f in needed) for p in plugins)
