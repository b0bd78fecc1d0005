"""Built-in analyzers: cuts, motion, sharpness, brightness, centre of gravity, subject, layout."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from ..hookspecs import hookimpl
from ..interfaces import Analyzer


class KernelAnalyzer(Analyzer):
    """An analyzer backed by one Numba kernel from :mod:`montage_core.analysis.kernels`."""

    kernel_name: ClassVar[str] = ""

    def compute(self, frames: Any, previous: Any) -> dict[str, Any]:
        import numpy as np

        from ..analysis import kernels

        kernel: Callable[..., None] = getattr(kernels, self.kernel_name)
        out = np.empty((len(frames), len(self.outputs))) if len(self.outputs) > 1 else np.empty(len(frames))
        kernel(frames, previous, out)
        if out.ndim == 1:
            return {self.outputs[0]: out}
        return {name: out[:, k] for k, name in enumerate(self.outputs)}


class CutsAnalyzer(KernelAnalyzer):
    name = "cuts"
    version = "1"
    outputs = ("cut_score",)
    aggregate = "max"
    kernel_name = "cut_score"


class MotionAnalyzer(KernelAnalyzer):
    name = "motion"
    version = "1"
    outputs = ("motion",)
    aggregate = "mean"
    kernel_name = "motion"


class SharpnessAnalyzer(KernelAnalyzer):
    name = "sharpness"
    version = "1"
    outputs = ("sharpness",)
    kernel_name = "sharpness"


class BrightnessAnalyzer(KernelAnalyzer):
    name = "brightness"
    version = "1"
    outputs = ("brightness",)
    aggregate = "mean"
    kernel_name = "brightness"


class CentreOfGravityAnalyzer(KernelAnalyzer):
    name = "centre_of_gravity"
    version = "1"
    outputs = ("cog_x", "cog_y")
    kernel_name = "centre_of_gravity"


class SubjectAnalyzer(KernelAnalyzer):
    """Where the subject is (what stands out and what moves): reframing follows it."""

    name = "subject"
    version = "1"
    outputs = ("subject_x", "subject_y")
    aggregate = "median"
    kernel_name = "subject"


class LayoutAnalyzer(KernelAnalyzer):
    name = "layout"
    version = "1"
    outputs = tuple(f"layout_{k}" for k in range(16))
    kernel_name = "layout"


@hookimpl
def montage_register_analyzers(register: Callable[[Any], None]) -> None:
    for cls in (CutsAnalyzer, MotionAnalyzer, SharpnessAnalyzer, BrightnessAnalyzer, CentreOfGravityAnalyzer,
                SubjectAnalyzer, LayoutAnalyzer):
        register(cls())
