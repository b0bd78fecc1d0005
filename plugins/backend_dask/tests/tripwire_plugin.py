"""A montage plugin for tests only: an analyzer that takes its worker process down on cue.

The tests install it as a distribution (dist-info with a ``montage`` entry point) in a folder on
the ``PYTHONPATH`` of the coordinator and of every Dask worker, so it loads through the plugin
system like any installed plugin. Without its environment variables it only adds a zero column.

- ``MONTAGE_TEST_HOLD_FILE=PATH``: the first shard anywhere to analyze a batch writes its process
  id to PATH and waits (a minute at most) to be killed from outside; every later shard goes on.
- ``MONTAGE_TEST_KILL_SQUARE=1``: a shard analyzing a square clip SIGKILLs its own process, every time.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from typing import Any

from montage_core.hookspecs import hookimpl
from montage_core.interfaces import Analyzer


class Tripwire(Analyzer):
    name = "tripwire"
    version = "1"
    outputs = ("tripwire",)
    aggregate = "mean"

    def compute(self, frames: Any, previous: Any) -> dict[str, Any]:
        import numpy as np

        # A clip's frames only: the JIT warm-up calls every analyzer on a tiny 8x8 batch first.
        if frames.ndim == 3 and min(frames.shape[1:]) >= 32:
            hold = os.environ.get("MONTAGE_TEST_HOLD_FILE")
            if hold and _claim(hold):
                time.sleep(60)
            if os.environ.get("MONTAGE_TEST_KILL_SQUARE") and frames.shape[1] == frames.shape[2]:
                os.kill(os.getpid(), signal.SIGKILL)
        return {"tripwire": np.zeros(len(frames))}


def _claim(path: str) -> bool:
    """Whether this process is the first to get here: it then publishes its pid at ``path``
    (written aside and renamed, so a reader never sees a half-written file)."""
    try:
        os.close(os.open(f"{path}.claimed", os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return False
    with open(f"{path}.tmp", "w") as fh:
        fh.write(str(os.getpid()))
    os.replace(f"{path}.tmp", path)
    return True


@hookimpl
def montage_register_analyzers(register: Callable[[Any], None]) -> None:
    register(Tripwire())
