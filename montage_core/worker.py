"""``montage worker``: run one shard of a stage from a shard file on shared storage.

Cluster backends (Kubernetes Indexed Jobs) start one of these per index. The shard file lists
the stage's tasks and the shard function; the index picks the task (``--index`` or
``$JOB_COMPLETION_INDEX``). Progress events go to stdout as JSON lines (a coordinator follows the
pod's log); the result is written atomically to ``<results>/<task id>.pickle``, one file per
shard, so no two workers ever write the same file.

Exit status: 0 done, 3 the shard's own input is bad (retrying cannot help), 1 anything else.
"""

from __future__ import annotations

import importlib
import json
import os
import pickle
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from .errors import InputError, MontageError, ShardError, UsageError
from .interfaces import ProgressEvent, ShardTask
from .models import write_atomic

EXIT_DONE, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 3


def write_shard_file(path: str | Path, function: str, tasks: list[ShardTask], results: str | Path) -> None:
    """The file a cluster backend hands to ``montage worker`` (``function`` as ``module:name``)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps({"function": function, "results": str(results),
                                   "tasks": [asdict(t) for t in tasks]}, indent=1))


def load_result(results: str | Path, task_id: str) -> Any:
    with open(Path(results) / f"{task_id}.pickle", "rb") as fh:
        return pickle.load(fh)


def run_worker(shard_file: str | Path, index: int | None = None) -> int:
    """Run the task at ``index``; returns the exit status."""
    if index is None:
        raw = os.environ.get("JOB_COMPLETION_INDEX")
        if raw is None:
            raise UsageError("no shard index: pass --index N or set JOB_COMPLETION_INDEX")
        index = int(raw)
    try:
        spec = json.loads(Path(shard_file).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(shard_file, f"not a readable shard file ({exc})") from None
    if not 0 <= index < len(spec["tasks"]):
        raise UsageError(f"shard index {index} is out of range (the file has {len(spec['tasks'])} shards)")
    task = ShardTask(**spec["tasks"][index])
    module, _, name = spec["function"].partition(":")
    fn = getattr(importlib.import_module(module), name)
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
    results = Path(spec["results"])
    results.mkdir(parents=True, exist_ok=True)
    write_atomic(results / f"{task.id}.pickle", pickle.dumps(result))
    return EXIT_DONE
