"""What runs in the pod around each shard: node-specific choices made on the node itself.

The coordinator cannot see a node's GPU, so a shard's encoder arguments (and the analysis
decoder) are resolved here, from this node's own probe: an AMD node encodes with VA-API, an
NVIDIA node with NVENC, a node whose device fails falls back to software and says so.
"""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Callable
from typing import Any

from montage_core.interfaces import ProgressEvent, ShardTask

log = logging.getLogger("montage.k8s.node")


def node_encoders(accelerators: list[Any], choice: str, quality: str) -> list[dict[str, Any]]:
    """This node's encoder chain for ``choice`` as render specs carry it."""
    from montage_core.accel import encoder_chain
    from montage_core.errors import UnavailableError
    from montage_core.render import encoder_entries

    try:
        chain = encoder_chain(accelerators, choice)
    except UnavailableError as exc:
        log.warning("node %s: %s; encoding in software", os.environ.get("MONTAGE_NODE_NAME", "?"), exc)
        chain = encoder_chain(accelerators, "software")
    return encoder_entries(chain, quality)


def node_decoder(accelerators: list[Any]) -> list[str]:
    from montage_core.accel import analysis_decoder, probe_all

    return analysis_decoder(accelerators, probe_all(accelerators))[1]


def run_on_node(task: ShardTask, emit: Callable[[ProgressEvent], None]) -> Any:
    """Shard function of the k8s backend's shard files: adapt the payload to this node, run the target."""
    from montage_core.plugins import get_manager

    payload = dict(task.payload)
    module, _, name = payload.pop("_target").partition(":")
    accelerators = list(get_manager().accelerators)
    if "encoders" in payload:
        payload["encoders"] = node_encoders(accelerators, payload.get("accel", "auto"),
                                            payload.get("quality", "standard"))
    elif "input_args" in payload:
        payload["input_args"] = node_decoder(accelerators)
    fn = getattr(importlib.import_module(module), name)
    return fn(ShardTask(task.id, task.stage, task.clip, payload, task.total), emit)
