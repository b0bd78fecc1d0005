"""The decode pass on generated clips with known answers, and the content-addressed cache."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from montage_core.analysis.analyze import analyze_clip
from montage_core.errors import InputError
from montage_core.jobstore import JobStore
from montage_core.stages import analyze_clips, probe_clips
from montage_core.testing import MediaFactory


@pytest.mark.parametrize("shots", [
    [(0, 2.0), (1, 1.5), (3, 2.0), (2, 1.0)],
    [(4, 1.2), (5, 0.8), (6, 2.0), (7, 1.6), (0, 1.0)],
])
def test_cuts_at_known_frames_all_found_none_extra(pm, media: MediaFactory, shots) -> None:
    clip, cuts = media.clip(shots)
    analysis = analyze_clip(clip, list(pm.analyzers), use_cache=False)
    found = [round(s.start * analysis.analysis_fps) for s in analysis.shots[1:]]
    assert found == cuts
    assert analysis.frame_count == sum(round(d * 25) for _, d in shots)
    for shot in analysis.shots:
        assert set(shot.features) >= {"cut_score", "motion", "sharpness", "brightness", "cog_x", "cog_y"}
        assert 0 < shot.features["brightness"] < 1


def _ffmpeg_children() -> list[int]:
    """This process's ffmpeg children, read from /proc (every thread's list of children)."""
    pids = [int(pid) for task in Path("/proc/self/task").iterdir()
            for pid in (task / "children").read_text().split()]
    return [pid for pid in pids if Path(f"/proc/{pid}/comm").read_text().strip() == "ffmpeg"]


def test_ffmpeg_decodes_while_the_kernels_load(pm, media: MediaFactory) -> None:
    """The kernels load (about a second in a fresh worker) after ffmpeg is started, not before."""
    from montage_core.analysis.analyze import ANALYSIS_WIDTH, analysis_size, decode_luma
    from montage_core.ffmpeg import probe_media

    clip, _ = media.clip([(0, 2.0)])
    info = probe_media(str(clip))
    decoding: list[list[int]] = []
    frames = sum(len(batch) for batch in decode_luma(str(clip), info, analysis_size(info, ANALYSIS_WIDTH),
                                                     while_starting=lambda: decoding.append(_ffmpeg_children())))
    assert frames == 50 and len(decoding) == 1 and len(decoding[0]) == 1
    assert _ffmpeg_children() == []  # and it is gone once the frames are read


@pytest.mark.parametrize("frames,usable", [(1, False), (6, False), (7, True)])
def test_a_clip_shorter_than_a_shot_is_refused(pm, tmp_path: Path, frames: int, usable: bool) -> None:
    import subprocess

    clip = tmp_path / f"{frames}.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc=size=320x180:rate=25",
                    "-frames:v", str(frames), "-pix_fmt", "yuv420p", str(clip)], check=True)
    if usable:  # 7 frames = 0.28 s: past the shortest shot, so analyzed as one
        assert len(analyze_clip(clip, list(pm.analyzers), use_cache=False).shots) == 1
        return
    plural = "" if frames == 1 else "s"
    with pytest.raises(InputError, match=rf"^{re.escape(str(clip))}: too short to use \({frames} frame{plural}, "
                                         rf"{frames / 25:.2f} s; shots need at least 0.25 s\)$"):
        analyze_clip(clip, list(pm.analyzers), use_cache=False)


def test_portrait_clip_keeps_its_aspect(pm, media: MediaFactory) -> None:
    clip, _ = media.clip([(0, 1.0)], size=(180, 320))
    analysis = analyze_clip(clip, list(pm.analyzers), use_cache=False)
    assert (analysis.media.width, analysis.media.height) == (180, 320)


def test_second_run_decodes_nothing(pm, media: MediaFactory, tmp_path: Path) -> None:
    clip, _ = media.clip([(0, 1.0), (1, 1.0)])
    copy = tmp_path / "same bytes, other name.mp4"
    shutil.copy(clip, copy)
    store = JobStore()
    backend = pm.new_backend("local")
    try:
        first, _ = analyze_clips(probe_clips([str(clip)])[0], pm, backend, store=store, job_id="first")
        second, _ = analyze_clips(probe_clips([str(clip), str(copy)])[0], pm, backend, store=store, job_id="second")
    finally:
        backend.close()
    assert [s["clip"] for s in store.shards("first")] == [str(clip)]
    assert store.shards("second") == []  # no shard at all: nothing was decoded
    assert second[0].shots == first[0].shots
    assert second[1].media.path == str(copy) and all(s.clip == str(copy) for s in second[1].shots)


def test_changed_analyzer_version_invalidates_cache(pm, media: MediaFactory, monkeypatch) -> None:
    from montage_core.builtin.analyzers import MotionAnalyzer

    clip, _ = media.clip([(2, 1.0)])
    analyze_clip(clip, list(pm.analyzers))
    monkeypatch.setattr(MotionAnalyzer, "version", "2")
    decoded: list[float] = []
    analyze_clip(clip, list(pm.analyzers), progress=lambda pos, total: decoded.append(pos))
    assert decoded, "a new analyzer version must decode again"


def test_audio_only_file_is_refused_by_name(pm, media: MediaFactory) -> None:
    music, _ = media.music(seconds=2)
    with pytest.raises(InputError) as err:
        analyze_clip(music, list(pm.analyzers))
    assert str(err.value) == f"{music}: has no video stream (audio-only file)"


@pytest.mark.parametrize("shard_seconds", ["0.6", "1.2"])
def test_time_range_shards_give_the_whole_clip_answer(pm, media: MediaFactory, monkeypatch, shard_seconds) -> None:
    """A long clip cut into time ranges (cuts right on range boundaries too) analyzes exactly as one piece."""
    clip, cuts = media.clip([(0, 1.2), (1, 0.6), (2, 1.2), (3, 1.0), (4, 0.8)])
    whole = analyze_clip(clip, list(pm.analyzers), use_cache=False)
    monkeypatch.setenv("MONTAGE_SHARD_SECONDS", shard_seconds)
    store = JobStore()
    backend = pm.new_backend("local")
    try:
        sharded, failures = analyze_clips(probe_clips([str(clip)])[0], pm, backend, store=store, job_id="ranges")
    finally:
        backend.close()
    assert not failures
    shards = store.shards("ranges")
    assert len(shards) >= 4 and all(s["shard_id"].startswith("analysis-0000-r") for s in shards)
    assert [round(s.start * 25) for s in sharded[0].shots[1:]] == cuts
    assert sharded[0].frame_count == whole.frame_count
    for a, b in zip(sharded[0].shots, whole.shots):
        assert (a.start, a.end) == (b.start, b.end)
        assert a.features == pytest.approx(b.features, rel=1e-9, abs=1e-12)


def test_cache_command_shows_and_clears(pm, media: MediaFactory, montage_home: Path) -> None:
    from montage_core.testing import run_cli

    clip, _ = media.clip([(0, 1.0)])
    analyze_clip(clip, list(pm.analyzers))
    own_jit = {"NUMBA_CACHE_DIR": ""}  # montage's own JIT folder in this test's cache, not the shared one
    shown = run_cli("cache", env=own_jit).stdout
    assert shown.startswith("analysis        1 files")
    jit_folder = Path(shown.split("(")[-1].split(")")[0])
    assert jit_folder.parent.parent == montage_home / "cache", shown
    jit_folder.mkdir(parents=True)
    (jit_folder / "kernels.cut_score-84.py311.nbi").write_bytes(b"index")
    (jit_folder / "kernels.cut_score-84.py311.1.nbc").write_bytes(b"code")
    cleared = run_cli("cache", "--clear", env=own_jit).stdout.splitlines()
    assert cleared == [f"removed 2 compiled kernel files from {jit_folder}",
                       f"removed 1 cached files from {montage_home / 'cache'}"]
    assert run_cli("cache", env=own_jit).stdout.startswith("analysis        0 files")
    assert not list(jit_folder.glob("*.nb?"))


def test_cache_clear_jit_keeps_analyses(pm, media: MediaFactory, montage_home: Path) -> None:
    from montage_core.testing import run_cli

    clip, _ = media.clip([(0, 1.0)])
    analyze_clip(clip, list(pm.analyzers))
    proc = run_cli("cache", "--clear-jit", env={"NUMBA_CACHE_DIR": str(montage_home / "jit")})
    assert proc.returncode == 0 and proc.stdout.startswith(f"removed 0 compiled kernel files from {montage_home / 'jit'}")
    assert run_cli("cache").stdout.startswith("analysis        1 files")


def test_a_long_clip_is_shared_between_idle_workers() -> None:
    from montage_core.models import MediaInfo
    from montage_core.stages.analyze import MIN_RANGE_SECONDS, shard_ranges

    def ranges(seconds: float, pieces: int) -> list[tuple[int, int | None]]:
        return shard_ranges(MediaInfo("/c.mp4", 1, seconds, True, False, 1920, 1080, 25.0, int(seconds * 25)), pieces)

    assert ranges(318.0, 1) == [(0, None)]  # alone on one worker: one pass
    assert ranges(318.0, 2) == [(0, 3975), (3975, None)]  # two workers, one clip: half each
    assert len(ranges(1000.0, 4)) == 4
    assert ranges(2 * MIN_RANGE_SECONDS * 0.7, 8) == [(0, None)]  # too short to be worth splitting
