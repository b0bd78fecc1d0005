"""NVENC probing replayed from outputs captured on real machines, and a real mid-render fallback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from montage_hwaccel_nvenc import NvencAccelerator

from montage_core.accel import analysis_decoder, encoder_chain
from montage_core.testing import MediaFactory, RecordedSystem, fixture_text, probe_frames

HW = Path(__file__).resolve().parents[3] / "tests" / "fixtures" / "hw"
DEBIAN = HW / "debian-ffmpeg-5.1-no-gpu"
SMI_TWO_GPUS = fixture_text(HW / "nvidia_smi_query.csv")  # TITAN V (index 0), RTX 5880 Ada (index 1)


def machine(encode: tuple[int, str] = (0, ""), decode: tuple[int, str] = (0, ""),
            smi: tuple[int, str] = (0, SMI_TWO_GPUS), uid: int = 0, gids: set[int] | None = None) -> RecordedSystem:
    return RecordedSystem([
        (("nvidia-smi", "*--format=csv"), smi),
        (("ffmpeg", "-hide_banner", "-encoders"), (0, fixture_text(DEBIAN / "encoders.txt"))),
        (("ffmpeg", "-hide_banner", "-hwaccels"), (0, fixture_text(DEBIAN / "hwaccels.txt"))),
        (("ffmpeg", "*libx264"), (0, "")),
        (("ffmpeg", "*-hwaccel"), decode),
        (("ffmpeg", "*-gpu"), encode),
    ], nodes={"/dev/nvidia0": (0o666, 0, 0), "/dev/nvidia1": (0o660, 0, 44)}, uid=uid, gids=gids)


def test_every_gpu_listed_and_encodes_on_the_first_that_works() -> None:
    accel = NvencAccelerator(machine())
    probe = accel.probe("ffmpeg")
    assert probe.available and probe.device == "0"
    assert [(d["node"], d["product"], d["driver_version"]) for d in probe.devices] == [
        ("0", "NVIDIA TITAN V", "570.86.15"), ("1", "NVIDIA RTX 5880 Ada Generation", "570.86.15")]
    assert set(probe.encoders) == {"h264", "hevc"}  # Debian's ffmpeg 5.1 has no av1_nvenc
    assert probe.devices[0]["encode"]["av1"] == "this ffmpeg build has no av1_nvenc encoder"
    args = accel.encode_args("h264", "standard", probe)
    assert args[:2] == ["-c:v", "h264_nvenc"] and args[-2:] == ["-gpu", "0"] and "-cq" in args


def test_gpu_without_nvenc_is_skipped_but_still_decodes_for_analysis(pm) -> None:
    """H100/A100: NVDEC but no NVENC. Encoding falls to software; analysis decodes on the GPU."""
    accel = NvencAccelerator(machine(encode=(1, fixture_text(HW / "ffmpeg_nvenc_unsupported_device.txt"))))
    probe = accel.probe("ffmpeg")
    assert not probe.available
    assert "this GPU has no NVENC encoder" in probe.reason
    assert probe.decode and probe.device == "0"
    software = pm.accelerators.get("software")
    probes = {"nvenc": probe, "software": software.probe("ffmpeg")}
    assert analysis_decoder([software, accel], probes) == ("nvenc", ["-hwaccel", "cuda", "-hwaccel_device", "0"])


@pytest.mark.parametrize("fixture,reason", [
    ("ffmpeg_nvenc_api_mismatch.txt", "NVIDIA driver too old for this ffmpeg's NVENC: API 12.1 required, driver has 12.0"),
    ("ffmpeg_nvenc_api_mismatch_12_0.txt", "API 12.0 required, driver has 11.1"),
    ("ffmpeg_nvenc_no_libcuda.txt", "NVIDIA driver libraries not found (libcuda.so.1"),
    ("debian-ffmpeg-5.1-no-gpu/h264_nvenc_encode.txt", "NVIDIA driver libraries not found (libcuda.so.1"),
])
def test_known_failures_become_reasons(fixture: str, reason: str) -> None:
    probe = NvencAccelerator(machine(encode=(1, fixture_text(HW / fixture)))).probe("ffmpeg")
    assert not probe.available and reason in probe.devices[0]["encode"]["h264"]


def test_no_driver() -> None:
    probe = NvencAccelerator(machine(smi=(127, "nvidia-smi: command not found"))).probe("ffmpeg")
    assert not probe.available and probe.reason == "nvidia-smi not found: no NVIDIA driver on this host"


def test_unreadable_device_node_names_its_group() -> None:
    probe = NvencAccelerator(machine(uid=1000, gids={1000})).probe("ffmpeg")
    assert probe.available and probe.device == "0"  # /dev/nvidia0 is world-writable
    assert probe.devices[1]["problem"].startswith("permission denied on /dev/nvidia1")


def test_this_machine_without_a_gpu() -> None:
    import shutil

    if shutil.which("nvidia-smi"):
        pytest.skip("this machine has nvidia-smi")
    probe = NvencAccelerator().probe("ffmpeg")
    assert not probe.available and "no NVIDIA driver" in probe.reason


@pytest.mark.slow
def test_encoder_failing_mid_render_falls_back_to_software(pm, media: MediaFactory, tmp_path: Path) -> None:
    """The probe (replayed) says NVENC works; the real encode here fails; every segment still renders."""
    from montage_core.analysis.analyze import analyze_clip
    from montage_core.jobstore import JobStore
    from montage_core.music import analyze_music
    from montage_core.pipeline import plan_timeline
    from montage_core.stages import render_timeline

    nvenc = NvencAccelerator(machine())
    pm.register(type("Plugin", (), {"montage_register_accelerators": staticmethod(
        __import__("montage_core.hookspecs", fromlist=["hookimpl"]).hookimpl(lambda register: register(nvenc)))})(),
        "replayed_nvenc")
    assert [a.name for a, _ in encoder_chain(list(pm.accelerators), refresh=True)] == ["nvenc", "software"]
    clip, _ = media.clip([(0, 2.0), (1, 2.0), (2, 2.0)])
    music_path, _ = media.music(seconds=5)
    timeline = plan_timeline([analyze_clip(clip, list(pm.analyzers))], analyze_music(music_path), pm,
                             style="dynamic", planner="story_arc", width=320, height=180, fps=25, seed=1)
    out = tmp_path / "fallback.mp4"
    store = JobStore()
    backend = pm.new_backend("local")
    try:
        result = render_timeline(timeline, out, pm, backend, quality="preview", store=store, job_id="fallback")
    finally:
        backend.close()
    assert probe_frames(out)[0] == timeline.frame_count
    assert {s.encoder for s in result.segments} == {"software"}
    for segment in result.segments:
        assert len(segment.attempts) == 1 and segment.attempts[0].startswith("nvenc: ")
        assert "libcuda" in segment.attempts[0]
    # the job store says who made what (a render shard's result holds each of its segments)
    recorded = [r for s in store.shards("fallback") for r in json.loads(s["result"])["segments"]]
    assert sorted(r["index"] for r in recorded) == [s.index for s in result.segments]
    assert all(r["encoder"] == "software" and r["attempts"][0].startswith("nvenc: ") for r in recorded)


def test_the_renderer_finds_nvenc_failures_through_the_installed_plugin(pm) -> None:
    """The render worker passes only ffmpeg's output; the core knows no NVENC message of its own."""
    import montage_hwaccel_nvenc

    from montage_core.hwaccel import diagnose

    output = fixture_text(HW / "ffmpeg_nvenc_unsupported_device.txt")
    assert "NVENC" not in diagnose(output)  # only the built-in software accelerator is installed
    pm.register(montage_hwaccel_nvenc, "hwaccel_nvenc")
    assert diagnose(output) == "this GPU has no NVENC encoder (data-centre GPUs such as A100/H100 decode only)"


def test_placement_names_the_nvidia_device_for_cluster_schedulers() -> None:
    (nvidia,) = NvencAccelerator.placement.values()
    assert NvencAccelerator.placement.keys() == {"nvidia"}
    assert nvidia.resources == {"nvidia.com/gpu": 1} and nvidia.node_labels == {"nvidia.com/gpu.present": "true"}
