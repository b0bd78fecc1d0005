"""NVIDIA NVENC encoders (and CUDA decode for the analysis pass).

Only the registration lives here: ``montage plugins`` and ``montage check-hw`` (from its cache)
read the declared name, description and priority without importing :mod:`.accelerator` and the
hardware layer under it; probing or encoding imports them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from montage_core.hookspecs import Deferred, hookimpl, lazy_exports

NAME, DESCRIPTION, PRIORITY = "nvenc", "NVIDIA NVENC (encode) and NVDEC/CUDA (decode)", 30
#: the implementation's public names, importable from the package as before (PEP 562)
__getattr__ = lazy_exports("montage_hwaccel_nvenc.accelerator", ("NvencAccelerator", "parse_csv", "PRESETS", "QUERY"))


@hookimpl
def montage_register_accelerators(register: Callable[[Any], None]) -> None:
    register(Deferred("montage_hwaccel_nvenc.accelerator:NvencAccelerator", name=NAME, description=DESCRIPTION,
                      priority=PRIORITY))
