"""Intel Quick Sync Video (oneVPL / Media SDK) encoders, opened through the VA-API device on Linux.

Only the registration lives here: ``montage plugins`` and ``montage check-hw`` (from its cache)
read the declared name, description and priority without importing :mod:`.accelerator` and the
hardware layer under it; probing or encoding imports them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from montage_core.hookspecs import Deferred, hookimpl, lazy_exports

NAME, DESCRIPTION, PRIORITY = "qsv", "Intel Quick Sync Video (iHD driver, oneVPL/Media SDK runtime)", 25
#: the implementation's public names, importable from the package as before (PEP 562)
__getattr__ = lazy_exports("montage_hwaccel_qsv.accelerator", ("QsvAccelerator", "PRESETS"))


@hookimpl
def montage_register_accelerators(register: Callable[[Any], None]) -> None:
    register(Deferred("montage_hwaccel_qsv.accelerator:QsvAccelerator", name=NAME, description=DESCRIPTION,
                      priority=PRIORITY))
