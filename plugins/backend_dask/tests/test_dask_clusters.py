"""One Dask cluster per process: shared by the stages and jobs run in it, sized to the work, never
reused once its scheduler is gone. Real LocalClusters and real `dask scheduler` processes."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from montage_core.engine import run_shards
from montage_core.interfaces import ShardTask


@pytest.fixture(autouse=True)
def fresh_registry(pm: Any) -> Iterator[None]:
    """Each test starts and ends with no shared cluster in this process."""
    import montage_backend_dask
    from montage_backend_dask import clusters

    pm.register(montage_backend_dask, "backend_dask")
    clusters.close_all()
    yield
    clusters.close_all()


def _where(task: ShardTask, emit: Any) -> tuple[int, str]:
    """Shard function: the worker process it ran in and the scheduler that worker serves."""
    from distributed import get_worker

    return os.getpid(), str(get_worker().scheduler.address)


def _tasks(stage: str, count: int) -> list[ShardTask]:
    return [ShardTask(f"{stage}{i}", stage, f"c{i}.mp4", {}) for i in range(count)]


def _stage(backend: Any, stage: str, count: int) -> list[tuple[int, str]]:
    outcomes = run_shards(backend, _where, _tasks(stage, count), on_event=lambda e: None)
    assert all(o.ok for o in outcomes.values()), {k: o.error for k, o in outcomes.items()}
    return [o.result for o in outcomes.values()]


def test_stages_and_jobs_of_one_process_share_one_local_cluster(pm: Any) -> None:
    from montage_backend_dask import clusters

    seen = []
    for _ in range(2):  # two jobs, each with a backend of its own, as MontageManager makes them
        job = pm.new_backend("dask", workers=2)
        job.warm(2)
        seen += _stage(job, "analysis", 2) + _stage(job, "render", 4)  # two stages of the job
        job.close()
    assert len({address for _, address in seen}) == 1, seen  # one scheduler ...
    assert len({pid for pid, _ in seen}) <= 2, seen  # ... and the same two worker processes throughout
    [shared] = clusters.live()
    assert shared.local and shared.handed_out == 2 and shared.users == 0


def test_a_small_job_starts_no_more_workers_than_it_has_shards(pm: Any) -> None:
    from montage_backend_dask import clusters

    job = pm.new_backend("dask", workers=2)
    job.warm(1)  # one clip to analyze
    _stage(job, "analysis", 1)
    [shared] = clusters.live()
    assert shared.workers() == 1 and len(shared.cluster.worker_spec) == 1
    assert job.startup()["how"] == "started" and job.startup()["cluster_seconds"] > 0
    # A later stage with more shards grows the cluster to the job's --workers, and no further.
    _stage(job, "render", 6)  # may all finish on the first worker while the second starts
    assert len(shared.cluster.worker_spec) == 2
    shared.client.wait_for_workers(2, timeout=60)
    assert shared.workers() == 2
    job.close()


def test_a_local_cluster_that_died_is_replaced_not_reused(pm: Any) -> None:
    from montage_backend_dask import clusters

    first = pm.new_backend("dask", workers=1)
    [(old_pid, old_address)] = _stage(first, "analysis", 1)
    first.close()
    [dead] = clusters.live()
    dead.cluster.close()  # its scheduler and workers go away between two jobs
    second = pm.new_backend("dask", workers=1)
    [(pid, address)] = _stage(second, "analysis", 1)
    assert second.startup()["how"] == "started"
    second.close()
    assert address != old_address and pid != old_pid
    [shared] = clusters.live()
    assert shared is not dead


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(command: list[str]) -> subprocess.Popen[bytes]:
    # The workers import this module's shard function as the coordinator does (by its folder).
    path = os.pathsep.join([os.path.dirname(__file__), *sys.path])
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                            env={**os.environ, "PYTHONPATH": path})


def _cluster(dask: str, address: str, port: int) -> list[subprocess.Popen[bytes]]:
    """A `dask scheduler` at ``port`` and one `dask worker`, both connected."""
    from distributed import Client

    processes = [_start([dask, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"])]
    processes.append(_start([dask, "worker", address, "--nthreads", "1", "--no-dashboard"]))
    with Client(address, timeout="30s") as client:
        client.wait_for_workers(1, timeout=60)
    return processes


def _stop(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)


@pytest.mark.slow
def test_a_scheduler_that_died_is_not_reused_and_is_never_shut_down_by_montage(pm: Any) -> None:
    """A scheduler given by address: its client is kept for the next job; once that scheduler died
    (and another took its port) the next job connects afresh. montage never shuts it down."""
    from distributed import Client

    from montage_backend_dask import clusters

    dask = shutil.which("dask") or pytest.skip("the dask command is not installed")
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    processes = _cluster(dask, address, port)
    try:
        first = pm.new_backend("dask", scheduler=address)
        [(old_pid, _)] = _stage(first, "analysis", 1)
        first.close()
        [old] = clusters.live()
        clusters.close_all()  # what happens at exit: the remote cluster is only disconnected from
        time.sleep(0.5)
        assert all(p.poll() is None for p in processes)  # scheduler and worker still up
        again = pm.new_backend("dask", scheduler=address)
        _stage(again, "analysis", 1)
        assert again.startup()["how"] == "connected"
        again.close()
        [kept] = clusters.live()
        next_job = pm.new_backend("dask", scheduler=address)
        _stage(next_job, "analysis", 1)
        assert next_job.startup()["how"] == "reused" and clusters.live() == [kept]  # kept for the next job
        next_job.close()
        _stop(processes)  # the scheduler dies between two jobs; another takes its address
        processes = _cluster(dask, address, port)
        with Client(address, timeout="30s") as probe:
            new_id = probe.scheduler_info()["id"]
        later = pm.new_backend("dask", scheduler=address)
        [(pid, _)] = _stage(later, "analysis", 1)
        later.close()
        [shared] = clusters.live()
        assert shared is not kept and shared is not old and shared.scheduler_id == new_id and pid != old_pid
    finally:
        _stop(processes)
