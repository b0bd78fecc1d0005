"""VA-API encoders for Intel (iHD, i965) and AMD (Mesa radeonsi) GPUs on Linux."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from montage_core.hookspecs import hookimpl
from montage_core.hwaccel import CODECS, Device, HardwareAccelerator, va_render_devices

#: constant-QP per quality; CQP is the rate control every VA-API driver (Intel and AMD) supports
QP = {"preview": 30, "standard": 24, "high": 20}


class VaapiAccelerator(HardwareAccelerator):
    name = "vaapi"
    description = "VA-API on Intel (iHD/i965) and AMD (Mesa) GPUs"
    priority = 20
    encoders = {"h264": "h264_vaapi", "hevc": "hevc_vaapi", "av1": "av1_vaapi"}
    hwaccel = "vaapi"
    k8s_resources = {"intel": "gpu.intel.com/i915", "amd": "amd.com/gpu"}
    node_labels = {"intel": {"gpu.intel.com/device-id.0300-present": "true"},
                   "amd": {"feature.node.kubernetes.io/pci-0300_1002.present": "true"}}

    def enumerate_devices(self) -> list[Device]:
        devices = []
        for device, can_encode in va_render_devices(self.system, {"intel", "amd"}):
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


@hookimpl
def montage_register_accelerators(register: Callable[[Any], None]) -> None:
    register(VaapiAccelerator())
