"""VA-API probing replayed from outputs captured on real machines (tests/fixtures/hw/SOURCES.md)."""

from __future__ import annotations

from pathlib import Path

import pytest
from montage_hwaccel_vaapi import VaapiAccelerator

from montage_core.accel import encoder_chain
from montage_core.testing import RecordedSystem, fixture_text

HW = Path(__file__).resolve().parents[3] / "tests" / "fixtures" / "hw"
DEBIAN = HW / "debian-ffmpeg-5.1-no-gpu"
INTEL, AMD = "0x8086", "0x1002"


def machine(vainfo: dict[str, str], *, vendors: dict[str, str] | None = None, encode: tuple[int, str] = (0, ""),
            decode: tuple[int, str] = (0, ""), uid: int = 0, gids: set[int] | None = None,
            node_mode: int = 0o660, extra: list | None = None) -> RecordedSystem:
    """A recorded host: render nodes with their PCI vendor, vainfo per node, ffmpeg's answers."""
    vendors = vendors or {node: INTEL for node in vainfo}
    commands = [(("vainfo", "--display", "drm", "--device", node), (0 if "Driver version" in text else 1, text))
                for node, text in vainfo.items()]
    commands += extra or []
    commands += [
        (("ffmpeg", "-hide_banner", "-encoders"), (0, fixture_text(DEBIAN / "encoders.txt"))),
        (("ffmpeg", "-hide_banner", "-hwaccels"), (0, fixture_text(DEBIAN / "hwaccels.txt"))),
        (("ffmpeg", "*libx264"), (0, "")),  # the software-encoded sample for the decode test
        (("ffmpeg", "*-hwaccel"), decode),
        (("ffmpeg", "*-init_hw_device"), encode),
    ]
    files = {f"/sys/class/drm/{Path(n).name}/device/vendor": v for n, v in vendors.items()}
    nodes = {node: (node_mode, 0, 109) for node in vendors}
    return RecordedSystem(commands, files=files, nodes=nodes, uid=uid, gids=gids)


def test_intel_ihd_works_and_is_preferred_over_software() -> None:
    accel = VaapiAccelerator(machine({"/dev/dri/renderD128": fixture_text(HW / "vainfo_intel_ihd.txt")}))
    probe = accel.probe("ffmpeg")
    assert probe.available and probe.device == "/dev/dri/renderD128"
    device = probe.devices[0]
    assert (device["driver"], device["driver_version"]) == ("iHD", "22.3.1")
    assert device["encode"]["h264"] == "" and device["encode"]["hevc"] == ""
    assert "av1" in device["encode"] and device["encode"]["av1"]  # with a reason why not
    assert device["decode"]["h264"] == "" and probe.decode
    args = accel.encode_args("h264", "high", probe)
    assert args[:2] == ["-c:v", "h264_vaapi"] and "-qp" in args
    assert accel.input_args(probe) == ["-init_hw_device", "vaapi=va:/dev/dri/renderD128", "-filter_hw_device", "va"]
    assert accel.filter_suffix(probe) == "format=nv12,hwupload"


def test_chain_puts_a_working_vaapi_first(monkeypatch: pytest.MonkeyPatch, pm) -> None:
    from montage_core import accel as accel_module

    vaapi = VaapiAccelerator(machine({"/dev/dri/renderD128": fixture_text(HW / "vainfo_intel_ihd.txt")}))
    software = pm.accelerators.get("software")
    chain = encoder_chain([software, vaapi], "auto", refresh=True)
    assert [a.name for a, _ in chain] == ["vaapi", "software"]
    assert [a.name for a, _ in encoder_chain([software, vaapi], "vaapi")] == ["vaapi", "software"]
    assert accel_module.analysis_decoder([software, vaapi], {a.name: p for a, p in chain})[0] == "vaapi"


def test_intel_i965_driver_is_named() -> None:
    probe = VaapiAccelerator(machine({"/dev/dri/renderD128": fixture_text(HW / "vainfo_intel_i965.txt")})).probe("ffmpeg")
    device = probe.devices[0]
    assert (device["driver"], device["driver_version"]) == ("i965", "2.4.1")
    assert "Bay Trail" in device["product"]


def test_amd_mesa_every_node_enumerated() -> None:
    system = machine({"/dev/dri/renderD128": fixture_text(HW / "vainfo_intel_ihd.txt"),
                      "/dev/dri/renderD129": fixture_text(HW / "vainfo_amd_mesa.txt")},
                     vendors={"/dev/dri/renderD128": INTEL, "/dev/dri/renderD129": AMD})
    probe = VaapiAccelerator(system).probe("ffmpeg")
    amd = [d for d in probe.devices if d["node"] == "/dev/dri/renderD129"][0]
    assert amd["vendor"] == "amd" and amd["driver"] == "radeonsi (Mesa)" and amd["driver_version"] == "26.1.5"
    assert amd["product"] == "AMD Radeon 780M Graphics"
    assert len(probe.devices) == 2


def test_amd_without_h264_encode_is_unavailable_with_the_reason() -> None:
    text = fixture_text(HW / "vainfo_amd_mesa_no_h264.txt")
    probe = VaapiAccelerator(machine({"/dev/dri/renderD128": text}, vendors={"/dev/dri/renderD128": AMD})).probe("ffmpeg")
    assert not probe.available
    assert "lists no h264 encode entrypoint" in probe.reason


def test_low_power_only_encoders_get_low_power_mode() -> None:
    text = fixture_text(HW / "vainfo_intel_ihd_lp_only.txt")
    accel = VaapiAccelerator(machine({"/dev/dri/renderD128": text}))
    probe = accel.probe("ffmpeg")
    assert probe.available
    assert accel.encode_args("h264", "standard", probe)[-2:] == ["-low_power", "1"]


def test_permission_denied_names_the_group_to_join() -> None:
    system = machine({"/dev/dri/renderD128": fixture_text(HW / "vainfo_permission_denied.txt")}, uid=1000,
                     gids={1000})
    probe = VaapiAccelerator(system).probe("ffmpeg")
    assert not probe.available
    problem = probe.devices[0]["problem"]
    assert problem.startswith("permission denied on /dev/dri/renderD128")
    assert "--group-add 109" in problem and "usermod -aG" in problem
    assert not [c for c in system.calls if c[0] == "vainfo"]  # no point running it


def test_member_of_the_group_gets_through() -> None:
    system = machine({"/dev/dri/renderD128": fixture_text(HW / "vainfo_intel_ihd.txt")}, uid=1000, gids={1000, 109})
    assert VaapiAccelerator(system).probe("ffmpeg").available


@pytest.mark.parametrize("fixture,expected", [
    ("vainfo_no_va_driver.txt", "vaInitialize failed"),
    ("vainfo_permission_denied.txt", "Failed to open the given device!"),
])
def test_vainfo_failure_skips_the_device(fixture: str, expected: str) -> None:
    probe = VaapiAccelerator(machine({"/dev/dri/renderD128": fixture_text(HW / fixture)})).probe("ffmpeg")
    assert not probe.available and expected in probe.devices[0]["problem"]


def test_without_vainfo_ffmpeg_verbose_init_names_the_driver() -> None:
    system = machine({}, vendors={"/dev/dri/renderD128": INTEL}, extra=[
        (("vainfo",), (127, "vainfo: command not found")),
        (("ffmpeg", "-hide_banner", "-v", "verbose"), (0, fixture_text(HW / "ffmpeg_vaapi_verbose_init.txt"))),
    ])
    probe = VaapiAccelerator(system).probe("ffmpeg")
    device = probe.devices[0]
    assert device["driver"] == "iHD" and device["driver_version"]
    assert probe.available


@pytest.mark.parametrize("fixture,reason", [
    ("ffmpeg_vaapi_wrong_driver.txt", "VA-API initialisation failed (unknown libva error): the VA driver"),
    ("ffmpeg_vaapi_permission_denied.txt", "could not open the render node (permission denied"),
    ("ffmpeg_vaapi_no_va_display.txt", "could not open the VA-API display on this device"),
    ("debian-ffmpeg-5.1-no-gpu/h264_vaapi_encode.txt", "could not open the VA-API display on this device"),
])
def test_failing_test_encode_gives_the_diagnosis(fixture: str, reason: str) -> None:
    system = machine({"/dev/dri/renderD128": fixture_text(HW / "vainfo_intel_ihd.txt")},
                     encode=(1, fixture_text(HW / fixture)))
    probe = VaapiAccelerator(system).probe("ffmpeg")
    assert not probe.available
    assert probe.devices[0]["encode"]["h264"].startswith(reason)
    assert probe.reason.startswith(f"/dev/dri/renderD128: {reason}")


def test_this_machine_has_no_vaapi_device() -> None:
    probe = VaapiAccelerator().probe("ffmpeg")
    if Path("/dev/dri").exists():
        pytest.skip("this machine has /dev/dri")
    assert not probe.available and probe.reason.startswith("no Intel or AMD render node")


@pytest.mark.parametrize("description,name", [
    ("Intel iHD driver for Intel(R) Gen Graphics - 22.3.1 ()", "iHD"),  # libva's "<vendor> <name> driver"
    ("Intel i965 driver for Intel(R) Bay Trail - 2.4.1", "i965"),
    ("Mesa Gallium driver 26.1.5 for AMD Radeon 780M Graphics (radeonsi, phoenix)", "radeonsi (Mesa)"),
    ("Mesa Gallium driver 23.0.0 for llvmpipe", "Mesa"),
    ("VDPAU backend for VA-API - 0.7.4", "VDPAU backend for VA-API - 0.7.4"),  # no " driver": the whole text
])
def test_driver_names(description: str, name: str) -> None:
    assert VaapiAccelerator().driver_name(description) == name


def test_a_va_init_failure_names_the_drivers_these_gpus_need(pm) -> None:
    """The VA-API plugin adds its GPUs' drivers to the core's vendor-neutral VA-API message."""
    from montage_core.hwaccel import diagnose

    output = fixture_text(HW / "ffmpeg_vaapi_wrong_driver.txt")
    neutral = diagnose(output)  # pm: the VA-API plugin is not installed
    assert neutral.startswith("VA-API initialisation failed (unknown libva error)") and "iHD" not in neutral
    hinted = diagnose(output, VaapiAccelerator())
    assert "Intel Gen8+ needs iHD, older Intel i965, AMD the Mesa radeonsi driver" in hinted
