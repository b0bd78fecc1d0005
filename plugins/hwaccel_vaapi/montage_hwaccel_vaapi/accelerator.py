"""VA-API encoders for Intel (iHD, i965) and AMD (Mesa radeonsi) GPUs on Linux.

The implementation, imported when the accelerator is probed or used; the package registers it.
"""

from __future__ import annotations

from typing import Any

from montage_core.hwaccel import CODECS, VA_INIT_FAILED, Device, VaDeviceAccelerator
from montage_core.interfaces import DevicePlacement

from . import DESCRIPTION, NAME, PRIORITY

#: constant-QP per quality; CQP is the rate control every VA-API driver (Intel and AMD) supports
QP = {"preview": 30, "standard": 24, "high": 20}


class VaapiAccelerator(VaDeviceAccelerator):
    name = NAME  # declared once, in the package, where listings read them
    description = DESCRIPTION
    priority = PRIORITY
    encoders = {"h264": "h264_vaapi", "hevc": "hevc_vaapi", "av1": "av1_vaapi"}
    hwaccel = "vaapi"
    pci_vendors = {"0x8086": "intel", "0x1002": "amd"}
    placement = {
        "intel": DevicePlacement({"gpu.intel.com/i915": 1}, {"intel.feature.node.kubernetes.io/gpu": "true"}),
        "amd": DevicePlacement({"amd.com/gpu": 1}, {"feature.node.kubernetes.io/pci-0300_1002.present": "true"}),
    }
    diagnoses = [
        (VA_INIT_FAILED, "VA-API initialisation failed ({1}): the VA driver for this GPU is missing or wrong "
                         "(Intel Gen8+ needs iHD, older Intel i965, AMD the Mesa radeonsi driver; "
                         "set LIBVA_DRIVER_NAME)"),
    ]

    def driver_name(self, description: str) -> str:
        # Mesa calls itself "Mesa Gallium driver"; on AMD GPUs that is radeonsi, the name LIBVA_DRIVER_NAME takes
        if "Mesa" in description:
            return "radeonsi (Mesa)" if "radeon" in description.lower() or "AMD" in description else "Mesa"
        return super().driver_name(description)

    def enumerate_devices(self) -> list[Device]:
        devices = []
        for device, can_encode in self.va_devices():
            if not device.problem:
                for codec in CODECS:
                    if codec not in can_encode:
                        device.encode[codec] = f"the {device.driver} driver lists no {codec} encode entrypoint"
            devices.append(device)
        return devices

    def no_device_reason(self) -> str:
        return "no Intel or AMD render node in /dev/dri (no GPU, or not passed into the container)"

    def device_args(self, device: Device) -> list[str]:
        return ["-init_hw_device", f"vaapi=va:{device.node}", "-filter_hw_device", "va"]

    def upload_filter(self) -> str:
        return "format=nv12,hwupload"

    def quality_args(self, codec: str, quality: str) -> list[str]:
        return ["-c:v", self.encoders[codec], "-rc_mode", "CQP", "-qp", str(QP[quality])]
