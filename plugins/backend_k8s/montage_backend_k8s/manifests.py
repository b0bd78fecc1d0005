"""The Jobs a montage job creates, from the resolved settings: each stage's worker Jobs and the
pre-flight storage probe, placed alike (tolerations, node selector, service account).
"""

from __future__ import annotations

import os
from typing import Any

from .jobs import job_manifest
from .placement import Placement


def cache_dir(settings: dict[str, Any]) -> str | None:
    """The pods' path of ``$MONTAGE_CACHE_DIR`` when it is on the shared volume (else the pods' default)."""
    from .backend import PathMap

    cache = os.environ.get("MONTAGE_CACHE_DIR")
    paths = PathMap(settings["local_mount"], settings["mount_path"])
    return paths.to_pod(cache) if cache and paths.on_volume(cache) else None


def stage_job(settings: dict[str, Any], *, name: str, stage: str, shards: int, shard_file: str, placement: Placement,
              memory: str, job_id: str, parallelism: int | None = None) -> Any:
    """The Indexed Job running ``shards`` of ``stage`` where ``placement`` puts them."""
    from .config import pod_placement

    s = settings
    return job_manifest(
        name=name, namespace=s["namespace"], image=s.get("image_pinned") or s["image"], pvc=s["pvc"],
        mount_path=s["mount_path"], stage=stage, shards=shards, shard_file=shard_file,
        parallelism=parallelism or int(s["parallelism"]), retries_per_index=int(s["retries_per_index"]),
        memory=memory, cpu=s["cpu"], accelerator=placement.accelerator, vendor=placement.vendor,
        require_accelerator=placement.required, job_id=job_id, cache_dir=cache_dir(s), **pod_placement(s))


def probe_job(settings: dict[str, Any], name: str) -> Any:
    """Pre-flight's one-pod Job: write, read and delete a probe file where the workers mount the volume."""
    from .config import pod_placement

    return job_manifest(name=name, namespace=settings["namespace"],
                        image=settings.get("image_pinned") or settings["image"], pvc=settings["pvc"],
                        mount_path=settings["mount_path"], stage="preflight", shards=1, shard_file="",
                        retries_per_index=0, memory="256Mi", cpu="100m",
                        command=["k8s-probe-storage", settings["mount_path"]], **pod_placement(settings))
