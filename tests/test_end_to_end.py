"""Real montages: generated media → `montage run` → a video whose every frame decodes, cuts on beats."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from montage_core.analysis.analyze import analyze_clip
from montage_core.jobstore import JobStore
from montage_core.models import Timeline
from montage_core.testing import MediaFactory, probe_frames, run_cli

pytestmark = pytest.mark.slow

#: awkward names on purpose: spaces, quotes, a command substitution, unicode
NAMES = ["beach day.mp4", "it's \"quoted\".mp4", "$(touch pwned).mp4", "café – ünïcode.mp4", "portrait.mp4"]


@pytest.fixture
def clips_dir(media: MediaFactory, tmp_path: Path) -> Path:
    folder = tmp_path / "my clips"
    shots = [[(0, 1.5), (1, 1.5), (2, 1.5)], [(3, 2.0), (4, 2.0)], [(5, 1.5), (6, 2.0)], [(7, 2.5), (1, 1.5)],
             [(2, 2.0), (0, 2.0)]]
    for name, clip_shots in zip(NAMES, shots):
        size = (180, 320) if name == "portrait.mp4" else (320, 180)
        media.clip(clip_shots, size=size, name=str(folder / name))
    return folder


def _run(clips: list[str], music: Path, out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return run_cli("run", *clips, "--music", str(music), "-o", str(out), "--resolution", "320x180", "--fps", "25",
                   "--quality", "preview", *extra, env={"MONTAGE_WORKERS": "2"})


def test_run_renders_a_complete_montage(clips_dir: Path, media: MediaFactory, tmp_path: Path, pm) -> None:
    music, beats = media.music(seconds=12)
    out = tmp_path / "out put" / "my montage.mp4"
    out.parent.mkdir()
    proc = _run([str(clips_dir)], music, out)
    assert proc.returncode == 0, proc.stderr
    assert not (Path.cwd() / "pwned").exists() and not (clips_dir / "pwned").exists()
    timeline = Timeline.load(out.with_suffix(".timeline.json"))
    assert {Path(c.source).name for c in timeline.cuts} <= set(NAMES)
    analysed = {Path(s["clip"]).name: s["state"] for s in JobStore().shards(JobStore().jobs()[0]["id"])
                if s["stage"] == "analysis"}
    assert analysed == {name: "done" for name in NAMES}  # every awkward name went through ffmpeg

    frames, duration = probe_frames(out)
    assert frames == timeline.frame_count == 12 * 25
    assert abs(duration - 12.0) <= 1 / 25
    errors = subprocess.run(["ffmpeg", "-v", "error", "-i", str(out), "-f", "null", "-"], capture_output=True,
                            text=True).stderr
    assert errors == ""

    # Cuts found in the picture itself all sit on the planned cut frames, and those on the beats.
    rendered = analyze_clip(out, list(pm.analyzers), use_cache=False)
    seen = [round(s.start * 25) for s in rendered.shots[1:]]
    planned = [timeline.frame(c.start) for c in timeline.cuts[1:]]
    assert set(seen) <= set(planned) and len(seen) >= 0.8 * len(planned), (seen, planned)
    for frame in planned:
        assert min(abs(frame / 25 - b) for b in beats) <= 1 / 25

    # The picture fades to black with the music at the end.
    tail = subprocess.run(["ffmpeg", "-v", "error", "-sseof", "-0.12", "-i", str(out), "-frames:v", "1",
                           "-vf", "scale=32:18,format=gray", "-f", "rawvideo", "-"], capture_output=True).stdout
    assert len(tail) == 32 * 18 and sum(tail) / len(tail) < 30, sum(tail) / max(1, len(tail))

    # Exports an editor can open.
    import opentimelineio as otio

    otl = otio.adapters.read_from_file(str(out.with_suffix(".otio")))
    assert len(list(otl.video_tracks()[0].find_clips())) == len(timeline.cuts)
    edl = out.with_suffix(".edl").read_text()
    assert edl.startswith("TITLE:") and edl.count("* FROM CLIP NAME:") == len(timeline.cuts) + 1  # + the music

    job = JobStore().jobs()[0]
    assert job["state"] == "done" and json.loads(job["result"])["video"] == str(out)
    assert not list(out.parent.glob("*.part"))


def test_second_run_reuses_analysis_and_segments(clips_dir: Path, media: MediaFactory, tmp_path: Path) -> None:
    music, _ = media.music(seconds=8)
    first = _run([str(clips_dir)], music, tmp_path / "a.mp4", "--seed", "3")
    assert first.returncode == 0, first.stderr
    second = _run([str(clips_dir)], music, tmp_path / "b.mp4", "--seed", "3")
    assert second.returncode == 0, second.stderr
    store = JobStore()
    latest = store.jobs()[0]["id"]
    stages = [s["stage"] for s in store.shards(latest)]
    assert "analysis" not in stages  # nothing decoded
    assert Path(tmp_path / "a.timeline.json").read_text() == Path(tmp_path / "b.timeline.json").read_text()
    assert "encoder: cached" in second.stdout  # finished segments reused


def test_crossfade_style_and_rerender_from_timeline(clips_dir: Path, media: MediaFactory, tmp_path: Path) -> None:
    music, _ = media.music(seconds=10)
    out = tmp_path / "doc.mp4"
    proc = _run([str(clips_dir)], music, out, "--style", "documentary")
    assert proc.returncode == 0, proc.stderr
    timeline = Timeline.load(tmp_path / "doc.timeline.json")
    assert any(c.transition.kind == "crossfade" for c in timeline.cuts)
    assert probe_frames(out)[0] == timeline.frame_count
    again = run_cli("render", str(tmp_path / "doc.timeline.json"), "-o", str(tmp_path / "again.mp4"),
                    "--quality", "high")
    assert again.returncode == 0, again.stderr
    assert probe_frames(tmp_path / "again.mp4")[0] == timeline.frame_count
    assert "edl" in (tmp_path / "again.edl").name


def test_demo_command(tmp_path: Path) -> None:
    proc = run_cli("demo", "-o", str(tmp_path / "demo"), "--resolution", "320x180", "--quality", "preview",
                   env={"MONTAGE_WORKERS": "2"})
    assert proc.returncode == 0, proc.stderr
    frames, duration = probe_frames(tmp_path / "demo" / "montage.mp4")
    assert frames == 24 * 30 and abs(duration - 24) <= 1 / 30  # the default format: 1920x1080 at 30 fps
