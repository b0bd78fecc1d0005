"""Which nodes a stage's shards go to, and with which accelerator.

Extended resources cannot be requested "if present", so GPU work is placed per vendor: the
render shards are split across one Job per GPU vendor the cluster has (``gpu_vendors``), each
requesting its vendor's device (``nvidia.com/gpu``, ``amd.com/gpu``, ``gpu.intel.com/i915``) and
pinned by node affinity to that vendor's nodes, from the accelerator plugins' ``placement``. Each
node then resolves the encoder arguments for the device it really has (see :mod:`.node`), so in
a mixed AMD + NVIDIA cluster AMD nodes encode with VA-API and NVIDIA nodes with NVENC.

``--accel auto`` prefers GPU nodes and still runs on CPU-only ones: with no GPU vendor
configured every shard goes to a CPU Job, and a GPU Job whose pods find no node within the
pending timeout hands its shards to a CPU Job on the next attempt.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from montage_core.interfaces import ShardTask
from montage_core.specs import RenderSpec


@dataclass
class Placement:
    tasks: list[ShardTask]
    vendor: str | None = None
    accelerator: Any = None
    required: bool = False
    #: unschedulable pods send the shards to CPU nodes instead of failing them (``--accel auto``)
    fallback_to_cpu: bool = False
    #: the ``--accel`` choice each render shard's node resolves (None: leave the spec's own)
    accel_choice: str | None = None


def gpu_vendors(settings: dict[str, Any]) -> list[str]:
    return [v.strip() for v in str(settings.get("gpu_vendors", "")).split(",") if v.strip()]


def vendor_accelerators(accelerators: list[Any], vendors: list[str]) -> dict[str, Any]:
    """For each vendor the best (highest priority) accelerator that can schedule onto its nodes."""
    out: dict[str, Any] = {}
    for vendor in vendors:
        fitting = [a for a in accelerators if vendor in a.placement]
        if fitting:
            out[vendor] = max(fitting, key=lambda a: (a.priority, a.name))
    return out


def _split(tasks: list[ShardTask], buckets: int) -> list[list[ShardTask]]:
    return [tasks[i::buckets] for i in range(buckets)]


def place_tasks(tasks: list[ShardTask], settings: dict[str, Any], cpu_only: set[str],
                accelerators: list[Any] | None = None) -> list[Placement]:
    """Placements for one stage's shards; analysis (and ``--accel software``) goes anywhere."""
    if not tasks or not isinstance(tasks[0].payload, RenderSpec):
        return [Placement(list(tasks))]
    return place_render(tasks, tasks[0].payload.accel, settings, cpu_only, accelerators)


def place_render(tasks: list[ShardTask], choice: str, settings: dict[str, Any], cpu_only: set[str],
                 accelerators: list[Any] | None = None) -> list[Placement]:
    """Placements for render shards encoded with ``--accel choice`` (only the tasks' ids are read)."""
    from montage_core.accel import chosen_accelerator

    if accelerators is None:
        from montage_core.plugins import get_manager

        accelerators = list(get_manager().accelerators)
    vendors = gpu_vendors(settings)
    if choice == "software":
        return [Placement(list(tasks), accel_choice="software")]
    pinned = chosen_accelerator(accelerators, choice)
    if pinned is not None:
        wanted = [v for v in vendors if v in pinned.placement] or list(pinned.placement)[:1]
        if not wanted:  # an accelerator without scheduling metadata: any node, resolved there
            return [Placement(list(tasks), accel_choice=choice)]
        return [Placement(part, vendor, pinned, required=True, accel_choice=choice)
                for vendor, part in zip(wanted, _split(list(tasks), len(wanted))) if part]
    gpus = vendor_accelerators(accelerators, vendors)
    on_gpu = [t for t in tasks if t.id not in cpu_only] if gpus else []
    placements = [Placement(part, vendor, accel, required=True, fallback_to_cpu=True, accel_choice=accel.name)
                  for (vendor, accel), part in zip(gpus.items(), _split(on_gpu, len(gpus) or 1)) if part]
    rest = [t for t in tasks if t not in on_gpu]
    if rest:
        placements.append(Placement(rest, accel_choice="auto"))
    return placements
