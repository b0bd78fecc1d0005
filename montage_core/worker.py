"""``montage worker``: run one shard of a stage from a shard file on shared storage.

Cluster backends (Kubernetes Indexed Jobs) start one of these per index. The shard file lists
the stage's tasks, each with its typed, versioned spec (:mod:`montage_core.specs`); the index
picks the task (``--index`` or ``$JOB_COMPLETION_INDEX``) and the spec's kind picks the stage
function: a worker runs only montage's own stages, never a function named by the file. A spec
marked ``resolve_on_node`` gets this node's encoder chain or analysis decoder first (the
coordinator cannot see a node's GPU). Progress events go to stdout as JSON lines (a coordinator
follows the pod's log); the result is written atomically to ``<results>/<task id>.json``, one file
per shard, so no two workers ever write the same file. Results are plain data (JSON; arrays as
typed lists), never pickles, and carry the shard file's random token: a coordinator reading a
shared folder accepts only results of its own run, and nothing it reads can run code.

Exit status: 0 done, 3 the shard's own input is bad (retrying cannot help), 1 anything else.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from .errors import InputError, MontageError, ShardError, UsageError
from .interfaces import ProgressEvent, ShardTask
from .models import write_atomic
from .specs import AnalysisSpec, RenderBatchSpec, RenderSpec, ShardSpec

log = logging.getLogger("montage.worker")

EXIT_DONE, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 3


SHARD_FILE_VERSION = 1


def write_shard_file(path: str | Path, tasks: list[ShardTask], results: str | Path, token: str) -> None:
    """The file a cluster backend hands to ``montage worker``: typed tasks, where results go, and
    the run's random ``token`` that every result must carry back."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps({"version": SHARD_FILE_VERSION, "results": str(results), "token": token,
                                   "tasks": [task_to_json(t) for t in tasks]}, indent=1))


def _plain(value: Any) -> Any:
    """``value`` as JSON data: NumPy arrays and scalars as typed lists and numbers."""
    import numpy as np

    if isinstance(value, np.ndarray):
        return {"__ndarray__": value.dtype.str, "shape": list(value.shape), "data": value.ravel().tolist()}
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _from_plain(value: Any) -> Any:
    import numpy as np

    if isinstance(value, dict):
        if "__ndarray__" in value:
            dtype = np.dtype(value["__ndarray__"])
            if dtype.kind not in "biuf":  # numbers only: an object array is how pickles get in
                raise ValueError(f"array of {dtype} in a shard result")
            return np.asarray(value["data"], dtype=dtype).reshape(value["shape"])
        return {k: _from_plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_from_plain(v) for v in value]
    return value


def write_result(results: str | Path, task_id: str, token: str, result: Any) -> None:
    """A shard's result as the coordinator reads it back (:func:`load_result`)."""
    folder = Path(results)
    folder.mkdir(parents=True, exist_ok=True)
    write_atomic(folder / f"{task_id}.json", json.dumps({"version": SHARD_FILE_VERSION, "task": task_id,
                                                         "token": token, "result": _plain(result)}))


def task_to_json(task: ShardTask) -> dict[str, Any]:
    """A shard task's plain form; its payload must be a :class:`~montage_core.specs.ShardSpec`."""
    if not isinstance(task.payload, ShardSpec):
        raise MontageError(f"shard {task.id}: only typed shard specs can run on other machines "
                           f"(got {type(task.payload).__name__})")
    return {"id": task.id, "stage": task.stage, "clip": task.clip, "total": task.total,
            "spec": task.payload.to_json()}


def task_from_json(data: dict[str, Any]) -> ShardTask:
    return ShardTask(data["id"], data["stage"], data["clip"], ShardSpec.from_json(data["spec"]), data["total"])


def node_encoders(accelerators: list[Any], choice: str, quality: str) -> list[dict[str, Any]]:
    """This node's encoder chain for ``choice`` as render specs carry it (software when the
    chosen device does not work here, with a warning)."""
    from .accel import check_quality, encoder_chain
    from .errors import UnavailableError
    from .stages.render import encoder_entries

    check_quality(quality)  # a name, as the command line takes it: never arguments from a file

    try:
        chain = encoder_chain(accelerators, choice)
    except UnavailableError as exc:
        log.warning("node %s: %s; encoding in software", os.environ.get("MONTAGE_NODE_NAME", "?"), exc)
        chain = encoder_chain(accelerators, "software")
    return encoder_entries(chain, quality)


def node_decoder(accelerators: list[Any]) -> list[str]:
    """This node's analysis decoder arguments."""
    from .accel import analysis_decoder, probe_all

    return analysis_decoder(accelerators, probe_all(accelerators))[1]


def for_this_node(spec: ShardSpec) -> ShardSpec:
    """``spec`` with the machine-specific choices made from this node's own devices."""
    if not spec.resolve_on_node:
        return spec
    from .plugins import get_manager

    accelerators = list(get_manager().accelerators)
    if isinstance(spec, RenderSpec):
        return replace(spec, encoders=node_encoders(accelerators, spec.accel, spec.quality))
    if isinstance(spec, RenderBatchSpec):
        chains: dict[tuple[str, str], list[dict[str, Any]]] = {}  # one job's segments share one choice
        for segment in spec.segments:
            if (segment.accel, segment.quality) not in chains:
                chains[segment.accel, segment.quality] = node_encoders(accelerators, segment.accel, segment.quality)
        return replace(spec, segments=[replace(s, encoders=chains[s.accel, s.quality]) for s in spec.segments])
    if isinstance(spec, AnalysisSpec):
        return replace(spec, input_args=node_decoder(accelerators))
    return spec


def load_result(results: str | Path, task_id: str, token: str) -> Any:
    """The result of shard ``task_id``, if it is this run's (``token``): plain data only.
    Raises ``ValueError`` for a file that is not one (forged, stale, another run's, damaged)."""
    import hmac

    path = Path(results) / f"{task_id}.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict) or data.get("version") != SHARD_FILE_VERSION or data.get("task") != task_id:
        raise ValueError(f"{path}: not a result of shard {task_id}")
    if not hmac.compare_digest(str(data.get("token", "")), token):
        raise ValueError(f"{path}: not written by this run (its token does not match)")
    try:
        return _from_plain(data.get("result"))
    except (TypeError, ValueError, KeyError) as exc:  # a damaged or hand-made array: refused like the rest
        raise ValueError(f"{path}: not a shard result ({exc})") from None


def run_worker(shard_file: str | Path, index: int | None = None) -> int:
    """Run the task at ``index``; returns the exit status."""
    if index is None:
        raw = os.environ.get("JOB_COMPLETION_INDEX")
        if raw is None:
            raise UsageError("no shard index: pass --index N or set JOB_COMPLETION_INDEX")
        index = int(raw)
    try:
        shard_file_data = json.loads(Path(shard_file).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(shard_file, f"not a readable shard file ({exc})") from None
    if shard_file_data.get("version") != SHARD_FILE_VERSION:
        raise InputError(shard_file, f"shard file version {shard_file_data.get('version')!r} is not supported "
                                     f"(this montage reads version {SHARD_FILE_VERSION})")
    tasks = shard_file_data["tasks"]
    if not 0 <= index < len(tasks):
        raise UsageError(f"shard index {index} is out of range (the file has {len(tasks)} shards)")
    task = task_from_json(tasks[index])
    spec = task.payload
    # The shard file lies on shared storage, which anyone who can write there can rewrite: its
    # grades are checked as a timeline's are, and the ffmpeg arguments it names (encoders, the
    # analysis decoder) are never used: this node resolves its own from the accelerator's name.
    from .grades import check_grade

    for segment in spec.segments if isinstance(spec, RenderBatchSpec) else [spec] if isinstance(spec, RenderSpec) else []:
        try:
            check_grade(segment.grade)
        except UsageError as exc:
            raise InputError(shard_file, f"shard {task.id}: {exc}") from None
    if isinstance(spec, (RenderSpec, RenderBatchSpec, AnalysisSpec)):
        spec = spec.with_changes(resolve_on_node=True)
    task = ShardTask(task.id, task.stage, task.clip, for_this_node(spec), task.total)
    fn = task.payload.stage_function()
    worker = os.environ.get("MONTAGE_NODE_NAME") or os.environ.get("HOSTNAME") or f"worker-{index}"

    def emit(event: ProgressEvent) -> None:
        event.worker, event.host = worker, os.environ.get("MONTAGE_NODE_NAME", "")
        print(json.dumps({"montage_event": asdict(event)}), flush=True)

    try:
        result = fn(task, emit)
    except ShardError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return EXIT_FAILED if exc.transient else EXIT_BAD_INPUT
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return EXIT_BAD_INPUT
    except MontageError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return EXIT_FAILED
    write_result(shard_file_data["results"], task.id, str(shard_file_data.get("token", "")), result)
    return EXIT_DONE
