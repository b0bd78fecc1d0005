"""The Dask backend on a real LocalCluster: same answer as local, lost workers, bad shards, resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from montage_core.engine import run_shards
from montage_core.interfaces import ShardTask
from montage_core.jobstore import JobStore
from montage_core.testing import MediaFactory, run_cli

pytestmark = pytest.mark.slow
RUN = ["--resolution", "320x180", "--fps", "25", "--quality", "preview"]


@pytest.fixture(scope="module")
def cluster():
    from distributed import LocalCluster

    with LocalCluster(n_workers=3, threads_per_worker=1, processes=True, dashboard_address=None,
                      silence_logs=40) as local:
        yield local


@pytest.fixture
def backend(cluster, pm):
    import montage_backend_dask

    pm.register(montage_backend_dask, "backend_dask")
    dask = pm.new_backend("dask")
    dask.configure(scheduler=cluster.scheduler_address)
    yield dask
    dask.close()


@pytest.fixture(scope="module")
def clips(media: MediaFactory, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("dask clips")
    for k, shots in enumerate([[(0, 2.0), (1, 2.0)], [(2, 2.0), (3, 2.0)], [(4, 2.0), (5, 2.0)],
                               [(6, 2.0), (7, 2.0)], [(1, 2.0), (4, 2.0)], [(3, 2.0), (0, 2.0)]]):
        media.clip(shots, name=str(folder / f"clip {k}.mp4"))
    return folder


def test_dask_run_equals_the_local_run(clips: Path, media: MediaFactory, tmp_path: Path) -> None:
    music, _ = media.music(seconds=8)
    local = run_cli("run", str(clips), "--music", str(music), "-o", str(tmp_path / "local.mp4"), "--seed", "5", *RUN)
    assert local.returncode == 0, local.stderr
    dask = run_cli("run", str(clips), "--music", str(music), "-o", str(tmp_path / "dask.mp4"), "--seed", "5",
                   "--backend", "dask", "--workers", "2", "--no-cache", *RUN)
    assert dask.returncode == 0, dask.stderr
    assert (tmp_path / "dask.timeline.json").read_text() == (tmp_path / "local.timeline.json").read_text()
    workers = {line.split(" · ")[1] for line in dask.stderr.splitlines() if line.startswith("analysis ")}
    assert workers <= {"worker-0", "worker-1"} and workers, dask.stderr  # per-worker progress lines


def _record_and_maybe_die(task: ShardTask, emit) -> str:  # type: ignore[no-untyped-def]
    """Shard function: logs each start; the victim SIGKILLs its own worker the first time."""
    log = Path(task.payload["log"])
    with log.open("a") as fh:
        fh.write(f"{task.id} {os.getpid()}\n")
    if task.payload.get("victim") and log.read_text().count(task.id) == 1:
        time.sleep(0.3)
        os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(0.5)
    return f"{task.id} done"


def test_killed_worker_costs_only_its_shard(backend, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    log = tmp_path / "starts.log"
    tasks = [ShardTask(f"s{i}", "analysis", f"c{i}.mp4", {"log": str(log), "victim": i == 2}) for i in range(6)]
    store = JobStore()
    outcomes = run_shards(backend, _record_and_maybe_die, tasks, on_event=lambda e: None, store=store, job_id="k")
    assert all(o.ok for o in outcomes.values()), {k: o.error for k, o in outcomes.items()}
    starts = [line.split()[0] for line in log.read_text().splitlines()]
    assert starts.count("s2") == 2  # retried elsewhere ...
    assert all(starts.count(f"s{i}") == 1 for i in (0, 1, 3, 4, 5)), starts  # ... and nothing else redone
    pids = [line.split()[1] for line in log.read_text().splitlines() if line.startswith("s2 ")]
    assert pids[0] != pids[1]
    attempts = {s["shard_id"]: s["attempts"] for s in store.shards("k")}
    assert attempts == {"s0": 1, "s1": 1, "s2": 2, "s3": 1, "s4": 1, "s5": 1}  # the rerun is an attempt
    [line] = [r.getMessage() for r in caplog.records if "lost Dask worker" in r.getMessage()]
    assert line.startswith("c2.mp4: lost Dask worker ") and line.endswith(
        " while it ran shard s2; rerunning the shard (attempt 2)"), line


def test_corrupt_clip_fails_alone_with_its_message(backend, media: MediaFactory, tmp_path: Path, pm) -> None:
    from montage_core.stages import analyze_clips, probe_clips

    good, _ = media.clip([(0, 2.0), (1, 2.0)])
    corrupt = tmp_path / "corrupt clip.mp4"
    data = good.read_bytes()
    # Index intact (faststart puts it first), media data cut away: it probes, but next to nothing decodes.
    corrupt.write_bytes(data[: len(data) // 20])
    analyses, failures = analyze_clips(probe_clips([str(good), str(corrupt)])[0], pm, backend)
    assert [a.media.path for a in analyses] == [str(good)]
    assert list(failures) == [str(corrupt)]
    assert failures[str(corrupt)].startswith(f"{corrupt}: truncated or damaged: only 0.04 s of 4.00 s decode")


def test_coordinator_killed_mid_analysis_resumes_with_only_unfinished_clips(media: MediaFactory,
                                                                            tmp_path: Path) -> None:
    folder = tmp_path / "long clips"
    for k in range(5):
        media.clip([(k, 4.0), (k + 1, 4.0)], size=(640, 360), name=str(folder / f"long {k}.mp4"))
    music, _ = media.music(seconds=6)
    env = {**os.environ, "MONTAGE_WORKERS": "1"}
    cmd = [sys.executable, "-m", "montage_core", "run", str(folder), "--music", str(music),
           "-o", str(tmp_path / "resumed.mp4"), "--backend", "dask", *RUN]
    coordinator = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                   start_new_session=True)
    store = JobStore()
    deadline = time.monotonic() + 120
    done: set[str] = set()
    while time.monotonic() < deadline and len(done) < 2:
        time.sleep(0.1)
        jobs = store.jobs()
        if jobs:
            done = {s["clip"] for s in store.shards(jobs[0]["id"]) if s["stage"] == "analysis" and s["state"] == "done"}
    os.killpg(coordinator.pid, signal.SIGKILL)  # the coordinator and its LocalCluster, mid-analysis
    coordinator.wait()
    job_id = store.jobs()[0]["id"]
    assert 2 <= len(done) < 5 and store.job(job_id)["state"] == "interrupted"  # its coordinator is gone

    resume_started = time.time()
    resumed = run_cli("resume", job_id, env={"MONTAGE_WORKERS": "1"})
    assert resumed.returncode == 0, resumed.stderr
    redone = {s["clip"] for s in store.shards(job_id) if s["stage"] == "analysis" and s["updated"] > resume_started}
    all_clips = {str(p) for p in folder.iterdir()}
    assert redone == all_clips - done
    assert store.job(job_id)["state"] == "done"
    assert json.loads(store.job(job_id)["result"])["video"] == str(tmp_path / "resumed.mp4")


def test_unknown_scheduler_is_a_clear_error(clips: Path, media: MediaFactory, tmp_path: Path) -> None:
    music, _ = media.music(seconds=4)
    proc = run_cli("run", str(clips), "--music", str(music), "-o", str(tmp_path / "x.mp4"), "--backend", "local",
                   "--scheduler", "tcp://127.0.0.1:1", *RUN)
    assert proc.returncode == 2 and "the local backend takes no --scheduler" in proc.stderr
