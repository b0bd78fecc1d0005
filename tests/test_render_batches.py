"""Render batches: several segments in one ffmpeg process, split into one checked file each.

Sources whose every frame says where it comes from (its brightness steps with the frame number)
make a frame rendered from the wrong place, or a segment one frame long or short, visible.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
from pathlib import Path

import numpy as np
import pytest

from montage_core.errors import ShardError
from montage_core.ffmpeg import ffmpeg_binary
from montage_core.interfaces import ProgressEvent, ShardTask
from montage_core.models import Cut, Timeline, Transition
from montage_core.procs import remove_orphaned_temps
from montage_core.specs import RenderBatchSpec, RenderSpec, ShardSpec
from montage_core.stages import render as render_stage

FPS, W, H = 25, 160, 96
STEP = 3  # brightness added per source frame: 16 + 3 n stays below 255 for 75 frames
SOFTWARE = {"name": "software", "input_args": [], "filter_suffix": "",
            "output_args": ["-c:v", "libx264", "-preset", "ultrafast", "-crf", "12", "-pix_fmt", "yuv420p"]}


def _stepped_clip(path: Path, offset: int) -> Path:
    """3 s whose frame n is flat grey at 16 + offset + 3 n (one source tells another by offset)."""
    subprocess.run([ffmpeg_binary(), "-v", "error", "-y", "-f", "lavfi", "-i", f"color=c=black:s={W}x{H}:r={FPS}:d=3",
                    "-vf", f"geq=lum='16+{offset}+{STEP}*N':cb=128:cr=128", "-c:v", "libx264", "-preset", "ultrafast",
                    "-qp", "0", "-g", "30", "-pix_fmt", "yuv420p", str(path)], check=True)
    return path


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("stepped")
    return [_stepped_clip(folder / f"source '{k}' $(x).mp4", k) for k in (0, 1, 2)]


def _timeline(sources: list[Path], *, crossfade: bool = True) -> Timeline:
    """Five cuts (0.56, 0.4, 0.8, 0.48, 0.64 s) from three sources, one entered by a dissolve."""
    lengths = [14, 10, 20, 12, 16]
    source_in = [0.4, 1.0, 0.2, 1.2, 0.6]
    cuts, start = [], 0
    for i, frames in enumerate(lengths):
        transition = Transition("crossfade", 0.16) if crossfade and i == 2 else Transition()
        cuts.append(Cut(i, str(sources[i % 3]), source_in[i], source_in[i] + frames / FPS, start / FPS,
                        (start + frames) / FPS, "build", f"s#{i}", transition=transition))
        start += frames
    return Timeline(music="/music.wav", duration=start / FPS, fps=FPS, width=W, height=H, style="dynamic", grade="",
                    seed=0, cuts=cuts, audio_fade_out=0.2)


def _specs(timeline: Timeline) -> list[RenderSpec]:
    specs = render_stage.segment_specs(timeline, [], "preview")
    for spec in specs:
        spec.encoders = [SOFTWARE]
    return specs


def _lumas(path: str | Path) -> np.ndarray:
    raw = subprocess.run([ffmpeg_binary(), "-v", "error", "-i", str(path), "-vf", "format=gray", "-f", "rawvideo",
                          "pipe:1"], check=True, capture_output=True).stdout
    return np.frombuffer(raw, np.uint8).reshape(-1, H, W).mean(axis=(1, 2))


def _batch(specs: list[RenderSpec]) -> tuple[dict, list[ProgressEvent]]:
    events: list[ProgressEvent] = []
    task = ShardTask("segment-0000-0004", "render", specs[0].main.source, RenderBatchSpec(segments=specs),
                     sum(s.frames for s in specs) / FPS)
    return render_stage.render_batch(task, events.append), events


def test_a_batch_renders_exactly_the_frames_of_its_segments_rendered_alone(sources: list[Path], montage_home: Path,
                                                                            tmp_path: Path) -> None:
    timeline = _timeline(sources)
    specs = _specs(timeline)
    assert specs[1].blend is not None and specs[-1].fade_out > 0  # a dissolve and the closing fade are in it
    result, events = _batch(specs)
    pieces = result["segments"]
    assert [p["index"] for p in pieces] == [s.index for s in specs]
    assert {p["encoder"] for p in pieces} == {"software"}
    assert events[-1].state == "done" and any(e.state == "running" and e.position > 0 for e in events)
    for spec, piece in zip(specs, pieces):
        together = _lumas(piece["path"])
        alone = tmp_path / f"alone-{spec.index}.mp4"
        subprocess.run(render_stage._segment_command(spec, SOFTWARE, str(alone)), check=True, capture_output=True)
        assert len(together) == spec.frames  # not one frame more or less
        assert np.abs(together - _lumas(alone)).max() <= 2.0, spec.index
        # and the frames are the planned ones: a hard cut's first frame is its source-in frame
        if not (spec.index and timeline.cuts[spec.index].transition.kind == "crossfade"):
            level = sources.index(Path(spec.main.source)) + STEP * round(spec.main.start * FPS)
            first = level * 255 / 219  # grey read back at full range
            assert abs(together[0] - first) <= 2.0, (spec.index, together[0], first)
        assert Path(piece["path"]).with_suffix(".json").is_file()  # recorded for reuse
    # nothing of the shared encode is left behind
    assert not list((montage_home / "cache" / "segments").glob(".batch.*"))

    again, _ = _batch(specs)
    assert {p["encoder"] for p in again["segments"]} == {"cached"}


def test_a_segment_that_fails_in_the_batch_is_rendered_alone_and_the_rest_kept(
        sources: list[Path], montage_home: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(sources[1].read_bytes()[:3000])  # the header, then nothing
    timeline = _timeline([sources[0], broken, sources[2]], crossfade=False)
    specs = _specs(timeline)
    caplog.set_level(logging.WARNING, logger="montage")
    with pytest.raises(ShardError) as failed:
        _batch(specs)
    assert "segment 1 (broken.mp4): every encoder failed" in str(failed.value)
    assert any("in one encode failed" in r.getMessage() and "rendering each alone" in r.getMessage()
               for r in caplog.records)
    # the segments of good sources were rendered alone, checked and kept: the next run reuses them
    for spec in specs:
        if Path(spec.main.source) != broken:
            cached = render_stage._segment_path(spec)
            assert render_stage.cached_segment_problem(cached, spec.frames) is None
            assert len(_lumas(cached)) == spec.frames


def test_batches_are_consecutive_and_spread_over_the_workers() -> None:
    def spec(index: int, frames: int) -> RenderSpec:
        return RenderSpec(index=index, frames=frames, fps=25.0, width=W, height=H, grade="", encoders=[], accel="auto",
                          quality="preview", main=render_stage.SegmentSource(source="/a.mp4", start=0.0))

    short = [spec(i, 25) for i in range(8)]  # 8 s
    assert [[s.index for s in g] for g in render_stage.batch_segments(short, 2)] == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert len(render_stage.batch_segments(short, 16)) == 8  # never an empty batch
    long = [spec(i, 50) for i in range(60)]  # 120 s: at most BATCH_SECONDS each
    groups = render_stage.batch_segments(long, 2)
    assert [s.index for g in groups for s in g] == list(range(60))
    assert len(groups) == 4 and all(sum(s.frames for s in g) / 25 <= render_stage.BATCH_SECONDS for g in groups)
    many = [spec(i, 5) for i in range(40)]  # 8 s in 40 cuts: at most BATCH_CUTS each
    assert max(len(g) for g in render_stage.batch_segments(many, 2)) <= render_stage.BATCH_CUTS


def test_a_batch_spec_crosses_to_a_worker_as_plain_versioned_data(sources: list[Path]) -> None:
    specs = _specs(_timeline(sources))
    batch = RenderBatchSpec(segments=specs, resolve_on_node=True)
    read = ShardSpec.from_json(json.loads(json.dumps(batch.to_json())))
    assert read == batch and read.function() == "montage_core.stages.render:render_batch"
    assert read.sources() == sorted({str(s) for s in sources})


def test_a_killed_batchs_temporary_folder_is_removed_by_the_next(tmp_path: Path) -> None:
    proc = subprocess.Popen(["true"])
    proc.wait()
    orphan = tmp_path / f".batch.{socket.gethostname()}-{proc.pid}.x1"
    (orphan / "deep").mkdir(parents=True)
    (orphan / "00000.mp4").write_bytes(b"partial")
    mine = tmp_path / f".batch.{socket.gethostname()}-{os.getpid()}.x2"
    mine.mkdir()
    remove_orphaned_temps(tmp_path, ".batch.")
    assert not orphan.exists() and mine.is_dir()


def test_a_piece_cut_short_is_found_by_reading_its_packets(sources: list[Path], tmp_path: Path) -> None:
    spec = _specs(_timeline(sources))[0]
    whole = tmp_path / "whole.mp4"
    subprocess.run(render_stage._segment_command(spec, SOFTWARE, str(whole)), check=True, capture_output=True)
    assert render_stage.check_rendered_segment(whole, spec.frames, decode=False) is None
    assert "the cut needs" in render_stage.check_rendered_segment(whole, spec.frames + 1, decode=False)
    short = tmp_path / "short.mp4"
    short.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])  # a full disk's half-written file
    assert render_stage.check_rendered_segment(short, spec.frames, decode=False)


def test_a_long_montage_of_many_segments_keeps_every_frame_when_joined(tmp_path: Path) -> None:
    """An MP4 says its length in milliseconds, rounded up (49 frames at 30 fps: 1.634 s, not
    1.6333 s). Joined by those lengths, 300 segments drift 200 ms late, and the montage's last
    frames fell past its end (a 10-minute montage of 393 cuts was refused, 17999 of 18000 frames);
    the join uses each segment's exact frame count instead."""
    from montage_core.models import SegmentResult
    from montage_core.testing import probe_frames

    segment = tmp_path / "segment.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=64x36:rate=30", "-frames:v", "49",
                    "-c:v", "libx264", "-g", "49", "-pix_fmt", "yuv420p", str(segment)], check=True)
    count = 300
    duration = count * 49 / 30
    sound = tmp_path / "sound.m4a"
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "anullsrc=r=48000:cl=stereo", "-t", f"{duration:.6f}",
                    "-c:a", "aac", str(sound)], check=True)
    timeline = Timeline(music=str(sound), duration=duration, fps=30.0, width=64, height=36, style="dynamic", grade="",
                        seed=0, cuts=[])
    out = tmp_path / "montage.mp4"
    render_stage.join_segments(timeline, [SegmentResult(i, str(segment), 49, "libx264") for i in range(count)], out,
                               sound)
    frames, seconds = probe_frames(out)
    assert frames == count * 49 and abs(seconds - duration) < 1 / 30  # and no drift in its timestamps
