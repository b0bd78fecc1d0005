"""VA-API encoders for Intel (iHD, i965) and AMD (Mesa radeonsi) GPUs on Linux.

Only the registration lives here: ``montage plugins`` and ``montage check-hw`` (from its cache)
read the declared name, description and priority without importing :mod:`.accelerator` and the
hardware layer under it; probing or encoding imports them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from montage_core.hookspecs import Deferred, hookimpl, lazy_exports

NAME, DESCRIPTION, PRIORITY = "vaapi", "VA-API on Intel (iHD/i965) and AMD (Mesa) GPUs", 20
#: the implementation's public names, importable from the package as before (PEP 562)
__getattr__ = lazy_exports("montage_hwaccel_vaapi.accelerator", ("VaapiAccelerator", "QP"))


@hookimpl
def montage_register_accelerators(register: Callable[[Any], None]) -> None:
    register(Deferred("montage_hwaccel_vaapi.accelerator:VaapiAccelerator", name=NAME, description=DESCRIPTION,
                      priority=PRIORITY))
