"""QSV probing replayed from outputs captured on real machines."""

from __future__ import annotations

from pathlib import Path

import pytest
from montage_hwaccel_qsv import QsvAccelerator

from montage_core.testing import RecordedSystem, fixture_text

HW = Path(__file__).resolve().parents[3] / "tests" / "fixtures" / "hw"
DEBIAN = HW / "debian-ffmpeg-5.1-no-gpu"


def machine(vainfo: str, *, vendor: str = "0x8086", encode: tuple[int, str] = (0, "")) -> RecordedSystem:
    return RecordedSystem([
        (("vainfo", "--display", "drm", "--device", "/dev/dri/renderD128"), (0, vainfo)),
        (("ffmpeg", "-hide_banner", "-encoders"), (0, fixture_text(DEBIAN / "encoders.txt"))),
        (("ffmpeg", "-hide_banner", "-hwaccels"), (0, fixture_text(DEBIAN / "hwaccels.txt"))),
        (("ffmpeg", "*libx264"), (0, "")),
        (("ffmpeg", "*-hwaccel"), (0, "")),
        (("ffmpeg", "*-init_hw_device"), encode),
    ], files={"/sys/class/drm/renderD128/device/vendor": vendor}, nodes={"/dev/dri/renderD128": (0o660, 0, 109)})


def test_intel_ihd_encodes_through_the_vaapi_device() -> None:
    accel = QsvAccelerator(machine(fixture_text(HW / "vainfo_intel_ihd.txt")))
    probe = accel.probe("ffmpeg")
    assert probe.available and probe.encoders == {"h264": "h264_qsv", "hevc": "hevc_qsv"}
    assert accel.input_args(probe) == ["-init_hw_device", "vaapi=va:/dev/dri/renderD128", "-init_hw_device",
                                       "qsv=qs@va", "-filter_hw_device", "qs"]
    assert accel.encode_args("h264", "high", probe) == ["-c:v", "h264_qsv", "-preset", "veryslow",
                                                        "-global_quality", "20"]


def test_i965_node_is_skipped_with_the_fix() -> None:
    probe = QsvAccelerator(machine(fixture_text(HW / "vainfo_intel_i965.txt"))).probe("ffmpeg")
    assert not probe.available
    assert "QSV needs Intel's iHD driver; this node runs i965" in probe.devices[0]["problem"]


@pytest.mark.parametrize("fixture", ["ffmpeg_qsv_init_failed.txt", "debian-ffmpeg-5.1-no-gpu/h264_qsv_encode.txt"])
def test_session_failure_is_explained(fixture: str) -> None:
    probe = QsvAccelerator(machine(fixture_text(HW / "vainfo_intel_ihd.txt"),
                                   encode=(1, fixture_text(HW / fixture)))).probe("ffmpeg")
    assert not probe.available
    assert probe.devices[0]["encode"]["h264"].startswith("Intel Media SDK / oneVPL session failed")


def test_amd_gpus_are_not_qsv_devices() -> None:
    probe = QsvAccelerator(machine(fixture_text(HW / "vainfo_amd_mesa.txt"), vendor="0x1002")).probe("ffmpeg")
    assert not probe.available and probe.reason.startswith("no Intel render node")


def test_only_intel_render_nodes_and_only_intel_placement() -> None:
    assert QsvAccelerator.pci_vendors == {"0x8086": "intel"} and QsvAccelerator.placement.keys() == {"intel"}
    assert QsvAccelerator.placement["intel"].resources == {"gpu.intel.com/i915": 1}
