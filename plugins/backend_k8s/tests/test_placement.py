"""GPU-vendor placement: per-vendor Jobs with the vendor's resource and node affinity, and each node
resolving its own encoder from its own device (probes replayed from real machines' outputs)."""

from __future__ import annotations

from pathlib import Path

import pytest
from montage_hwaccel_nvenc import NvencAccelerator
from montage_hwaccel_qsv import QsvAccelerator
from montage_hwaccel_vaapi import VaapiAccelerator

from montage_backend_k8s.jobs import job_manifest, manifest_dict
from montage_backend_k8s.node import node_encoders
from montage_backend_k8s.placement import place_tasks, vendor_accelerators
from montage_core.interfaces import Accelerator, DevicePlacement, ShardTask
from montage_core.testing import RecordedSystem, fixture_text

HW = Path(__file__).resolve().parents[3] / "tests" / "fixtures" / "hw"
DEBIAN = HW / "debian-ffmpeg-5.1-no-gpu"
FFMPEG = [(("ffmpeg", "-hide_banner", "-encoders"), (0, fixture_text(DEBIAN / "encoders.txt"))),
          (("ffmpeg", "-hide_banner", "-hwaccels"), (0, fixture_text(DEBIAN / "hwaccels.txt"))),
          (("ffmpeg", "*libx264"), (0, "")), (("ffmpeg", "*-hwaccel"), (0, ""))]


def amd_node() -> RecordedSystem:
    """A node with an AMD Radeon 780M (Mesa radeonsi) and no NVIDIA driver."""
    return RecordedSystem([
        (("vainfo", "--display", "drm", "--device", "/dev/dri/renderD128"),
         (0, fixture_text(HW / "vainfo_amd_mesa.txt"))),
        (("nvidia-smi",), (127, "nvidia-smi: not found")),
        *FFMPEG, (("ffmpeg", "*-init_hw_device"), (0, ""))],
        files={"/sys/class/drm/renderD128/device/vendor": "0x1002"}, nodes={"/dev/dri/renderD128": (0o666, 0, 109)})


def nvidia_node() -> RecordedSystem:
    """A node with two NVIDIA GPUs (driver 570) and no render node."""
    return RecordedSystem([
        (("nvidia-smi", "*--format=csv"), (0, fixture_text(HW / "nvidia_smi_query.csv"))),
        *FFMPEG, (("ffmpeg", "*-gpu"), (0, ""))], nodes={"/dev/nvidia0": (0o666, 0, 0)})


def accelerators(pm, system: RecordedSystem) -> list:  # type: ignore[no-untyped-def]
    return [pm.accelerators.get("software"), VaapiAccelerator(system), NvencAccelerator(system),
            QsvAccelerator(system)]


def render_tasks(accel: str, n: int = 6) -> list[ShardTask]:
    from montage_core.specs import RenderSpec, SegmentSource

    return [ShardTask(f"segment-{i:04d}", "render", f"/data/c{i}.mp4",
                      RenderSpec(index=i, frames=25, fps=25.0, width=320, height=180, grade="", encoders=[],
                                 accel=accel, quality="standard", main=SegmentSource(source=f"/data/c{i}.mp4", start=0)),
                      1.0)
            for i in range(n)]


def _manifest(placement) -> dict:  # type: ignore[no-untyped-def]
    return manifest_dict(job_manifest(
        name="j", namespace="montage", image="reg/montage@sha256:1", pvc="montage-data", mount_path="/data",
        stage="render", shards=len(placement.tasks), shard_file="/data/jobs/j/shards.json",
        accelerator=placement.accelerator, vendor=placement.vendor, require_accelerator=placement.required))


def test_auto_in_a_mixed_amd_nvidia_cluster_splits_render_across_vendors(pm, montage_home) -> None:
    accels = accelerators(pm, amd_node())
    placements = place_tasks(render_tasks("auto"), {"gpu_vendors": "amd,nvidia"}, set(), accels)
    assert [(p.vendor, p.accelerator.name, p.accel_choice, len(p.tasks)) for p in placements] == [
        ("amd", "vaapi", "vaapi", 3), ("nvidia", "nvenc", "nvenc", 3)]
    assert all(p.required and p.fallback_to_cpu for p in placements)
    amd, nvidia = (_manifest(p)["spec"]["template"]["spec"] for p in placements)
    assert amd["containers"][0]["resources"]["limits"] == {"memory": "2Gi", "amd.com/gpu": "1"}
    assert nvidia["containers"][0]["resources"]["limits"] == {"memory": "2Gi", "nvidia.com/gpu": "1"}
    required = amd["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert required["nodeSelectorTerms"][0]["matchExpressions"] == [
        {"key": k, "operator": "In", "values": [v]} for k, v in VaapiAccelerator.placement["amd"].node_labels.items()]
    nv_terms = nvidia["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert nv_terms["nodeSelectorTerms"][0]["matchExpressions"][0]["key"] == "nvidia.com/gpu.present"


def test_auto_runs_on_cpu_nodes_without_gpus_or_after_gpus_stayed_busy(pm, montage_home) -> None:
    accels = accelerators(pm, amd_node())
    (cpu,) = place_tasks(render_tasks("auto"), {"gpu_vendors": ""}, set(), accels)
    assert cpu.vendor is None and not cpu.required and cpu.accel_choice == "auto"
    assert "limits" in _manifest(cpu)["spec"]["template"]["spec"]["containers"][0]["resources"]
    assert _manifest(cpu)["spec"]["template"]["spec"].get("affinity") is None
    # shards whose GPU pods found no node within the pending timeout go to a CPU Job next time
    placements = place_tasks(render_tasks("auto", 4), {"gpu_vendors": "nvidia"}, {"segment-0001"}, accels)
    assert [(p.vendor, [t.id for t in p.tasks]) for p in placements] == [
        ("nvidia", ["segment-0000", "segment-0002", "segment-0003"]), (None, ["segment-0001"])]


def test_named_accelerator_goes_to_its_vendors_only(pm, montage_home) -> None:
    accels = accelerators(pm, amd_node())
    (nv,) = place_tasks(render_tasks("nvenc"), {"gpu_vendors": "amd,nvidia"}, set(), accels)
    assert (nv.vendor, nv.required, nv.fallback_to_cpu) == ("nvidia", True, False)
    (amd,) = place_tasks(render_tasks("vaapi"), {"gpu_vendors": "amd,nvidia"}, set(), accels)
    assert amd.vendor == "amd"  # VA-API could use Intel too, but this cluster has none
    from montage_core.models import MediaInfo
    from montage_core.specs import AnalysisSpec

    info = MediaInfo("/data/a.mp4", 1, 1.0, True, False, 320, 180, 25.0)
    analysis = [ShardTask("analysis-0000", "analysis", "/data/a.mp4", AnalysisSpec(media=info, digest="d", analyzers={}))]
    (anywhere,) = place_tasks(analysis, {"gpu_vendors": "amd,nvidia"}, set(), accels)
    assert anywhere.vendor is None and anywhere.accel_choice is None
    with pytest.raises(Exception, match=r"unknown accelerator 'nvidai' \(known: auto, nvenc, qsv, software, vaapi\)"):
        place_tasks(render_tasks("nvidai"), {}, set(), accels)


def test_each_vendors_node_resolves_its_own_encoder(pm, montage_home, monkeypatch: pytest.MonkeyPatch) -> None:
    amd = node_encoders(accelerators(pm, amd_node()), "auto", "standard")
    assert [e["name"] for e in amd] == ["vaapi", "software"]
    assert amd[0]["output_args"][:2] == ["-c:v", "h264_vaapi"]
    assert amd[0]["input_args"] == ["-init_hw_device", "vaapi=va:/dev/dri/renderD128", "-filter_hw_device", "va"]
    monkeypatch.setenv("MONTAGE_CACHE_DIR", str(montage_home / "nvidia-node"))  # another host's probe cache
    nvidia = node_encoders(accelerators(pm, nvidia_node()), "auto", "standard")
    assert [e["name"] for e in nvidia] == ["nvenc", "software"]
    assert nvidia[0]["output_args"][:2] == ["-c:v", "h264_nvenc"] and nvidia[0]["output_args"][-2:] == ["-gpu", "0"]


def test_a_node_without_the_device_falls_back_to_software(pm, montage_home, caplog) -> None:
    import logging

    with caplog.at_level(logging.WARNING, logger="montage.k8s.node"):
        entries = node_encoders(accelerators(pm, amd_node()), "nvenc", "standard")
    assert [e["name"] for e in entries] == ["software"]
    assert "accelerator 'nvenc' is not available" in caplog.text and "encoding in software" in caplog.text


def test_any_accelerators_neutral_placement_becomes_limits_and_affinity() -> None:
    """The backend reads only ``Accelerator.placement``: a plugin of any vendor schedules the same way."""
    class Fpga(Accelerator):
        name, priority = "fpga", 5
        placement = {"xilinx": DevicePlacement({"xilinx.com/fpga": 2}, {"fpga.example/model": "u250"})}

    fpga = Fpga()
    assert vendor_accelerators([fpga], ["xilinx", "amd"]) == {"xilinx": fpga}
    pod = manifest_dict(job_manifest(
        name="j", namespace="montage", image="reg/montage@sha256:1", pvc="montage-data", mount_path="/data",
        stage="render", shards=2, shard_file="/data/jobs/j/shards.json", accelerator=fpga, vendor="xilinx",
        require_accelerator=True))["spec"]["template"]["spec"]
    assert pod["containers"][0]["resources"]["limits"] == {"memory": "2Gi", "xilinx.com/fpga": "2"}
    required = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert required["nodeSelectorTerms"][0]["matchExpressions"] == [
        {"key": "fpga.example/model", "operator": "In", "values": ["u250"]}]
