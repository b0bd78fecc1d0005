"""Cluster settings, each resolved from flag, environment, config file or the documented default pattern.

``montage config --show`` prints every value and where it came from, so an operator can see why
a job would go to a namespace or pull an image.

Default pattern (one namespace per deployment, the registry in its own namespace)::

    namespace  = the pod's own namespace in the cluster, else "montage"
    registry   = registry.<registry namespace>.svc.cluster.local:5000   (registry namespace: "registry")
    pvc        = <namespace>-data
    image      = <registry>/montage:<montage version>

The coordinator reaches the shared volume at ``local_mount`` (default: the pods' ``mount_path``,
which is right when it runs in a pod itself); clips and the cache live there.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")
SETTINGS = ("context", "namespace", "registry_namespace", "registry", "pvc", "image", "mount_path", "local_mount",
            "service_account", "memory", "memory_cap", "cpu", "parallelism", "retries_per_index", "gpu_vendors")
ENV = {"context": "MONTAGE_K8S_CONTEXT", "namespace": "MONTAGE_K8S_NAMESPACE",
       "registry_namespace": "MONTAGE_REGISTRY_NAMESPACE", "registry": "REGISTRY", "pvc": "PVC_NAME",
       "image": "MONTAGE_IMAGE", "mount_path": "MONTAGE_MOUNT_PATH", "local_mount": "MONTAGE_LOCAL_MOUNT",
       "service_account": "MONTAGE_SERVICE_ACCOUNT", "memory": "MONTAGE_K8S_MEMORY",
       "memory_cap": "MONTAGE_K8S_MEMORY_CAP", "cpu": "MONTAGE_K8S_CPU", "parallelism": "MONTAGE_K8S_PARALLELISM",
       "retries_per_index": "MONTAGE_K8S_RETRIES", "gpu_vendors": "MONTAGE_GPU_VENDORS"}


@dataclass(frozen=True)
class Setting:
    value: str
    source: str  # flag | environment ($NAME) | config file (PATH) | in-cluster | default pattern


def config_file() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(os.environ.get("MONTAGE_K8S_CONFIG", Path(base) / "montage" / "k8s.json"))


def in_cluster() -> bool:
    """Inside a pod: the API server's address is in the environment."""
    return bool(os.environ.get("KUBERNETES_SERVICE_HOST"))


def resolve(flags: dict[str, str | None] | None = None, service_account: Path = SERVICE_ACCOUNT) -> dict[str, Setting]:
    """Every setting with its source; later defaults are built from earlier values."""
    from montage_core import __version__
    from montage_core.errors import UsageError

    flags = flags or {}
    path = config_file()
    try:
        file_values: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
    except ValueError as exc:
        raise UsageError(f"{path}: not valid JSON ({exc})") from None
    unknown = set(file_values) - set(SETTINGS)
    if unknown:
        raise UsageError(f"{path}: unknown setting(s) {', '.join(sorted(unknown))} (known: {', '.join(SETTINGS)})")
    out: dict[str, Setting] = {}

    def pick(name: str, default: str, default_source: str = "default pattern") -> None:
        if flags.get(name):
            out[name] = Setting(str(flags[name]), "flag")
        elif os.environ.get(ENV[name]):
            out[name] = Setting(os.environ[ENV[name]], f"environment (${ENV[name]})")
        elif name in file_values:
            out[name] = Setting(str(file_values[name]), f"config file ({path})")
        else:
            out[name] = Setting(default, default_source)

    pick("context", "", "default (kubeconfig's current context)")
    namespace_file = service_account / "namespace"
    if in_cluster() and namespace_file.exists():
        pick("namespace", namespace_file.read_text().strip(), "in-cluster (service account)")
    else:
        pick("namespace", "montage")
    pick("registry_namespace", "registry")
    pick("registry", f"registry.{out['registry_namespace'].value}.svc.cluster.local:5000")
    pick("pvc", f"{out['namespace'].value}-data")
    pick("image", f"{out['registry'].value}/montage:{__version__}")
    pick("mount_path", "/data")
    pick("local_mount", out["mount_path"].value, "default (= mount_path)")
    pick("service_account", "montage-worker", "default (deploy/base: no API rights, no token mounted)")
    pick("memory", "2Gi", "default")
    pick("memory_cap", "16Gi", "default")
    pick("cpu", "1", "default")
    pick("parallelism", "8", "default")
    pick("retries_per_index", "2", "default")
    pick("gpu_vendors", "", "default (CPU-only cluster)")
    return out


def kubeconfig_paths() -> list[str]:
    """``$KUBECONFIG`` (a path list), else ``~/.kube/config``; read now, not when the client was
    imported (the client fixes its default at import time)."""
    return [p for p in os.environ.get("KUBECONFIG", "").split(os.pathsep) if p] or [str(Path.home() / ".kube/config")]


def cluster_credentials() -> str | None:
    """``None`` when the API server can be reached with credentials, else why not."""
    if in_cluster():
        return None
    paths = kubeconfig_paths()
    if any(Path(p).is_file() for p in paths):
        return None
    return (f"no cluster credentials: not in a pod (KUBERNETES_SERVICE_HOST unset) and no kubeconfig at "
            f"{', '.join(paths)}; set KUBECONFIG")


def api_client(context: str | None = None) -> Any:
    """The official client for this cluster: in-cluster service account, else the kubeconfig."""
    from kubernetes import client, config

    if in_cluster():
        config.load_incluster_config()
        return client.ApiClient()
    return config.new_client_from_config(config_file=os.pathsep.join(kubeconfig_paths()), context=context or None)


def describe(settings: dict[str, Setting]) -> list[str]:
    width = max(len(n) for n in settings)
    mode = "in-cluster (KUBERNETES_SERVICE_HOST is set)" if in_cluster() else "from kubeconfig"
    return [f"{'cluster':{width}s}  {mode}"] + [f"{n:{width}s}  {s.value}  ← {s.source}" for n, s in settings.items()]
