"""Dask as users run it across machines: `dask scheduler` and `dask worker` started from the Dask CLI as
processes of their own; the scheduler killed mid-run, an unreachable address, a worker that breaks the contract,
a worker killed under a shard, a shard that kills every worker that runs it."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from montage_core.jobstore import JobStore
from montage_core.testing import MediaFactory, run_cli

pytestmark = pytest.mark.slow
RUN = ["--resolution", "320x180", "--fps", "25", "--quality", "preview", "--seed", "4"]
#: in a new mount namespace: an empty folder over argv[1], then run the rest (a machine without the clips)
HIDE_AND_EXEC = ("import os, subprocess, sys; subprocess.run(['mount', '-t', 'tmpfs', 'none', sys.argv[1]], check=True); "
                 "os.execvp(sys.argv[2], sys.argv[2:])")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    """A scheduler and workers from the Dask CLI, each a process (group) of its own."""

    def __init__(self, port: int, env: dict[str, str]):
        self.address, self.env, self.processes = f"tcp://127.0.0.1:{port}", env, []
        dask = shutil.which("dask") or pytest.skip("the dask command is not installed")
        self.dask = dask
        self.scheduler = self._start([dask, "scheduler", "--host", "127.0.0.1", "--port", str(port),
                                      "--no-dashboard"])

    def _start(self, command: list[str], env: dict[str, str] | None = None,
               prefix: list[str] = ()) -> subprocess.Popen[bytes]:
        process = subprocess.Popen([*prefix, *command], env=env or self.env, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL, start_new_session=True)
        self.processes.append(process)
        return process

    def add_workers(self, count: int, *, env: dict[str, str] | None = None, name: str = "w",
                    prefix: list[str] = ()) -> None:
        from distributed import Client

        before = self._count()
        self._start([self.dask, "worker", self.address, "--nworkers", str(count), "--nthreads", "1",
                     "--no-dashboard", "--name", name], env, prefix)
        with Client(self.address, timeout="30s") as client:
            client.wait_for_workers(before + count, timeout=60)

    def _count(self) -> int:
        from distributed import Client

        with Client(self.address, timeout="30s") as client:
            return len(client.scheduler_info()["workers"])

    def stop(self) -> None:
        for process in reversed(self.processes):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=30)


@pytest.fixture
def cluster_env(montage_home: Path) -> dict[str, str]:
    return {**os.environ, "MONTAGE_DASK_CONNECT_TIMEOUT": "10"}


@pytest.fixture
def tripwire_env(cluster_env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    """``cluster_env`` with the test-only tripwire analyzer installed (see tripwire_plugin.py): a real
    distribution on the PYTHONPATH of the coordinator and of every worker, loaded by entry point."""
    site = tmp_path / "site"
    site.mkdir()
    shutil.copy(Path(__file__).with_name("tripwire_plugin.py"), site / "montage_tripwire.py")
    info = site / "montage_tripwire-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: montage-tripwire\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[montage]\ntripwire = montage_tripwire\n")
    path = os.pathsep.join(p for p in (str(site), cluster_env.get("PYTHONPATH", "")) if p)
    return {**cluster_env, "PYTHONPATH": path}


@pytest.fixture
def clips(media: MediaFactory, tmp_path: Path) -> Path:
    folder = tmp_path / "clips on the shared mount"
    for k, shots in enumerate([[(0, 2.0), (1, 2.0)], [(2, 2.0), (3, 2.0)], [(4, 2.0), (5, 2.0)],
                               [(6, 2.0), (7, 2.0)], [(1, 2.0), (4, 2.0)], [(3, 2.0), (0, 2.0)]]):
        media.clip(shots, name=str(folder / f"clip {k}.mp4"))
    return folder


def test_an_unreachable_scheduler_is_one_line(clips: Path, media: MediaFactory, tmp_path: Path,
                                              cluster_env: dict[str, str]) -> None:
    music, _ = media.music(seconds=4)
    address = f"tcp://127.0.0.1:{_free_port()}"
    started = time.monotonic()
    proc = run_cli("run", str(clips), "--music", str(music), "-o", str(tmp_path / "x.mp4"), "--backend", "dask",
                   "--scheduler", address, *RUN, env=cluster_env)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode == 1 and len(errors) == 1, proc.stderr  # a pre-flight problem, not a usage error
    assert f"cannot reach the Dask scheduler at {address} within 10 s" in errors[0]
    assert "Traceback" not in proc.stderr and time.monotonic() - started < 40
    assert not JobStore().jobs()  # refused before the job existed


def test_a_lost_scheduler_interrupts_and_resume_finishes_with_the_same_timeline(
        clips: Path, media: MediaFactory, tmp_path: Path, cluster_env: dict[str, str]) -> None:
    music, _ = media.music(seconds=12)
    port = _free_port()
    cluster = Cluster(port, cluster_env)
    try:
        cluster.add_workers(2)
        out = tmp_path / "on the cluster.mp4"
        run = subprocess.Popen([sys.executable, "-m", "montage_core", "run", str(clips), "--music", str(music), "-o",
                                str(out), "--backend", "dask", "--scheduler", cluster.address, "--no-cache", *RUN],
                               env=cluster_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        store = JobStore()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not any(s["state"] == "done" for j in store.jobs()
                                                      for s in store.shards(j["id"])):
            time.sleep(0.1)
        os.killpg(cluster.scheduler.pid, signal.SIGTERM)  # the scheduler goes away mid-run
        lost_at = time.monotonic()
        _, stderr = run.communicate(timeout=120)
        assert time.monotonic() - lost_at < 60
        assert run.returncode == 75, stderr
        assert "interrupted: lost the Dask cluster" in stderr and "montage resume" in stderr, stderr
        assert "skipping" not in stderr and "Traceback" not in stderr  # no clip blamed
        [job] = store.jobs()
        assert job["state"] == "interrupted" and not out.exists()
    finally:
        cluster.stop()
    cluster = Cluster(port, cluster_env)  # the cluster is back
    try:
        cluster.add_workers(2)
        resumed = run_cli("resume", job["id"], env=cluster_env)
        assert resumed.returncode == 0, resumed.stderr
    finally:
        cluster.stop()
    _assert_same_cuts_as_a_local_run(clips, music, tmp_path, cluster_env)


def _assert_same_cuts_as_a_local_run(clips: Path, music: Path, tmp_path: Path, env: dict[str, str]) -> None:
    """The timeline written to ``on the cluster.timeline.json`` cuts exactly as a local run's."""
    local = run_cli("run", str(clips), "--music", str(music), "-o", str(tmp_path / "here.mp4"), *RUN, env=env)
    assert local.returncode == 0, local.stderr
    cuts = [json.loads(p.read_text())["cuts"] for p in (tmp_path / "on the cluster.timeline.json",
                                                        tmp_path / "here.timeline.json")]
    assert cuts[0] == cuts[1]


def test_a_worker_that_breaks_the_contract_is_named_before_any_work(
        clips: Path, media: MediaFactory, tmp_path: Path, cluster_env: dict[str, str]) -> None:
    music, _ = media.music(seconds=4)
    private = tmp_path / "not shared"
    cluster = Cluster(_free_port(), cluster_env)
    try:
        cluster.add_workers(1, name="good")
        # Another machine's view: a cache folder of its own, and (where mount namespaces are allowed)
        # no clips at their paths: an empty folder mounted over them for that worker alone.
        stranger = {**cluster_env, "MONTAGE_CACHE_DIR": str(private / "cache")}
        hide = [sys.executable, "-c", HIDE_AND_EXEC, str(clips)]
        hidden = subprocess.run(["unshare", "-m", "true"], capture_output=True).returncode == 0 and shutil.which("mount")
        cluster.add_workers(1, env=stranger, name="elsewhere", prefix=["unshare", "-m", *hide] if hidden else [])
        proc = run_cli("run", str(clips), "--music", str(music), "-o", str(tmp_path / "x.mp4"), "--backend", "dask",
                       "--scheduler", cluster.address, "--accel", "nvenc", *RUN, env=cluster_env)
    finally:
        cluster.stop()
    assert any(e.startswith("error: --accel nvenc: no Dask worker can encode with it") for e in proc.stderr.splitlines())
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode == 1, proc.stderr  # pre-flight
    assert any("elsewhere" in e and f"caches in {private / 'cache'}" in e for e in errors), errors
    if hidden:
        assert any("elsewhere" in e and f"cannot read {clips / 'clip 0.mp4'}" in e for e in errors), errors
    assert not any(e.startswith("error: Dask worker good") for e in errors), errors  # the good one is not blamed
    assert not JobStore().jobs()


def _lost_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "lost Dask worker" in line]


def test_a_worker_killed_under_a_shard_is_named_and_the_shard_rerun(
        clips: Path, media: MediaFactory, tmp_path: Path, tripwire_env: dict[str, str]) -> None:
    from distributed import Client

    music, _ = media.music(seconds=12)
    hold = tmp_path / "held shard.pid"
    cluster = Cluster(_free_port(), {**tripwire_env, "MONTAGE_TEST_HOLD_FILE": str(hold)})
    try:
        cluster.add_workers(2)
        run = subprocess.Popen([sys.executable, "-m", "montage_core", "run", str(clips), "--music", str(music), "-o",
                                str(tmp_path / "on the cluster.mp4"), "--backend", "dask", "--scheduler",
                                cluster.address, "--no-cache", *RUN],
                               env=tripwire_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 180
        while not hold.exists() and time.monotonic() < deadline and run.poll() is None:
            time.sleep(0.1)
        assert hold.exists(), run.communicate(timeout=60)[1]
        pid = int(hold.read_text())  # a worker process, inside a shard, waiting to be killed
        with Client(cluster.address, timeout="30s") as client:
            [address] = [a for a, p in client.run(os.getpid).items() if p == pid]
        os.kill(pid, signal.SIGKILL)
        _, stderr = run.communicate(timeout=300)
    finally:
        cluster.stop()
    assert run.returncode == 0, stderr
    [job] = JobStore().jobs()
    shards = JobStore().shards(job["id"])
    [rerun] = [s for s in shards if s["attempts"] > 1]  # the killed worker's shard, and only it
    assert rerun["attempts"] == 2 and rerun["state"] == "done" and rerun["stage"] == "analysis", shards
    assert all(s["attempts"] == 1 for s in shards if s is not rerun), shards
    [line] = _lost_lines(stderr)
    assert line.startswith(f"warning: {rerun['clip']}: lost Dask worker worker-w-"), line
    assert f"({address}) while it ran shard {rerun['shard_id']}; rerunning the shard (attempt 2)" in line, line
    assert "Traceback" not in stderr
    _assert_same_cuts_as_a_local_run(clips, music, tmp_path, tripwire_env)


def test_a_shard_that_kills_every_worker_fails_alone_with_the_reason(
        clips: Path, media: MediaFactory, tmp_path: Path, tripwire_env: dict[str, str]) -> None:
    from montage_backend_dask.deaths import MAX_WORKER_DEATHS as deaths

    music, _ = media.music(seconds=8)
    square = clips / "clip 9 square.mp4"
    media.clip([(2, 2.0), (5, 2.0)], size=(320, 320), name=str(square))  # its worker dies on its first batch
    cluster = Cluster(_free_port(), {**tripwire_env, "MONTAGE_TEST_KILL_SQUARE": "1"})
    try:
        cluster.add_workers(2)  # each a nanny that starts its worker again after a death
        proc = run_cli("run", str(clips), "--music", str(music), "-o", str(tmp_path / "x.mp4"), "--backend", "dask",
                       "--scheduler", cluster.address, "--no-cache", *RUN, env=tripwire_env, timeout=600)
    finally:
        cluster.stop()
    assert proc.returncode == 0, proc.stderr  # a montage of the other clips
    [job] = JobStore().jobs()
    shards = {s["clip"]: s for s in JobStore().shards(job["id"]) if s["stage"] == "analysis"}
    bad = shards.pop(str(square))
    assert bad["state"] == "failed" and bad["attempts"] == deaths, bad
    assert bad["error"].startswith(f"shard {bad['shard_id']} killed {deaths} Dask workers (last: tcp://127.0.0.1:"), bad
    assert "KilledWorker" in bad["error"] and deaths == 3  # the third death ends it, whatever the scheduler allows
    assert len(shards) == 6 and all(s["state"] == "done" for s in shards.values()), shards
    lines = _lost_lines(proc.stderr)
    assert len(lines) == deaths - 1, proc.stderr  # every rerun said once; the last death is the failure
    assert all(f"while it ran shard {bad['shard_id']}; rerunning" in line for line in lines), lines
    skipped = [line for line in proc.stderr.splitlines() if line.startswith("warning: skipping")]
    assert skipped == [f"warning: skipping {square}: {bad['error']}"], proc.stderr
    assert job["state"] == "done" and "Traceback" not in proc.stderr
