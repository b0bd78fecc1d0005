"""Node-specific choices are made on the node itself: an AMD node encodes with VA-API, an NVIDIA
node with NVENC, a node whose device fails falls back to software and says so.

The core's ``montage worker`` does this for every spec marked ``resolve_on_node`` (which this
backend sets on all of its shards); the functions live in :mod:`montage_core.worker` and are
re-exported here for the placement code and its tests.
"""

from __future__ import annotations

from montage_core.worker import for_this_node, node_decoder, node_encoders

__all__ = ["for_this_node", "node_decoder", "node_encoders"]
