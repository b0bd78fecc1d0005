"""Intel Quick Sync Video (oneVPL / Media SDK) encoders, opened through the VA-API device on Linux.

The implementation, imported when the accelerator is probed or used; the package registers it.
"""

from __future__ import annotations

import re
from typing import Any

from montage_core.hwaccel import Device, VaDeviceAccelerator
from montage_core.interfaces import DevicePlacement

from . import DESCRIPTION, NAME, PRIORITY

#: quality -> (QSV preset, ICQ global_quality)
PRESETS = {"preview": ("veryfast", 30), "standard": ("medium", 24), "high": ("veryslow", 20)}


class QsvAccelerator(VaDeviceAccelerator):
    name = NAME  # declared once, in the package, where listings read them
    description = DESCRIPTION
    priority = PRIORITY
    encoders = {"h264": "h264_qsv", "hevc": "hevc_qsv", "av1": "av1_qsv"}
    hwaccel = "qsv"
    pci_vendors = {"0x8086": "intel"}
    # intel.feature.node.kubernetes.io/gpu=true: the label the Intel device plugin's NFD rules put on
    # nodes with an Intel GPU (gpu.intel.com/device-id.0300-<id>.present names each device id)
    placement = {"intel": DevicePlacement({"gpu.intel.com/i915": 1}, {"intel.feature.node.kubernetes.io/gpu": "true"})}
    diagnoses = [
        (re.compile(r"unsupported \(-3\)|Error (?:creating|initializing) an? (?:internal )?MFX session|"
                    r"Error creating a MFX session: -9|Device creation failed: -1313558101|"
                    r"Failed to set value 'qsv[=:]"),
         "Intel Media SDK / oneVPL session failed: no Intel GPU, a GPU generation the runtime does not "
         "support, or the libmfx/libvpl runtime is missing"),
    ]

    def enumerate_devices(self) -> list[Device]:
        devices = []
        for device, _ in self.va_devices():
            if not device.problem and device.driver == "i965":
                device.problem = ("QSV needs Intel's iHD driver; this node runs i965 (install intel-media-va-driver "
                                  "and set LIBVA_DRIVER_NAME=iHD)")
            devices.append(device)
        return devices

    def no_device_reason(self) -> str:
        return "no Intel render node in /dev/dri (QSV needs an Intel GPU)"

    def device_args(self, device: Device) -> list[str]:
        return ["-init_hw_device", f"vaapi=va:{device.node}", "-init_hw_device", "qsv=qs@va", "-filter_hw_device", "qs"]

    def upload_filter(self) -> str:
        return "format=nv12,hwupload=extra_hw_frames=64"

    def decode_args(self, device: Device) -> list[str]:
        return ["-hwaccel", "qsv", "-qsv_device", device.node]

    def quality_args(self, codec: str, quality: str) -> list[str]:
        preset, quality_level = PRESETS[quality]
        return ["-c:v", self.encoders[codec], "-preset", preset, "-global_quality", str(quality_level)]
