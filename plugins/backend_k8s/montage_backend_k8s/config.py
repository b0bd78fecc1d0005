"""Cluster settings, each resolved from flag, environment, config file or the documented default pattern.

``montage config --show`` prints every value and where it came from, so an operator can see why
a job would go to a namespace or pull an image.

Default pattern (one namespace per deployment, the registry in its own namespace)::

    namespace      = the pod's own namespace in the cluster, else "montage"
    registry       = localhost:30500   (what nodes pull from: deploy/registry's NodePort)
    push_registry  = registry.<registry namespace>.svc.cluster.local:5000 in a pod, else = registry
    pvc            = <namespace>-data
    image          = <registry>/montage:<montage version>

Two registry addresses, because pods and the coordinator reach the registry differently. The
kubelet and its container runtime pull with the *node's* DNS, which knows nothing of cluster
Service names, so an image named ``registry.<ns>.svc.cluster.local:5000/...`` never pulls on a
real cluster. deploy/registry exposes the registry as a NodePort instead: every node forwards
``localhost:30500`` to it (kube-proxy serves NodePorts on localhost), and containerd and Docker
allow plain HTTP to localhost. The coordinator checks (and a user pushes) the same images through
``push_registry``: the Service's cluster name from inside a pod, else ``localhost:30500`` too
(``kubectl port-forward -n registry svc/registry 30500:5000``, or on a node).

The coordinator reaches the shared volume at ``local_mount`` (default: the pods' ``mount_path``,
which is right when it runs in a pod itself); clips and the cache live there.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")
SETTINGS = ("context", "namespace", "registry_namespace", "registry", "push_registry", "pvc", "image", "mount_path",
            "local_mount", "service_account", "memory", "memory_cap", "cpu", "parallelism", "retries_per_index",
            "gpu_vendors", "device_groups", "tolerations", "node_selector")
ENV = {"context": "MONTAGE_K8S_CONTEXT", "namespace": "MONTAGE_K8S_NAMESPACE",
       "registry_namespace": "MONTAGE_REGISTRY_NAMESPACE", "registry": "REGISTRY",
       "push_registry": "MONTAGE_PUSH_REGISTRY", "pvc": "PVC_NAME",
       "image": "MONTAGE_IMAGE", "mount_path": "MONTAGE_MOUNT_PATH", "local_mount": "MONTAGE_LOCAL_MOUNT",
       "service_account": "MONTAGE_SERVICE_ACCOUNT", "memory": "MONTAGE_K8S_MEMORY",
       "memory_cap": "MONTAGE_K8S_MEMORY_CAP", "cpu": "MONTAGE_K8S_CPU", "parallelism": "MONTAGE_K8S_PARALLELISM",
       "retries_per_index": "MONTAGE_K8S_RETRIES", "gpu_vendors": "MONTAGE_GPU_VENDORS",
       "device_groups": "MONTAGE_K8S_DEVICE_GROUPS", "tolerations": "MONTAGE_K8S_TOLERATIONS",
       "node_selector": "MONTAGE_K8S_NODE_SELECTOR"}
#: the registry Service's fixed nodePort in deploy/registry/service.yaml; nodes pull from localhost:<it>
REGISTRY_NODE_PORT = 30500
#: the registry Service's port inside the cluster (deploy/registry/service.yaml)
REGISTRY_SERVICE_PORT = 5000
#: GIDs a pod with a /dev/dri device (Intel, AMD) joins: the groups owning /dev/dri/card* and renderD*
#: on the node. video is 44 on Debian and Ubuntu; render is allocated per install: 109 on Ubuntu,
#: 105, 107 or 110 on other distributions. A GID no group has on the node grants nothing.
DEVICE_GROUPS = "44,105,107,109,110"


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
            value = file_values[name]  # a list or object (tolerations, node_selector) stays JSON
            out[name] = Setting(value if isinstance(value, str) else json.dumps(value), f"config file ({path})")
        else:
            out[name] = Setting(default, default_source)

    pick("context", "", "default (kubeconfig's current context)")
    namespace_file = service_account / "namespace"
    if in_cluster() and namespace_file.exists():
        pick("namespace", namespace_file.read_text().strip(), "in-cluster (service account)")
    else:
        pick("namespace", "montage")
    pick("registry_namespace", "registry")
    pick("registry", f"localhost:{REGISTRY_NODE_PORT}")
    if out["registry"].source == "default pattern":
        # localhost:30500 is the registry only on a node (or through a port-forward); a pod has its own
        # localhost and reaches the Service by its cluster name
        service = f"registry.{out['registry_namespace'].value}.svc.cluster.local:{REGISTRY_SERVICE_PORT}"
        if in_cluster():
            pick("push_registry", service, "default (the registry Service, from this pod)")
        else:
            pick("push_registry", out["registry"].value,
                 "default (= registry: kubectl port-forward -n registry svc/registry 30500:5000)")
    else:  # one registry everyone reaches by the same name
        pick("push_registry", out["registry"].value, "default (= registry)")
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
    pick("device_groups", DEVICE_GROUPS, "default (video 44; render 105, 107, 109, 110: see config.py)")
    pick("tolerations", "", "default (none; GPU pods tolerate their device's taint)")
    pick("node_selector", "", "default (none)")
    # a typo fails here, in one line naming the variable, not as a Job the API server refuses
    device_groups(out["device_groups"].value)
    tolerations(out["tolerations"].value)
    node_selector(out["node_selector"].value)
    return out


def device_groups(text: str) -> list[int]:
    """``"44,109"`` → ``[44, 109]``; the supplemental groups of pods that get a /dev/dri device.
    ``none`` is no group (the runtime gives devices the pod's own ids: containerd's
    ``device_ownership_from_security_context``)."""
    from montage_core.errors import UsageError

    groups = []
    for part in ("" if text.strip().lower() == "none" else text).split(","):
        if not part.strip():
            continue
        if not part.strip().isdigit():
            raise UsageError(f"device_groups {text!r}: not a list of numeric group ids (e.g. 44,109); the "
                             "groups owning /dev/dri on the GPU nodes (getent group video render)")
        groups.append(int(part))
    return sorted(set(groups))


#: a label or taint key: an optional DNS subdomain prefix and "/", then a name of up to 63 characters
_NAME = r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
_KEY = re.compile(rf"([a-z0-9]([-a-z0-9.]{{0,251}}[a-z0-9])?/)?{_NAME}")
_VALUE = re.compile(rf"({_NAME})?")
EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")
TOLERATIONS_FORMAT = ("key=value:Effect or key:Effect, comma-separated (dedicated=video:NoSchedule,spot:NoExecute), "
                      "or a JSON list of tolerations")


def tolerations(text: str) -> list[dict[str, Any]]:
    """Tolerations every worker pod gets (``MONTAGE_K8S_TOLERATIONS``), as the API writes them.

    ``dedicated=video:NoSchedule`` tolerates that taint (operator Equal), ``spot:NoExecute`` any
    value of the key (operator Exists), a missing effect every effect. A JSON list gives the API's
    own objects (``tolerationSeconds``, an empty key with Exists)."""
    from montage_core.errors import UsageError

    def bad(problem: str) -> UsageError:
        return UsageError(f"MONTAGE_K8S_TOLERATIONS {text!r}: {problem}; write {TOLERATIONS_FORMAT}")

    text = text.strip()
    if not text:
        return []
    if text.startswith("["):
        try:
            items = json.loads(text)
        except ValueError as exc:
            raise bad(f"not valid JSON ({exc})") from None
    else:
        items = []
        for part in (p.strip() for p in text.split(",")):
            if not part:
                continue
            taint, _, effect = part.partition(":")
            key, equal, value = taint.partition("=")
            item = {"key": key.strip(), "operator": "Equal" if equal else "Exists"}
            if equal:
                item["value"] = value.strip()
            if effect:
                item["effect"] = effect.strip()
            items.append(item)
    out = []
    for item in items:
        if not isinstance(item, dict) or set(item) - {"key", "operator", "value", "effect", "tolerationSeconds"}:
            raise bad(f"{item!r} is not a toleration (key, operator, value, effect, tolerationSeconds)")
        key, operator = item.get("key", ""), item.get("operator", "Equal")
        if operator not in ("Equal", "Exists"):
            raise bad(f"operator {operator!r} is neither Equal nor Exists")
        if (key and not _KEY.fullmatch(key)) or (not key and operator != "Exists"):
            raise bad(f"{key!r} is not a taint key")
        if operator == "Exists" and item.get("value"):
            raise bad(f"{key}: operator Exists takes no value")
        if not _VALUE.fullmatch(str(item.get("value", ""))):
            raise bad(f"{item.get('value')!r} is not a taint value")
        if item.get("effect", "") not in ("", *EFFECTS):
            raise bad(f"effect {item['effect']!r} is not one of {', '.join(EFFECTS)}")
        seconds = item.get("tolerationSeconds")
        if seconds is not None and (not isinstance(seconds, int) or item.get("effect") != "NoExecute"):
            raise bad("tolerationSeconds is a whole number of seconds, for effect NoExecute only")
        out.append(item)
    return out


def node_selector(text: str) -> dict[str, str]:
    """Node labels every worker pod requires (``MONTAGE_K8S_NODE_SELECTOR``): ``key=value,...``
    (or a JSON object)."""
    from montage_core.errors import UsageError

    def bad(problem: str) -> UsageError:
        return UsageError(f"MONTAGE_K8S_NODE_SELECTOR {text!r}: {problem}; write key=value, comma-separated "
                          "(e.g. kubernetes.io/arch=amd64,pool=video)")

    text = text.strip()
    if text.startswith("{"):
        try:
            pairs = json.loads(text)
        except ValueError as exc:
            raise bad(f"not valid JSON ({exc})") from None
        if not isinstance(pairs, dict):
            raise bad("not an object of labels")
        pairs = {str(k): v for k, v in pairs.items()}
    else:
        pairs = {}
        for part in (p.strip() for p in text.split(",")):
            if not part:
                continue
            key, equal, value = part.partition("=")
            if not equal:
                raise bad(f"{part!r} has no =value")
            pairs[key.strip()] = value.strip()
    for key, value in pairs.items():
        if not _KEY.fullmatch(key):
            raise bad(f"{key!r} is not a label key")
        if not isinstance(value, str) or not _VALUE.fullmatch(value):
            raise bad(f"{value!r} is not a label value (63 characters at most: letters, digits, -, _ and .)")
    return pairs


def pod_placement(settings: dict[str, Any]) -> dict[str, Any]:
    """``job_manifest``'s keywords for where and as whom pods run, from the resolved settings."""
    return {"tolerations": tolerations(settings.get("tolerations", "")),
            "node_selector": node_selector(settings.get("node_selector", "")),
            "device_groups": device_groups(settings.get("device_groups", DEVICE_GROUPS)),
            "service_account": settings["service_account"]}


def cluster_dns_name(host: str) -> bool:
    """A Service's cluster DNS name (``NAME.NS.svc.cluster.local``, ``NAME.NS.svc``), with or without port."""
    name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    return name.lower().rstrip(".").endswith((".svc.cluster.local", ".svc"))


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
