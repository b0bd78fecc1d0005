"""Reframing a clip of another aspect: a 16:9 clip with a known moving subject into a 9:16 montage."""

from __future__ import annotations

import json
import logging
import subprocess
from pathlib import Path

import numpy as np
import pytest

from montage_core import reframe
from montage_core.analysis.analyze import analyze_clip
from montage_core.ffmpeg import ffmpeg_binary, probe_media
from montage_core.models import TIMELINE_VERSION, Cut, MediaInfo, Timeline
from montage_core.reframe import MAX_SPEED, reframe_timeline, value_at
from montage_core.specs import RenderSpec, SegmentSource
from montage_core.stages import render as render_stage
from montage_core.stages.export import to_otio

SRC_W, SRC_H, FPS, SECONDS = 640, 360, 25, 4.0
OUT_W, OUT_H = 360, 640
BOX = 60
SOFTWARE = {"name": "software", "input_args": [], "filter_suffix": "",
            "output_args": ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"]}


def disc_left(t: float) -> float:
    """Where the white box's left edge is at ``t`` (source pixels): left → right over the clip."""
    return (SRC_W - BOX) * min(max(t / SECONDS, 0.0), 1.0)


def _moving_clip(path: Path, moving: bool = True, size: tuple[int, int] = (SRC_W, SRC_H)) -> Path:
    """A white box crossing (or standing at 3/4 of) a darker, statically textured background."""
    w, h = size
    x = f"(W-w)*min(t/{SECONDS:g}\\,1)" if moving else "(W-w)*3/4"
    subprocess.run([
        ffmpeg_binary(), "-hide_banner", "-loglevel", "error", "-y",
        "-f", "lavfi", "-i", f"color=c=0x383838:s={w}x{h}:r={FPS}:d={SECONDS}",
        "-f", "lavfi", "-i", f"color=c=white:s={BOX}x{BOX}:r={FPS}:d={SECONDS}",
        # noise without the temporal flag: the same texture in every frame, as a still background
        "-filter_complex", f"[0:v]noise=alls=25:allf=u,format=yuv420p[bg];[bg][1:v]overlay=x='{x}':y=(H-h)/2[v]",
        "-map", "[v]", "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-frames:v",
        str(int(SECONDS * FPS)), str(path)], check=True, capture_output=True)
    return path


def _timeline(source: str, cuts: int = 1, crop: list[list[float]] | None = None) -> Timeline:
    step = SECONDS / cuts
    return Timeline(music="/music.wav", duration=SECONDS, fps=FPS, width=OUT_W, height=OUT_H, style="dynamic",
                    grade="", seed=0, cuts=[Cut(i, source, i * step, (i + 1) * step, i * step, (i + 1) * step,
                                                "build", f"s#{i}", crop=crop) for i in range(cuts)])


@pytest.fixture(scope="module")
def moving(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _moving_clip(tmp_path_factory.mktemp("reframe") / "moving.mp4")


def _planned(pm, clip: Path, mode: str = "auto") -> Timeline:
    analysis = analyze_clip(clip, list(pm.analyzers), use_cache=False)
    assert analysis.track["fps"] == pytest.approx(5.0)
    assert len(analysis.track["subject_x"]) == 20
    return reframe_timeline(_timeline(str(clip)), mode, {str(clip): analysis.media}, {str(clip): analysis.track})


def test_auto_crop_keeps_the_moving_subject_in_view_and_pans_smoothly(pm, moving: Path) -> None:
    timeline = _planned(pm, moving)
    keys = timeline.cuts[0].crop
    assert keys is not None and len(keys) > 1  # it pans
    inside, xs = 0, []
    frames = int(SECONDS * FPS)
    for f in range(frames):
        x, _, w, _ = value_at(keys, f / FPS)
        xs.append(x)
        left, right = x * SRC_W, (x + w) * SRC_W
        inside += left <= disc_left(f / FPS) and disc_left(f / FPS) + BOX <= right
    assert inside >= 0.98 * frames
    assert max(abs(b - a) for a, b in zip(xs, xs[1:])) <= MAX_SPEED / FPS + 1e-6
    assert xs[-1] > xs[0] + 0.5  # from the left edge to the right one


def test_rendered_segment_shows_the_subject_in_every_frame(pm, moving: Path, tmp_path: Path) -> None:
    timeline = _planned(pm, moving)
    spec = render_stage.segment_specs(timeline, [], "preview")[0]
    spec.encoders, spec.fade_out = [SOFTWARE], 0  # the montage's closing fade would hide the box
    out = tmp_path / "segment.mp4"
    subprocess.run(render_stage._segment_command(spec, SOFTWARE, str(out)), check=True, capture_output=True)
    raw = subprocess.run([ffmpeg_binary(), "-v", "error", "-i", str(out), "-f", "rawvideo", "-pix_fmt", "gray",
                          "pipe:1"], check=True, capture_output=True).stdout
    frames = np.frombuffer(raw, np.uint8).reshape(-1, OUT_H, OUT_W)
    assert len(frames) == spec.frames
    # the box is 60 source pixels; in the 360-pixel-wide crop of a 360-high source it stays 60 wide
    seen = sum(int((frame > 200).sum() >= 0.8 * BOX * BOX) for frame in frames)
    assert seen >= 0.98 * len(frames)
    # no bars: the crop fills the frame (a letterboxed 16:9 picture leaves the top rows black)
    assert frames[:, :40].mean() > 20


def test_static_subject_gets_one_constant_crop(pm, tmp_path: Path) -> None:
    clip = _moving_clip(tmp_path / "still.mp4", moving=False)
    keys = _planned(pm, clip).cuts[0].crop
    assert keys is not None and len(keys) == 1
    x, _, w, _ = keys[0][1:]
    left = (SRC_W - BOX) * 3 / 4
    assert x * SRC_W <= left and left + BOX <= (x + w) * SRC_W


def test_jittery_estimate_inside_the_dead_zone_does_not_move_the_crop() -> None:
    rng = np.random.default_rng(1)
    track = {"fps": 5.0, "subject_x": list(0.1 + rng.uniform(-0.04, 0.04, 40)), "subject_y": [0.0] * 40}
    keys = reframe.follow_subject(track, 1.0, 7.0, (1920, 1080), (1080, 1920))
    assert len(keys) == 1 and keys[0][0] == 0.0


def test_centre_crops_the_middle(moving: Path) -> None:
    info = probe_media(str(moving))
    cut = reframe_timeline(_timeline(str(moving)), "centre", {str(moving): info}).cuts[0]
    [[t, x, y, w, h]] = cut.crop
    assert w == pytest.approx((9 / 16) / (16 / 9), abs=1e-4) and h == 1.0 and y == 0.0
    assert x == pytest.approx((1 - w) / 2, abs=1e-4)


def test_letterbox_and_matching_aspects_keep_todays_picture(moving: Path) -> None:
    info = probe_media(str(moving))
    assert all(c.crop is None for c in reframe_timeline(_timeline(str(moving)), "letterbox", {str(moving): info}).cuts)
    near = MediaInfo(str(moving), 1, SECONDS, True, False, 352, 640, FPS)  # within 5 % of 9:16
    assert reframe_timeline(_timeline(str(moving)), "auto", {str(moving): near}).cuts[0].crop is None
    # the letterbox filter is exactly the one every segment used before reframing
    assert render_stage.normalise_filter(OUT_W, OUT_H, FPS, 1.0) == (
        f"fps={FPS:g},scale={OUT_W}:{OUT_H}:force_original_aspect_ratio=decrease:flags=bicubic,"
        f"pad={OUT_W}:{OUT_H}:(ow-iw)/2:(oh-ih)/2:color=black,setsar=1,format=yuv420p,"
        "tpad=stop_mode=clone:stop_duration=1.000,setpts=PTS-STARTPTS")


def test_too_small_a_crop_letterboxes_with_one_warning(caplog: pytest.LogCaptureFixture) -> None:
    small = MediaInfo("/clips/tiny.mp4", 1, SECONDS, True, False, 128, 72, FPS)  # 72 px < 640 / 4
    big = MediaInfo("/clips/big.mp4", 1, SECONDS, True, False, 1920, 1080, FPS)
    timeline = _timeline(small.path, cuts=2)
    timeline.cuts[1].source = big.path
    timeline.cuts.append(Cut(2, small.path, 0, 1, SECONDS, SECONDS + 1, "outro", "s#2"))
    timeline.duration += 1
    with caplog.at_level(logging.WARNING, logger="montage.reframe"):
        cuts = reframe_timeline(timeline, "centre", {small.path: small, big.path: big}).cuts
    assert [c.crop is None for c in cuts] == [True, False, True]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "tiny.mp4" in warnings[0] and "letterbox" in warnings[0]


def test_timeline_round_trips_with_the_crop_and_reads_version_1(tmp_path: Path) -> None:
    keys = [[0.0, 0.1, 0.0, 0.31641, 1.0], [2.0, 0.6, 0.0, 0.31641, 1.0]]
    timeline = _timeline("/clips/a.mp4", crop=keys)
    data = json.loads(timeline.to_json())
    assert data["version"] == TIMELINE_VERSION == 2
    again = Timeline.from_dict(data)
    assert again == timeline and again.cuts[0].crop == keys
    old = json.loads(_timeline("/clips/a.mp4").to_json())
    old["version"] = 1
    for cut in old["cuts"]:
        del cut["crop"]
    assert Timeline.from_dict(old).cuts[0].crop is None
    for bad in ([[0.0, 0.9, 0.0, 0.31641, 1.0]], [[1.0, 0.1, 0, 0.3, 1], [0.5, 0.1, 0, 0.3, 1]],
                [[0, 0.1, 0, 0.3, 1], [1, 0.1, 0, 0.4, 1]], [[0, 0.1, 0]]):
        broken = json.loads(timeline.to_json())
        broken["cuts"][0]["crop"] = bad
        with pytest.raises(ValueError, match="crop"):
            Timeline.from_dict(broken)


def test_otio_carries_the_crop() -> None:
    keys = [[0.0, 0.1, 0.0, 0.31641, 1.0], [2.0, 0.6, 0.0, 0.31641, 1.0]]
    data = json.loads(to_otio(_timeline("/clips/a.mp4", crop=keys)))
    clips = [c for c in data["tracks"]["children"][0]["children"] if c["OTIO_SCHEMA"].startswith("Clip")]
    assert clips[0]["metadata"]["montage"]["crop"] == keys
    plain = json.loads(to_otio(_timeline("/clips/a.mp4")))
    assert "crop" not in plain["tracks"]["children"][0]["children"][0]["metadata"]["montage"]


def test_segment_cache_key_covers_the_crop(moving: Path) -> None:
    def key(crop: list[list[float]] | None) -> str:
        return render_stage._segment_key(RenderSpec(
            index=0, frames=25, fps=FPS, width=OUT_W, height=OUT_H, grade="", encoders=[SOFTWARE], accel="software",
            quality="preview", main=SegmentSource(source=str(moving), start=0.0, crop=crop)))

    a, b = [[0.0, 0.1, 0.0, 0.3, 1.0]], [[0.0, 0.2, 0.0, 0.3, 1.0]]
    assert len({key(None), key(a), key(b)}) == 3


def test_segment_keys_shift_into_a_dissolve() -> None:
    keys = [[0.0, 0.0, 0.0, 0.3, 1.0], [2.0, 0.6, 0.0, 0.3, 1.0]]
    shifted = reframe.shift_keys(keys, 1.0)
    assert shifted == [[0.0, 0.3, 0.0, 0.3, 1.0], [1.0, 0.6, 0.0, 0.3, 1.0]]
    assert reframe.shift_keys(keys, 3.0) == [[0.0, 0.6, 0.0, 0.3, 1.0]]


def test_subject_kernel_matches_its_twin_and_ignores_the_texture() -> None:
    from montage_core.analysis import kernels, reference

    rng = np.random.default_rng(4)
    frames = rng.integers(30, 90, (4, 36, 64), dtype=np.uint8)
    frames[:] = frames[0]  # a still texture
    frames[:, 12:22, 48:58] = 255  # a bright box right of centre
    before = rng.integers(30, 90, (36, 64), dtype=np.uint8)
    for previous in (np.empty((0, 0), np.uint8), before):
        out = np.empty((len(frames), 2))
        kernels.subject(frames, previous, out)
        np.testing.assert_allclose(out, reference.subject(frames, previous), atol=1e-12)
    # the plain luma centroid barely moves off centre; the subject's is on the box (x 52.5 of 64)
    assert out[1, 0] == pytest.approx((52.5 - 31.5) / 64, abs=0.02)


@pytest.mark.slow
def test_cli_plans_crops_warns_for_a_small_clip_and_renders_another_mode(media, montage_home, tmp_path: Path) -> None:
    from montage_core.testing import run_cli

    big, _ = media.clip([(0, 3.0), (1, 3.0)], size=(640, 360), name="reframe/big.mp4")
    small, _ = media.clip([(2, 3.0), (3, 3.0)], size=(160, 90), name="reframe/small.mp4")  # 90 px < 640 / 4
    music, _ = media.music(seconds=12)
    plan = tmp_path / "plan.json"
    proc = run_cli("plan", str(big), str(small), "--music", str(music), "-o", str(plan), "--resolution", "360x640",
                   "--duration", "6")
    assert proc.returncode == 0, proc.stderr
    warnings = [line for line in proc.stderr.splitlines() if "warning:" in line and "letterbox" in line]
    assert len(warnings) == 1 and "small.mp4" in warnings[0]
    cuts = json.loads(plan.read_text())["cuts"]
    assert {Path(c["source"]).name for c in cuts} == {"big.mp4", "small.mp4"}
    assert all((c["crop"] is not None) == c["source"].endswith("big.mp4") for c in cuts)
    out = tmp_path / "centre.mp4"
    proc = run_cli("render", str(plan), "-o", str(out), "--reframe", "centre", "--quality", "preview")
    assert proc.returncode == 0, proc.stderr
    rendered = json.loads((tmp_path / "centre.timeline.json").read_text())["cuts"]
    assert all(c["crop"] is None or c["crop"][0][1] == pytest.approx((1 - c["crop"][0][3]) / 2, abs=1e-4)
               for c in rendered)
    assert sum(c["crop"] is not None for c in rendered) == sum(c["crop"] is not None for c in cuts)


@pytest.mark.slow
def test_one_run_renders_every_format_from_one_plan(media, montage_home, tmp_path: Path) -> None:
    from montage_core.testing import probe_frames, run_cli

    clip, _ = media.clip([(0, 3.0), (1, 3.0), (4, 3.0)], size=(640, 360), name="formats/wide clip.mp4")
    music, _ = media.music(seconds=12)
    out = tmp_path / "my montage.mp4"
    proc = run_cli("run", str(clip), "--music", str(music), "-o", str(out), "--resolution", "640x360",
                   "--format", "9:16,1:1,16:9", "--duration", "6", "--quality", "preview")
    assert proc.returncode == 0, proc.stderr
    shapes = {out: (640, 360), tmp_path / "my montage-360x640.mp4": (360, 640),
              tmp_path / "my montage-360x360.mp4": (360, 360)}
    assert sorted(p.name for p in tmp_path.glob("*.mp4")) == sorted(p.name for p in shapes)
    timelines = {}
    for path, (width, height) in shapes.items():
        info = probe_media(path)
        assert (info.width, info.height) == (width, height), path
        timelines[path] = json.loads(path.with_suffix(".timeline.json").read_text())
    frames = {probe_frames(path) for path in shapes}
    assert len(frames) == 1  # the same length to the frame
    main = timelines[out]["cuts"]
    for path in shapes:  # one plan: the same footage on the same frames in every shape
        cuts = timelines[path]["cuts"]
        assert [(c["source_in"], c["start"], c["end"]) for c in cuts] == [(c["source_in"], c["start"], c["end"])
                                                                          for c in main]
    assert all(c["crop"] is None for c in main)  # 16:9 into 16:9
    for path in shapes:
        if path != out:  # a 16:9 clip in a vertical or square frame is cropped, never letterboxed
            assert all(c["crop"] for c in timelines[path]["cuts"]), path

    bad = run_cli("run", str(clip), "--music", str(music), "-o", str(tmp_path / "x.mp4"), "--format", "9:sixteen")
    assert bad.returncode != 0 and "--format '9:sixteen' is neither an aspect ratio" in bad.stderr
    assert not (tmp_path / "x.mp4").exists()
