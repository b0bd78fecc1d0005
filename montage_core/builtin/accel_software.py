"""The software accelerator: libx264 on the CPU, the reference every hardware one is measured against."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from typing import Any

from ..hookspecs import hookimpl
from ..interfaces import Accelerator, AcceleratorProbe
from ..procs import child_options

#: quality preset -> (x264 preset, CRF). CRF 23 is x264's default; 18 is near-transparent.
X264_QUALITY = {"preview": ("veryfast", 28), "standard": ("fast", 21), "high": ("slow", 18)}


class SoftwareAccelerator(Accelerator):
    name = "software"
    description = "libx264 on the CPU; always last in the chain"
    priority = 0

    def probe(self, ffmpeg: str) -> AcceleratorProbe:
        cmd = [ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error", "-f", "lavfi",
               "-i", "color=c=gray:s=64x64:d=0.04", "-frames:v", "1", "-c:v", "libx264", "-f", "null", "-"]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=30, **child_options())
        except (OSError, subprocess.TimeoutExpired) as exc:
            return AcceleratorProbe(self.name, False, f"test encode failed: {exc}")
        if proc.returncode != 0:
            line = (proc.stderr.strip().splitlines() or ["no message"])[-1]
            return AcceleratorProbe(self.name, False, f"libx264 test encode failed: {line}")
        return AcceleratorProbe(self.name, True, "libx264 test encode ok", encoders={"h264": "libx264"},
                                devices=[{"node": "cpu", "vendor": "cpu", "product": "", "driver": "libx264",
                                         "driver_version": "", "problem": "", "encode": {"h264": ""}, "decode": {}}])

    def encode_args(self, codec: str, quality: str, probe: AcceleratorProbe) -> list[str]:
        preset, crf = X264_QUALITY[quality]
        return ["-c:v", "libx264", "-preset", preset, "-crf", str(crf), "-pix_fmt", "yuv420p",
                "-profile:v", "high"]


@hookimpl
def montage_register_accelerators(register: Callable[[Any], None]) -> None:
    register(SoftwareAccelerator())
