"""Dependable runs: JIT caches that cannot poison a run, no broken file shipped, no debris.

Everything here uses real processes, real ffmpeg and real Numba kernels.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from montage_core.engine import run_shards
from montage_core.interfaces import ShardTask
from montage_core.jobstore import JobStore
from montage_core.testing import MediaFactory, probe_frames, run_cli

FPS = 25


def _digest(path: Path) -> str:
    return hashlib.blake2b(path.read_bytes(), digest_size=16).hexdigest()


@pytest.fixture
def job_inputs(media: MediaFactory, tmp_path: Path) -> tuple[Path, Path]:
    folder = tmp_path / "clips"
    media.clip([(0, 1.5), (1, 1.5), (2, 1.5)], name=str(folder / "a b.mp4"))
    media.clip([(3, 2.0), (4, 2.0)], name=str(folder / "ç'd.mp4"))
    music, _ = media.music(seconds=8)
    return folder, music


def _run_args(clips: Path, music: Path, out: Path, *extra: str) -> list[str]:
    return ["run", str(clips), "--music", str(music), "-o", str(out), "--resolution", "320x180", "--fps", str(FPS),
            "--quality", "preview", *extra]


def _montage(*args: str, env: dict[str, str] | None = None, **popen: object) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "montage_core", *args], text=True,
                            env={**os.environ, **(env or {})}, **popen)  # type: ignore[call-overload]


def _marked_processes(mark: str) -> list[str]:
    """Processes (any parent) whose environment carries ``mark``: everything a command started."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            environ = Path(f"/proc/{entry}/environ").read_bytes()
            if f"MONTAGE_TEST_MARK={mark}".encode() in environ.split(b"\0"):
                state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
                if state != "Z":  # a zombie is gone already; only its parent has not looked
                    found.append(Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode())
        except OSError:
            continue
    return found


def _wait_until_gone(mark: str, seconds: float = 8.0) -> list[str]:
    deadline = time.monotonic() + seconds
    while (left := _marked_processes(mark)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left


# ----------------------------------------------------------------------------- output path safety
def test_output_equal_to_an_input_is_refused_before_any_work(job_inputs: tuple[Path, Path], tmp_path: Path) -> None:
    clips, music = job_inputs
    clip = clips / "a b.mp4"
    before = {p: _digest(p) for p in (clip, music)}
    link = tmp_path / "link.mp4"
    link.symlink_to(clip)
    for target, expected in ((clip, "is one of the inputs"), (music, "is one of the inputs"),
                             (link, "is one of the inputs"), (Path("/dev/null"), "is a character device")):
        start = time.monotonic()
        proc = run_cli(*_run_args(clips, music, target))
        assert proc.returncode != 0
        errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and expected in errors[0] and str(target) in errors[0], proc.stderr
        assert time.monotonic() - start < 20  # refused before analysis or music work
    assert {p: _digest(p) for p in before} == before
    assert Path("/dev/null").is_char_device()
    assert not JobStore().jobs()  # no job was even started


def test_render_refuses_to_replace_its_timeline(job_inputs: tuple[Path, Path], tmp_path: Path) -> None:
    timeline = tmp_path / "cut.json"
    timeline.write_text(json.dumps({"schema": "montage.timeline", "version": 1}))
    proc = run_cli("render", str(timeline), "-o", str(timeline))
    assert proc.returncode != 0
    assert timeline.read_text() == json.dumps({"schema": "montage.timeline", "version": 1})


# ----------------------------------------------------------------------------- cached segments
def _segments(home: Path) -> list[Path]:
    return sorted((home / "cache" / "segments").rglob("*.mp4"))


def test_damaged_cached_segments_are_rendered_again(job_inputs: tuple[Path, Path], tmp_path: Path,
                                                    montage_home: Path) -> None:
    clips, music = job_inputs
    first = tmp_path / "first.mp4"
    proc = run_cli(*_run_args(clips, music, first))
    assert proc.returncode == 0, proc.stderr
    segments = _segments(montage_home)
    assert len(segments) >= 4
    assert all(s.with_suffix(".json").is_file() for s in segments)
    truncated, garbled, unrecorded = segments[0], segments[1], segments[2]
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 2])  # what a full disk leaves
    # (half of it: a fixed size such as 4 KiB is no cut at all for a segment smaller than that)
    data = bytearray(garbled.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 64] = bytes(64)  # same size, other bytes
    garbled.write_bytes(bytes(data))
    unrecorded.with_suffix(".json").unlink()  # a segment whose check record never got written

    second = tmp_path / "second.mp4"
    proc = run_cli(*_run_args(clips, music, second))
    assert proc.returncode == 0, proc.stderr
    warnings = [line for line in proc.stderr.splitlines() if "is unusable" in line]
    assert all(line.startswith("warning: segment ") for line in warnings), proc.stderr
    # (two cuts may share one segment, and both may see it damaged)
    named = {Path(line.split("cached file ", 1)[1].split(" is unusable")[0]) for line in warnings}
    assert named == {truncated, garbled, unrecorded}, proc.stderr
    frames, _ = probe_frames(second)
    assert frames == 8 * FPS
    assert _digest(second) == _digest(first) or probe_frames(first)[0] == frames
    # The re-rendered segments are whole again and recorded.
    for segment in (truncated, garbled, unrecorded):
        record = json.loads(segment.with_suffix(".json").read_text())
        assert record["size"] == segment.stat().st_size


# ----------------------------------------------------------------------------- worker crashes
def _crash_once(task: ShardTask, emit: object) -> str:
    marker = Path(task.payload["marker"])
    if task.payload["crash"] == "always" or not marker.exists():
        marker.touch()
        os.kill(os.getpid(), signal.SIGSEGV)
    return f"{task.id} ok"


def _numba_threads(task: ShardTask, emit: object) -> int:
    import numba

    from montage_core.jit import use_thread_share

    # what the analysis decode pass does before its kernels run: beside a software decoder
    # (``quarter``) the kernels take a quarter of the share, beside a hardware one all of it
    use_thread_share(quarter=bool(task.payload.get("quarter")))
    return int(numba.get_num_threads())


def _worker_pid(task: ShardTask, emit: object) -> int:
    return os.getpid()


def test_a_shard_alone_on_idle_workers_gets_their_cores(pm) -> None:
    from montage_core.jit import thread_share

    cores = os.cpu_count() or 1
    assert (thread_share(8, 4, 1), thread_share(8, 4, 2), thread_share(8, 4, 9), thread_share(2, 4, 9)) == (8, 4, 2, 1)
    backend = pm.new_backend("local", workers=2)
    try:
        alone = run_shards(backend, _numba_threads, [ShardTask("s0", "analysis", "a.mp4", {})], on_event=lambda e: None)
        pair = run_shards(backend, _numba_threads, [ShardTask(f"s{i}", "analysis", f"{i}.mp4", {}) for i in range(2)],
                          on_event=lambda e: None)
    finally:
        backend.close()
    pool = int(os.environ.get("NUMBA_NUM_THREADS") or cores)  # Numba's own ceiling in the workers
    assert alone["s0"].result == min(pool, cores)
    assert [pair[f"s{i}"].result for i in range(2)] == [min(pool, max(1, cores // 2))] * 2


def test_kernels_beside_a_software_decoder_take_a_quarter_of_the_share(pm, monkeypatch) -> None:
    from montage_core.jit import SHARD_THREADS, use_thread_share

    import numba

    monkeypatch.setenv(SHARD_THREADS, "8")
    ceiling = numba.config.NUMBA_NUM_THREADS
    try:
        use_thread_share(quarter=True)
        assert numba.get_num_threads() == min(2, ceiling)
        monkeypatch.setenv(SHARD_THREADS, "3")
        use_thread_share(quarter=True)
        assert numba.get_num_threads() == 1  # never none
        use_thread_share()
        assert numba.get_num_threads() == min(3, ceiling)
    finally:
        numba.set_num_threads(ceiling)


def test_warming_for_one_shard_starts_one_worker_and_the_shard_runs_on_it(pm) -> None:
    """The workers warmed while the clips are probed are the ones the shards run on: no process
    more than the job has shards (the pool would start another for a shard submitted while a
    warm-up still counted as running)."""
    backend = pm.new_backend("local", workers=2)
    try:
        backend.warm(1)
        outcome = run_shards(backend, _worker_pid, [ShardTask("s0", "analysis", "a.mp4", {})],
                             on_event=lambda e: None)["s0"]
        pids = [p.pid for p in backend._processes()]
        assert outcome.ok and pids == [outcome.result]
    finally:
        backend.close()


def _poisoned_jit_cache(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    index = folder / "kernels.cut_score-84.py311.nbi"
    index.write_bytes(b"an index another process wrote half of")
    return index


def test_a_worker_crash_clears_the_jit_cache_and_retries_once(pm, tmp_path: Path, monkeypatch,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path / "jit"))
    index = _poisoned_jit_cache(tmp_path / "jit")
    tasks = [ShardTask("s0", "analysis", "a.mp4", {"marker": str(tmp_path / "m0"), "crash": "once"}),
             ShardTask("s1", "analysis", "b.mp4", {"marker": str(tmp_path / "m1"), "crash": "never"})]
    (tmp_path / "m1").touch()
    backend = pm.new_backend("local")
    try:
        outcomes = run_shards(backend, _crash_once, tasks, on_event=lambda e: None)
    finally:
        backend.close()
    assert outcomes["s0"].ok and outcomes["s1"].ok
    assert not index.exists()
    crash_lines = [r.getMessage() for r in caplog.records if "crashed" in r.getMessage()]
    assert crash_lines and crash_lines[0].startswith("analysis: a worker process crashed (SIGSEGV); cleared the JIT "
                                                     f"cache in {tmp_path / 'jit'}")


def test_a_worker_that_keeps_crashing_fails_with_what_to_do(pm, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path / "jit"))
    tasks = [ShardTask("s0", "render", "a.mp4", {"marker": str(tmp_path / "m0"), "crash": "always"})]
    backend = pm.new_backend("local")
    try:
        outcome = run_shards(backend, _crash_once, tasks, on_event=lambda e: None)["s0"]
    finally:
        backend.close()
    assert not outcome.ok and not outcome.transient
    assert outcome.error.startswith("render: a worker process crashed (SIGSEGV) again after the JIT cache was cleared")
    assert "montage cache --clear-jit" in outcome.error


def _segfault_first(marker: str) -> str:
    if not Path(marker).exists():
        Path(marker).touch()
        os.kill(os.getpid(), signal.SIGSEGV)
    return "beats"


def _segfault_always(marker: str) -> str:
    os.kill(os.getpid(), signal.SIGSEGV)
    return "never"


def test_a_crash_in_the_music_process_never_takes_the_coordinator(tmp_path: Path, monkeypatch) -> None:
    from montage_core.errors import MontageError
    from montage_core.isolated import IsolatedCall

    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path / "jit"))
    index = _poisoned_jit_cache(tmp_path / "jit")
    assert IsolatedCall(_segfault_first, (str(tmp_path / "m"),), "music analysis").result() == "beats"
    assert not index.exists()
    with pytest.raises(MontageError, match=r"music analysis: its process crashed \(SIGSEGV\) again .*"
                                           r"montage cache --clear-jit"):
        IsolatedCall(_segfault_always, (str(tmp_path / "m2"),), "music analysis").result()


# ----------------------------------------------------------------------------- JIT lock
_WARM_SCRIPT = """
import json, os, sys, time
from montage_core.jit import ensure_warm
log = sys.argv[1]
def warm():
    start = time.monotonic_ns()
    time.sleep(0.4)
    with open(log, "a") as out:
        out.write(json.dumps([os.getpid(), start, time.monotonic_ns()]) + "\\n")
ensure_warm("demo-set", [], warm, group="demo")
"""


def test_first_compilations_never_overlap(tmp_path: Path) -> None:
    log = tmp_path / "warm.log"
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "jit")}
    procs = [subprocess.Popen([sys.executable, "-c", _WARM_SCRIPT, str(log)], env=env) for _ in range(4)]
    assert [p.wait(timeout=60) for p in procs] == [0, 0, 0, 0]
    spans = sorted(json.loads(line)[1:] for line in log.read_text().splitlines())
    assert len(spans) == 4
    # The first one compiled alone; the others loaded after it finished (side by side is fine then).
    assert all(start >= spans[0][1] for start, _ in spans[1:])
    assert list((tmp_path / "jit").glob(".warm-demo-set-*"))


def test_the_jit_cache_is_montages_own_and_versioned(tmp_path: Path) -> None:
    env = {**os.environ, "MONTAGE_CACHE_DIR": str(tmp_path / "cache"), "NUMBA_CACHE_DIR": ""}
    script = ("from montage_core.jit import configure_jit_cache; import os; configure_jit_cache(); "
              "print(os.environ['NUMBA_CACHE_DIR'])")
    folder = Path(subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                                 check=True).stdout.strip())
    assert folder.parent == tmp_path / "cache" / "jit"
    assert folder.name.startswith("montage-") and "-numba-" in folder.name and f"-py3{sys.version_info.minor}" in folder.name
    user = {**env, "NUMBA_CACHE_DIR": str(tmp_path / "mine")}
    assert subprocess.run([sys.executable, "-c", script], env=user, capture_output=True, text=True,
                          check=True).stdout.strip() == str(tmp_path / "mine")


@pytest.mark.slow
def test_concurrent_first_runs_on_a_fresh_install(job_inputs: tuple[Path, Path], tmp_path: Path) -> None:
    """Three runs at once on empty caches (JIT included), then a fourth: all complete and exact."""
    clips, music = job_inputs
    env = {"MONTAGE_CACHE_DIR": str(tmp_path / "fresh-cache"), "NUMBA_CACHE_DIR": "", "MONTAGE_WORKERS": "2"}
    outs = [tmp_path / f"out{i}.mp4" for i in range(4)]
    procs = [_montage(*_run_args(clips, music, out, "--seed", str(i)), env=env, stdout=subprocess.PIPE,
                      stderr=subprocess.PIPE) for i, out in enumerate(outs[:3])]
    results = [(p.wait(timeout=900), p.communicate()[1]) for p in procs]
    assert [code for code, _ in results] == [0, 0, 0], [err[-2000:] for _, err in results]
    fourth = run_cli(*_run_args(clips, music, outs[3], "--seed", "3"), env=env, timeout=600)
    assert fourth.returncode == 0, fourth.stderr
    for out in outs:
        assert probe_frames(out)[0] == 8 * FPS
    jit = list((tmp_path / "fresh-cache" / "jit").glob("montage-*"))
    assert len(jit) == 1 and list(jit[0].rglob("*.nbi"))


# ----------------------------------------------------------------------------- no debris
def test_a_normal_exit_leaves_no_process(job_inputs: tuple[Path, Path]) -> None:
    clips, _ = job_inputs
    mark = uuid.uuid4().hex
    proc = run_cli("analyze", str(clips), env={"MONTAGE_TEST_MARK": mark, "MONTAGE_WORKERS": "2"})
    assert proc.returncode == 0, proc.stderr
    assert _marked_processes(mark) == []


def test_a_job_whose_coordinator_died_shows_as_interrupted(tmp_path: Path) -> None:
    script = ("from montage_core.jobstore import JobStore; print(JobStore().create_job('dynamic', 'local', {}))")
    job_id = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                            env=os.environ).stdout.strip()
    job = JobStore().job(job_id)
    assert job is not None and job["state"] == "interrupted"
    assert f"montage resume {job_id}" in job["error"]
    own = JobStore().create_job("dynamic", "local", {})  # this process is alive: still running
    assert JobStore().job(own)["state"] == "running"


def _start_and_wait_for_render(job_inputs: tuple[Path, Path], out: Path, mark: str) -> subprocess.Popen[str]:
    clips, music = job_inputs
    proc = _montage(*_run_args(clips, music, out, "--resolution", "1280x720", "--quality", "high"),
                    env={"MONTAGE_TEST_MARK": mark, "MONTAGE_WORKERS": "2"}, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        jobs = JobStore().jobs()
        if jobs and any(s["stage"] == "render" and s["state"] == "done" for s in JobStore().shards(jobs[0]["id"])):
            return proc
        assert proc.poll() is None, proc.communicate()[1]
        time.sleep(0.1)
    raise AssertionError("the render stage never started")


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_a_stopped_coordinator_leaves_nothing_and_resume_finishes(sig: int, job_inputs: tuple[Path, Path],
                                                                  tmp_path: Path) -> None:
    mark = uuid.uuid4().hex
    out = tmp_path / "out.mp4"
    proc = _start_and_wait_for_render(job_inputs, out, mark)
    proc.send_signal(sig)
    code = proc.wait(timeout=30)
    stderr = proc.communicate()[1]
    assert code == (143 if sig == signal.SIGTERM else -9), stderr
    assert _wait_until_gone(mark) == []
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".part")]
    import sqlite3

    # Recorded in the store itself (by the coordinator, or by its workers when it was killed),
    # not only worked out when montage reads it.
    raw = sqlite3.connect(JobStore().path).execute("SELECT id, state FROM jobs").fetchall()
    assert [state for _, state in raw] == ["interrupted"]
    job = JobStore().jobs()[0]
    assert job["state"] == "interrupted"
    listed = run_cli("jobs").stdout
    assert f"{job['id']}  interrupted" in listed and f"montage resume {job['id']}" in listed
    if sig == signal.SIGTERM:
        assert f"montage resume {job['id']}" in stderr
    resumed = run_cli("resume", job["id"])
    assert resumed.returncode == 0, resumed.stderr
    assert probe_frames(out)[0] == 8 * FPS
    assert JobStore().job(job["id"])["state"] == "done"


@pytest.mark.slow
def test_cancel_stops_a_local_job_records_it_and_resume_still_finishes_it(job_inputs: tuple[Path, Path],
                                                                          tmp_path: Path) -> None:
    import sqlite3

    mark = uuid.uuid4().hex
    out = tmp_path / "out.mp4"
    proc = _start_and_wait_for_render(job_inputs, out, mark)
    job_id = JobStore().jobs()[0]["id"]
    cancelled = run_cli("cancel", job_id)
    code = proc.wait(timeout=30)
    stderr = proc.communicate()[1]
    assert cancelled.returncode == 0, cancelled.stderr
    assert cancelled.stdout.splitlines() == [f"stopped its coordinator (process {proc.pid})", f"job {job_id} cancelled"]
    assert code == 143, stderr  # stopped as Ctrl-C stops it: workers and ffmpeg with it
    assert f"warning: job {job_id} cancelled" in stderr.splitlines()
    assert _wait_until_gone(mark) == [] and not out.exists()
    # what the stopping coordinator wrote on its way out (interrupted) did not replace it
    raw = sqlite3.connect(JobStore().path).execute("SELECT id, state FROM jobs").fetchall()
    assert raw == [(job_id, "cancelled")]
    assert f"{job_id}  cancelled" in run_cli("jobs").stdout
    again = run_cli("cancel", job_id)
    assert (again.returncode, again.stdout) == (0, f"job {job_id} is already cancelled\n")
    unknown = run_cli("cancel", "20300101-000000-abcdef")
    assert unknown.returncode == 2
    assert unknown.stderr.splitlines() == [
        f"error: no job '20300101-000000-abcdef' in {JobStore().path} (latest: {job_id})"]
    # cancelled, not lost: its finished shards are reused
    resumed = run_cli("resume", job_id)
    assert resumed.returncode == 0, resumed.stderr
    assert probe_frames(out)[0] == 8 * FPS
    done = run_cli("cancel", job_id)
    assert (done.returncode, done.stderr) == (2, f"error: job {job_id} has already finished: nothing to cancel\n")


_MUSIC_SCRIPT = ("import sys; from montage_core.isolated import analyze_music_checked; "
                 "print(analyze_music_checked(sys.argv[1]).beats)")


@pytest.mark.slow
def test_concurrent_music_analyses_on_a_fresh_jit_cache(media: MediaFactory, tmp_path: Path) -> None:
    """Four beat trackers at once on an empty JIT cache (plain librosa poisons it: every later
    run dies with SIGSEGV), then three more: all succeed with the same beats."""
    music, _ = media.music(seconds=12)
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "jit")}
    procs = [subprocess.Popen([sys.executable, "-c", _MUSIC_SCRIPT, str(music)], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(4)]
    answers = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], [err[-1000:] for _, err in answers]
    later = [subprocess.run([sys.executable, "-c", _MUSIC_SCRIPT, str(music)], env=env, capture_output=True,
                            text=True, timeout=300) for _ in range(3)]
    assert [p.returncode for p in later] == [0, 0, 0], [p.stderr[-1000:] for p in later]
    assert len({out for out, _ in answers} | {p.stdout for p in later}) == 1
