"""Bad input: one clear line naming the file, other clips still used, nothing half-written left."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from montage_core.engine import run_shards
from montage_core.interfaces import ShardTask
from montage_core.jobstore import JobStore
from montage_core.testing import MediaFactory, run_cli

RUN = ["--resolution", "320x180", "--fps", "25", "--quality", "preview"]


@pytest.fixture
def bad_clips(media: MediaFactory, tmp_path: Path) -> dict[str, Path]:
    folder = tmp_path / "clips"
    folder.mkdir()
    good, _ = media.clip([(0, 2.0), (1, 2.0), (2, 2.0)], name=str(folder / "good one.mp4"))
    good2, _ = media.clip([(3, 2.0), (4, 2.0)], name=str(folder / "good two.mp4"))
    empty = folder / "empty.mp4"
    empty.write_bytes(b"")
    text = folder / "notes.mp4"
    text.write_text("this is not a video\n")
    # An mp4 whose index (moov) sits at the end, cut in half: ffmpeg cannot open it.
    whole = tmp_path / "whole.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(good), "-c", "copy", str(whole)], check=True)
    truncated = folder / "truncated.mp4"
    truncated.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    music, _ = media.music(seconds=3)
    audio_only = folder / "audio only.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(music), "-c:a", "aac", str(audio_only)], check=True)
    return {"good": good, "good2": good2, "empty": empty, "text": text, "truncated": truncated,
            "audio_only": audio_only, "missing": folder / "missing.mp4"}


@pytest.mark.slow
def test_bad_clips_are_skipped_good_ones_used(bad_clips: dict[str, Path], media: MediaFactory,
                                              tmp_path: Path) -> None:
    music, _ = media.music(seconds=6)
    out = tmp_path / "out.mp4"
    proc = run_cli("run", *map(str, bad_clips.values()), "--music", str(music), "-o", str(out), *RUN)
    assert proc.returncode == 0, proc.stderr
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("warning: skipping")]
    expected = {
        "empty": "empty file (0 bytes)",
        "text": "not a media file ffmpeg can read",
        "truncated": "not a media file ffmpeg can read",
        "audio_only": "has no video stream (audio-only file)",
        "missing": "no such file",
    }
    assert len(warnings) == len(expected), proc.stderr
    for key, problem in expected.items():
        assert any(str(bad_clips[key]) in w and problem in w for w in warnings), (key, proc.stderr)
    assert "Traceback" not in proc.stderr
    assert out.exists()
    used = {Path(line.split("* SOURCE FILE: ")[1]).name for line in out.with_suffix(".edl").read_text().splitlines()
            if line.startswith("* SOURCE FILE: ")}
    assert used == {"good one.mp4", "good two.mp4", music.name}  # the clips used, and the music's event


def _short_clip(path: Path, frames: int) -> Path:
    """A real H.264 clip of ``frames`` frames at 25 fps."""
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc=size=320x180:rate=25",
                    "-frames:v", str(frames), "-pix_fmt", "yuv420p", str(path)], check=True)
    return path


def test_a_clip_too_short_to_use_is_named(media: MediaFactory, tmp_path: Path) -> None:
    good, _ = media.clip([(0, 2.0), (1, 2.0)], name="short/good.mp4")
    one = _short_clip(tmp_path / "one frame.mp4", 1)
    music, _ = media.music(seconds=3)
    out = tmp_path / "out.mp4"
    proc = run_cli("run", str(good), str(one), "--music", str(music), "-o", str(out), *RUN)
    assert proc.returncode == 0, proc.stderr
    named = [line for line in proc.stderr.splitlines() if line.startswith("warning:") and one.name in line]
    assert named == [f"warning: skipping {one}: too short to use (1 frame, 0.04 s; shots need at least 0.25 s)"], \
        proc.stderr
    assert "Traceback" not in proc.stderr
    used = {line.split("* SOURCE FILE: ")[1] for line in out.with_suffix(".edl").read_text().splitlines()
            if line.startswith("* SOURCE FILE: ")}
    assert used == {str(good), str(music)}  # the clip used, and the music's event


def _assert_clean_failure(proc: subprocess.CompletedProcess[str], message: str, out: Path | None = None) -> None:
    assert proc.returncode != 0
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0], proc.stderr
    assert "Traceback" not in proc.stderr
    if out is not None:
        assert not out.exists()
        assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}")]


def test_all_clips_bad_is_an_error(bad_clips: dict[str, Path], media: MediaFactory, tmp_path: Path) -> None:
    music, _ = media.music(seconds=4)
    out = tmp_path / "out.mp4"
    proc = run_cli("run", str(bad_clips["empty"]), str(bad_clips["text"]), "--music", str(music), "-o", str(out), *RUN)
    _assert_clean_failure(proc, "none of the 2 clips is usable", out)
    job = JobStore().jobs()[0]
    assert job["state"] == "failed" and "none of the 2 clips" in job["error"]


@pytest.mark.parametrize("which,problem", [
    ("video_only", "has no audio stream"),
    ("empty", "empty file (0 bytes)"),
    ("text", "not a media file ffmpeg can read"),
])
def test_unusable_music_is_one_line(which: str, problem: str, bad_clips: dict[str, Path], tmp_path: Path) -> None:
    music = bad_clips["good"] if which == "video_only" else bad_clips[which]
    out = tmp_path / "out.mp4"
    proc = run_cli("run", str(bad_clips["good"]), "--music", str(music), "-o", str(out), *RUN)
    _assert_clean_failure(proc, f"{music}: {problem}", out)


@pytest.mark.parametrize("option,value,message", [
    # installed plugins may add names to these lists; the built-in ones must be there
    ("--style", "wes", r"unknown style 'wes' \(known: documentary, dynamic, minimalist, mtv[,)]"),
    ("--backend", "slurm", r"unknown backend 'slurm' \(known: (.+, )?local[,)]"),
    ("--accel", "cuda", r"unknown accelerator 'cuda' \(known: auto, .*software"),
    ("--planner", "random", r"unknown planner 'random' \(known: (.+, )?story_arc[,)]"),
    ("--set", "tempo=3", r"style 'dynamic' has no parameter 'tempo'"),
])
def test_unknown_choices_name_the_known_ones(option: str, value: str, message: str, bad_clips: dict[str, Path],
                                             media: MediaFactory, tmp_path: Path) -> None:
    music, _ = media.music(seconds=4)
    proc = run_cli("run", str(bad_clips["good"]), "--music", str(music), "-o", str(tmp_path / "o.mp4"),
                   option, value, *RUN)
    import re

    assert re.search(message, proc.stderr), proc.stderr
    _assert_clean_failure(proc, "", tmp_path / "o.mp4")
    assert proc.returncode == 2


@pytest.mark.parametrize("target,message", [
    ("no such folder/out.mp4", "output folder does not exist"),
    ("/proc/out.mp4", "output folder is not writable"),
])
def test_unwritable_output_fails_before_any_work(target: str, message: str, bad_clips: dict[str, Path],
                                                 media: MediaFactory, tmp_path: Path) -> None:
    music, _ = media.music(seconds=4)
    out = Path(target) if target.startswith("/") else tmp_path / target
    proc = run_cli("run", str(bad_clips["good"]), "--music", str(music), "-o", str(out), *RUN)
    _assert_clean_failure(proc, message)
    assert JobStore().jobs() == []  # refused before a job was even created


def test_render_of_a_missing_timeline(tmp_path: Path) -> None:
    proc = run_cli("render", str(tmp_path / "nope.json"))
    _assert_clean_failure(proc, f"{tmp_path / 'nope.json'}: no such file")


# --------------------------------------------------------------------------- worker death
def _die_once(task: ShardTask, emit) -> str:  # type: ignore[no-untyped-def]
    """Shard function: the first attempt's worker is SIGKILLed (as the OOM killer would)."""
    marker = Path(task.payload["marker"])
    if task.payload.get("die") and not marker.exists():
        marker.write_text("died")
        os.kill(os.getpid(), signal.SIGKILL)
    if task.payload.get("bad"):
        from montage_core.errors import InputError

        raise InputError(task.clip, "corrupt")
    return f"{task.id} ok"


def test_a_killed_worker_costs_only_a_retry(pm, tmp_path: Path) -> None:
    tasks = [ShardTask(f"s{i}", "analysis", f"clip{i}.mp4",
                       {"marker": str(tmp_path / f"m{i}"), "die": i == 1, "bad": i == 2}) for i in range(4)]
    store = JobStore()
    backend = pm.new_backend("local")
    try:
        outcomes = run_shards(backend, _die_once, tasks, on_event=lambda e: None, store=store, job_id="j")
    finally:
        backend.close()
    assert outcomes["s1"].ok and outcomes["s1"].result == "s1 ok"
    assert not outcomes["s2"].ok and outcomes["s2"].error == "clip2.mp4: corrupt" and not outcomes["s2"].transient
    assert outcomes["s0"].ok and outcomes["s3"].ok
    shards = {s["shard_id"]: s for s in store.shards("j")}
    assert shards["s1"]["attempts"] >= 2 and shards["s1"]["state"] == "done"
    # A permanent failure is not retried. (It may have had one extra try when the dying worker
    # broke the process pool while it was in flight; that attempt ended as transient.)
    assert shards["s2"]["state"] == "failed" and shards["s2"]["error"] == "clip2.mp4: corrupt"
    assert shards["s2"]["attempts"] <= 2


def test_errors_survive_the_trip_from_a_worker() -> None:
    import pickle

    from montage_core.errors import InputError, ShardError, UnknownChoiceError

    for exc in (InputError("/a b.mp4", "corrupt"), ShardError("boom", transient=True),
                UnknownChoiceError("style", "wes", ["dynamic"])):
        back = pickle.loads(pickle.dumps(exc))
        assert type(back) is type(exc) and str(back) == str(exc)
    assert pickle.loads(pickle.dumps(ShardError("x", transient=True))).transient


def test_broll_without_a_script_is_refused_before_work(bad_clips: dict[str, Path], media: MediaFactory,
                                                       tmp_path: Path) -> None:
    music, _ = media.music(seconds=4)
    proc = run_cli("run", str(bad_clips["good"]), "--music", str(music), "-o", str(tmp_path / "o.mp4"),
                   "--planner", "broll", *RUN)
    _assert_clean_failure(proc, "--planner broll needs --script FILE", tmp_path / "o.mp4")
    assert JobStore().jobs() == []


def test_every_problem_is_reported_at_once_before_any_work(bad_clips: dict[str, Path], tmp_path: Path) -> None:
    start = time.monotonic()
    proc = run_cli("run", str(bad_clips["good"]), "--music", str(tmp_path / "no song.mp3"), "-o",
                   str(tmp_path / "out.mp4"), "--style", "dynamc", "--fps", "0", "--duration", "-5")
    elapsed = time.monotonic() - start
    assert proc.returncode == 2, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 4, proc.stderr
    assert errors[0].startswith("error: unknown style 'dynamc' (known: ") and "dynamic" in errors[0]
    assert errors[0].endswith("; did you mean 'dynamic'?")
    assert errors[1:] == ["error: --fps 0 is out of range (0 < fps <= 240)",
                          "error: --duration -5 must be a positive number of seconds",
                          f"error: {tmp_path / 'no song.mp3'}: no such file"]
    assert "Traceback" not in proc.stderr
    assert elapsed < 10  # a fresh interpreter and plugin loading; no analysis, no workers
    assert not JobStore().jobs()


@pytest.mark.parametrize("duration", ["nan", "inf"])
def test_a_duration_that_is_not_a_number_of_seconds_is_refused_before_any_work(
        duration: str, bad_clips: dict[str, Path], media: MediaFactory, tmp_path: Path) -> None:
    music, _ = media.music(seconds=3)  # nan passed every comparison and failed late as "audio is too short"
    proc = run_cli("plan", str(bad_clips["good"]), "--music", str(music), "-o", str(tmp_path / "t.json"),
                   "--duration", duration)
    assert proc.returncode == 2, proc.stderr
    assert f"error: --duration {duration} must be a positive number of seconds" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "t.json").exists()


def test_no_clip_at_all_is_one_error(tmp_path: Path, media: MediaFactory) -> None:
    music, _ = media.music(seconds=3)
    proc = run_cli("run", str(tmp_path / "nowhere"), "--music", str(music), "-o", str(tmp_path / "o.mp4"))
    assert proc.returncode == 2
    assert f"error: no clips found ({tmp_path / 'nowhere'}: no such file or folder)" in proc.stderr
