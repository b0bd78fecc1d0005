"""The Jobs a montage job creates, from the resolved settings: each stage's worker Jobs, the
pre-flight storage probe, and all of them as YAML for ``--dry-run``.

The backend, pre-flight and the dry run build them here, so what a dry run prints is what a run
submits (bar the names' random parts, the job id and the image's digest, which exist only then).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from montage_core.interfaces import ShardTask, StagePreview

from .jobs import job_manifest, manifest_dict
from .placement import Placement, gpu_vendors, place_render

#: the job id a dry run shows in names, labels and paths (the real one is given when the job starts)
DRY_RUN_ID = "dry-run"


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


def dry_run(settings: dict[str, Any], stages: Sequence[StagePreview], parallelism: int | None = None,
            accelerators: list[Any] | None = None) -> str:
    """Every object a job of ``stages`` would create, as YAML documents with a comment each."""
    import yaml

    from .backend import dns_name

    namespace = settings["namespace"]
    pod_root = f"{settings['mount_path'].rstrip('/')}/jobs/{DRY_RUN_ID}"
    documents: list[tuple[str, dict[str, Any]]] = [(
        "pre-flight's storage probe: one pod writes, reads and deletes a file on the shared volume; deleted "
        "once it has answered", manifest_dict(probe_job(settings, "montage-preflight-" + DRY_RUN_ID)))]
    serial = 0
    for preview in stages:
        known = preview.shards is not None
        if preview.stage == "render":
            # unknown: one placeholder shard per GPU vendor, so that each vendor's Job shows
            count = preview.shards if known else max(1, len(gpu_vendors(settings)))
            tasks = [ShardTask(f"segment-{i:04d}", "render", "", {}) for i in range(count or 0)]
            placements = place_render(tasks, preview.accel or "auto", settings, set(), accelerators)
        else:
            placements = [Placement([ShardTask(f"{preview.stage}-{i:04d}", preview.stage, "", {})
                                     for i in range(preview.shards or 1)])]
        for placement in placements:
            serial += 1
            name = dns_name(f"montage-{DRY_RUN_ID}-{preview.stage[:6]}-{serial}")
            job = stage_job(settings, name=name, stage=preview.stage, shards=len(placement.tasks),
                            shard_file=f"{pod_root}/{name}/shards.json", placement=placement,
                            memory=settings["memory"], job_id=DRY_RUN_ID, parallelism=parallelism)
            where = f" on {placement.vendor} GPU nodes ({placement.accelerator.name})" if placement.vendor else ""
            if known:
                what = f"{preview.stage}: {len(placement.tasks)} shard(s){where}"
            else:
                what = (f"{preview.stage}{where}: one shard per cut; the cuts are known once the clips are analysed "
                        "and the montage planned, so completions here stands for them (montage plan, then montage "
                        "render TIMELINE --dry-run shows them)")
            documents.append((what, manifest_dict(job)))
    head = (f"# montage --dry-run: the objects this job would create in namespace {namespace}; nothing was created.\n"
            "# Only Jobs: shard lists and results travel on the shared volume (no ConfigMap, no Secret).\n"
            f"# '{DRY_RUN_ID}' stands for the job id and the names' random parts; pre-flight pins the image to its "
            "digest when the job starts.\n")
    body = "---\n".join(f"# {comment}\n" + yaml.safe_dump(doc, sort_keys=False) for comment, doc in documents)
    return head + body
