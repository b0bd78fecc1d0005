"""NVIDIA NVENC encoders (and CUDA decode for the analysis pass).

The implementation, imported when the accelerator is probed or used; the package registers it.
"""

from __future__ import annotations

import re
from typing import Any

from montage_core.hwaccel import Device, HardwareAccelerator, access_problem, diagnose
from montage_core.interfaces import DevicePlacement

from . import DESCRIPTION, NAME, PRIORITY

#: quality -> (NVENC preset p1 fastest … p7 best, constant-quality target)
PRESETS = {"preview": ("p1", 30), "standard": ("p4", 23), "high": ("p7", 19)}
QUERY = "index,name,driver_version,pci.bus_id"


class NvencAccelerator(HardwareAccelerator):
    name = NAME  # declared once, in the package, where listings read them
    description = DESCRIPTION
    priority = PRIORITY
    encoders = {"h264": "h264_nvenc", "hevc": "hevc_nvenc", "av1": "av1_nvenc"}
    hwaccel = "cuda"
    placement = {"nvidia": DevicePlacement({"nvidia.com/gpu": 1}, {"nvidia.com/gpu.present": "true"})}
    diagnoses = [
        (re.compile(r"Driver does not support the required nvenc API version\. "
                    r"Required: ([\d.]+) Found: ([\d.]+)"),
         "NVIDIA driver too old for this ffmpeg's NVENC: API {0} required, driver has {1}; update the driver "
         "(or use an ffmpeg built against an older nv-codec-headers)"),
        (re.compile(r"Cannot load libcuda\.so\.1|Cannot load libnvidia-encode\.so\.1|Could not dynamically load CUDA"),
         "NVIDIA driver libraries not found (libcuda.so.1 / libnvidia-encode.so.1): no NVIDIA driver, or the "
         "container was started without the NVIDIA runtime (--gpus all)"),
        (re.compile(r"OpenEncodeSessionEx failed: unsupported device|No capable devices found|"
                    r"no NVENC capable devices"),
         "this GPU has no NVENC encoder (data-centre GPUs such as A100/H100 decode only)"),
        (re.compile(r"OpenEncodeSessionEx failed: out of memory|incompatible client key"),
         "NVENC session limit reached (consumer GPUs allow a few concurrent encodes)"),
    ]

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._smi_problem = ""

    def enumerate_devices(self) -> list[Device]:
        status, output = self.system.run(["nvidia-smi", f"--query-gpu={QUERY}", "--format=csv"])
        if status != 0:
            self._smi_problem = ("nvidia-smi not found: no NVIDIA driver on this host" if status == 127
                                 else f"nvidia-smi failed: {diagnose(output, self)}")
            return []
        uid, gids = self.system.identity()
        devices = []
        for gpu in parse_csv(output):
            index = gpu.get("index", "")
            if not index.isdigit():
                continue
            device = Device(index, "nvidia", gpu.get("name", ""), "nvidia", gpu.get("driver_version", ""))
            node = f"/dev/nvidia{index}"
            device.problem = access_problem(node, self.system.stat(node), uid, gids)
            devices.append(device)
        return devices

    def no_device_reason(self) -> str:
        return self._smi_problem or "nvidia-smi lists no GPU"

    def device_args(self, device: Device) -> list[str]:
        return []

    def encoder_device_args(self, device: Device, codec: str) -> list[str]:
        return ["-gpu", device.node]

    def quality_args(self, codec: str, quality: str) -> list[str]:
        preset, cq = PRESETS[quality]
        return ["-c:v", self.encoders[codec], "-preset", preset, "-tune", "hq", "-rc", "vbr", "-cq", str(cq),
                "-b:v", "0", "-pix_fmt", "yuv420p"]


def parse_csv(output: str) -> list[dict[str, str]]:
    """Rows of ``nvidia-smi --format=csv`` output keyed by field name (units stripped from the header)."""
    lines = [line for line in output.strip().splitlines() if line.strip()]
    if not lines:
        return []
    header = [h.strip().split(" [")[0] for h in lines[0].split(",")]
    return [dict(zip(header, (v.strip() for v in line.split(",")))) for line in lines[1:]]
