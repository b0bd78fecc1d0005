"""``montage run --backend k8s`` against an API server (kmock) whose Jobs run as real local workers.

The coordinator is the real ``montage`` command; the only fake is the cluster behind the API.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from k8s_fakes import REPO, Fault, FakeCluster, serve_pod_logs

from montage_core.jobstore import JobStore
from montage_core.testing import MediaFactory, run_cli

pytestmark = [pytest.mark.asyncio, pytest.mark.slow]
RUN = ["--resolution", "320x180", "--fps", "25", "--quality", "preview", "--seed", "5"]
SHOTS = [[(0, 2.0), (1, 2.0)], [(2, 2.0), (3, 2.0)], [(4, 2.0), (5, 2.0)], [(6, 2.0), (7, 2.0)]]


@pytest.fixture
def volume(tmp_path: Path, media: MediaFactory, registry: tuple[str, str], monkeypatch: pytest.MonkeyPatch) -> Path:
    """The shared volume, seen at the same path by the coordinator and by the pods."""
    data = tmp_path / "nfs data"
    clips = data / "clips"
    clips.mkdir(parents=True)
    for k, shots in enumerate(SHOTS):
        clip, _ = media.clip(shots)
        shutil.copy(clip, clips / f"clip {k}.mp4")
    music, _ = media.music(seconds=8)
    shutil.copy(music, data / "music.wav")
    monkeypatch.setenv("MONTAGE_MOUNT_PATH", str(data))
    monkeypatch.setenv("MONTAGE_CACHE_DIR", str(data / "cache"))
    monkeypatch.setenv("MONTAGE_IMAGE", f"{registry[0]}/{REPO}:1.0")
    monkeypatch.setenv("MONTAGE_K8S_PARALLELISM", "2")
    return data


def _api() -> Any:
    from montage_backend_k8s.config import api_client

    return api_client()


async def _run_k8s(kube: Any, volume: Path, out: Path, faults: list[Fault], *extra: str,
                   timeout: float = 300) -> tuple[Any, FakeCluster]:
    with FakeCluster(_api(), "montage", volume.parent / "pod-logs") as cluster:
        cluster.faults = faults
        serve_pod_logs(kube, cluster)
        proc = await asyncio.to_thread(run_cli, "run", str(volume / "clips"), "--music", str(volume / "music.wav"),
                                       "-o", str(out), "--backend", "k8s", *RUN, *extra, timeout=timeout)
    return proc, cluster


async def test_k8s_run_equals_the_local_run_and_only_failed_shards_rerun(
        kube: Any, volume: Path, tmp_path: Path) -> None:
    local = await asyncio.to_thread(run_cli, "run", str(volume / "clips"), "--music", str(volume / "music.wav"),
                                    "-o", str(tmp_path / "local.mp4"), "--no-cache", *RUN,
                                    env={"MONTAGE_CACHE_DIR": str(tmp_path / "local-cache")})
    assert local.returncode == 0, local.stderr
    faults = [Fault("oom-below", "analysis", "analysis-0001", memory="4Gi"),  # needs twice the default 2Gi
              Fault("drain", "render", "segment-0002")]
    proc, cluster = await _run_k8s(kube, volume, tmp_path / "k8s.mp4", faults)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "k8s.timeline.json").read_text() == (tmp_path / "local.timeline.json").read_text()

    runs: dict[str, list[str]] = {}
    for job, shard, memory in cluster.started:
        runs.setdefault(shard, []).append(memory)
    # the OOM-killed shard: 3 tries at 2Gi (backoffLimitPerIndex 2), then alone in a new Job with more memory
    assert runs["analysis-0001"] == ["2Gi", "2Gi", "2Gi", "4096Mi"], runs
    assert len({job for job, shard, _ in cluster.started if shard == "analysis-0001"}) == 2
    # every other analysis shard ran exactly once: nothing is redone
    assert all(len(runs[f"analysis-{k:04d}"]) == 1 for k in (0, 2, 3)), runs
    # the drained pod's shard ran again without using up a retry; no other segment ran twice
    assert len(cluster.evicted) == 1 and len(runs["segment-0002"]) == 2
    assert all(len(v) == 1 for k, v in runs.items() if k.startswith("segment-") and k != "segment-0002")
    # one progress line per node, as the pods reported it
    nodes = {line.split(" · ")[1].split("/")[0] for line in proc.stderr.splitlines()
             if line.startswith(("analysis ", "render ")) and " · " in line}
    assert nodes and nodes <= {"node-1", "node-2"}, proc.stderr
    assert "OOMKilled with 2Gi; next try with 4096Mi" in proc.stderr
    # the re-run of the evicted shard is not counted twice: no stage ever shows more done than it has
    counts = [line.split(" · ")[0].split()[1].split("/") for line in proc.stderr.splitlines()
              if line.startswith(("analysis ", "render ")) and " · " in line]
    assert counts and all(int(done) <= int(total) for done, total in counts), proc.stderr
    assert sum(1 for line in proc.stderr.splitlines() if line.startswith("render ") and " · done " in line) == \
        sum(1 for k in runs if k.startswith("segment-"))

    logs = await asyncio.to_thread(run_cli, "logs", _last_job_id())
    assert logs.returncode == 0, logs.stderr
    assert "OOMKilled" in logs.stdout and "evicted (Eviction API" in logs.stdout
    # the same logs and diagnoses are in the job store, for the web UI and for when the cluster is gone
    stored = JobStore().worker_logs(_last_job_id())
    gone = tmp_path / "kubeconfig-of-a-deleted-cluster"
    gone.write_text(Path(os.environ["KUBECONFIG"]).read_text().replace(str(kube.url).rstrip("/"), "http://127.0.0.1:9"))
    offline = await asyncio.to_thread(run_cli, "logs", _last_job_id(), env={"KUBECONFIG": str(gone)})
    assert offline.returncode == 0 and "showing stored logs" in offline.stderr
    assert "OOMKilled" in offline.stdout and "evicted (Eviction API" in offline.stdout
    assert sum("OOMKilled" in row["diagnosis"] for row in stored) == 3
    assert [row["node"] for row in stored if row["diagnosis"].startswith("evicted")] == [cluster.evicted_nodes[0]]
    worker_pods = [job for job, shard, _ in cluster.started if shard]  # not the pre-flight storage probe
    assert logs.stdout.count("── ") == len(worker_pods)  # every pod of every stage and retry, with its log
    assert any(job.startswith("montage-preflight-") for job, _, _ in cluster.started)


def _last_job_id() -> str:
    return JobStore().jobs(1)[0]["id"]


async def test_bad_input_fails_its_index_at_once_and_a_crashing_index_is_bounded(
        kube: Any, volume: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    corrupt = volume / "clips" / "broken $(x) 'q' ü.mp4"
    data = (volume / "clips" / "clip 0.mp4").read_bytes()
    corrupt.write_bytes(data[: len(data) // 20])  # the index is intact (faststart): it probes, then barely decodes
    monkeypatch.setenv("MONTAGE_K8S_RETRIES", "1")
    crash = Fault("crash", "analysis", "analysis-0003")  # clips sort: 0 is the broken one, 3 is "clip 2.mp4"
    proc, cluster = await _run_k8s(kube, volume, tmp_path / "out.mp4", [crash])
    assert proc.returncode == 0, proc.stderr
    runs: dict[str, list[str]] = {}
    for job, shard, _ in cluster.started:
        runs.setdefault(shard, []).append(job)
    # bad input (exit 3): the pod failure policy fails the index at once, and it is not resubmitted
    assert len(runs["analysis-0000"]) == 1, runs
    assert f"warning: skipping {corrupt}: truncated or damaged" in proc.stderr
    # a worker that always crashes: backoffLimitPerIndex 1 (2 pods) per Job, 3 Jobs, then it is given up
    assert len(runs["analysis-0003"]) == 6 and len(set(runs["analysis-0003"])) == 3, runs
    assert "exited with 139 (Error)" in proc.stderr
    assert all(len(runs[f"analysis-{k:04d}"]) == 1 for k in (1, 2, 4)), runs
    assert (tmp_path / "out.mp4").exists()  # the montage is made from the other clips
    logs = await asyncio.to_thread(run_cli, "logs", _last_job_id())
    assert "bad input: " in logs.stdout and "truncated or damaged" in logs.stdout
    assert logs.stdout.count(": exited with 139 (Error)") == 2 * 6  # six pods: in their headers and the summary


async def test_auto_in_a_mixed_cluster_uses_each_vendor_and_falls_back_to_cpu(
        kube: Any, volume: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """AMD and NVIDIA nodes configured; no NVIDIA GPU is free: those shards go to CPU nodes."""
    monkeypatch.setenv("MONTAGE_GPU_VENDORS", "amd,nvidia")
    monkeypatch.setenv("MONTAGE_K8S_PENDING_TIMEOUT", "1")
    local = await asyncio.to_thread(run_cli, "run", str(volume / "clips"), "--music", str(volume / "music.wav"),
                                    "-o", str(tmp_path / "local.mp4"), "--no-cache", *RUN,
                                    env={"MONTAGE_CACHE_DIR": str(tmp_path / "local-cache")})
    assert local.returncode == 0, local.stderr
    busy = Fault("unschedulable", "render", resource="nvidia.com/gpu")
    proc, cluster = await _run_k8s(kube, volume, tmp_path / "k8s.mp4", [busy])
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "k8s.timeline.json").read_text() == (tmp_path / "local.timeline.json").read_text()
    jobs = {key[2]: kube.objects[key].last.raw for key in kube.objects if key[0].plural == "jobs"}  # deleted too
    limits = {name: job["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]
              for name, job in jobs.items() if job["metadata"]["labels"]["montage/stage"] == "render"}
    assert sorted(sorted(set(v) - {"memory"}) for v in limits.values()) == [[], ["amd.com/gpu"], ["nvidia.com/gpu"]]
    assert "unschedulable: 0/2 nodes are available: 2 Insufficient nvidia.com/gpu" in proc.stderr
    # the AMD pods resolved their own encoder: this machine has no AMD GPU, so they said so and used software
    amd_pods = [p for p in cluster.logs.iterdir() if any(p.name.startswith(n) for n, v in limits.items()
                                                         if "amd.com/gpu" in v)]
    assert amd_pods and all("accelerator 'vaapi' is not available" in p.read_text() for p in amd_pods)


async def test_image_pull_failure_fails_fast_with_the_diagnosis(kube: Any, volume: Path, tmp_path: Path,
                                                               registry: tuple[str, str],
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """The registry has the image, yet the nodes cannot pull it (a node-side credential or network problem);
    once the pull error has outlasted its grace (a registry's passing 429 would not), the run stops."""
    monkeypatch.setenv("MONTAGE_K8S_PULL_GRACE", "2")
    proc, cluster = await _run_k8s(kube, volume, tmp_path / "out.mp4", [Fault("image", "analysis")])
    assert proc.returncode == 1
    pinned = f"{registry[0]}/{REPO}@{registry[1]}"  # the tag was resolved to its digest before submitting
    (error,) = _errors(proc.stderr)  # one line: the cluster's problem, not each clip's
    assert f"cannot pull image {pinned}: ImagePullBackOff" in error
    assert not (tmp_path / "out.mp4").exists()
    assert not [shard for _, shard, _ in cluster.started if shard]  # no worker ran: nothing to wait for


async def test_an_image_pull_error_that_clears_within_the_grace_is_waited_out(
        kube: Any, volume: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A registry's passing refusal (429): every analysis pod fails to pull for 3 s (ErrImagePull, then
    ImagePullBackOff), then pulls and runs. The run waits, and no shard fails or runs twice."""
    monkeypatch.setenv("MONTAGE_K8S_PULL_GRACE", "30")
    proc, cluster = await _run_k8s(kube, volume, tmp_path / "out.mp4", [Fault("image", "analysis", seconds=3)])
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "out.mp4").exists()
    analysis = [shard for _, shard, _ in cluster.started if shard.startswith("analysis-")]
    assert sorted(analysis) == [f"analysis-{k:04d}" for k in range(len(SHOTS))]  # each ran, once
    failing = {pod for pod in cluster.pull_failures if "-analys-" in pod}
    assert len(failing) == len(SHOTS)  # every analysis pod did fail to pull first
    waited = [line for line in proc.stderr.splitlines() if "waiting up to 30 s for the pull to succeed" in line]
    assert waited and all("ErrImagePull" in line or "ImagePullBackOff" in line for line in waited), proc.stderr
    assert {line.split("pod ", 1)[1].split(":", 1)[0] for line in waited} <= failing
    # no shard failed, none was retried: every one is done at its first attempt
    shards = JobStore().shards(_last_job_id())
    assert shards and {(row["state"], row["attempts"], row["error"]) for row in shards} == {("done", 1, "")}, shards
    assert not [line for line in proc.stderr.splitlines() if line.startswith("error:") or "; retrying" in line]


async def test_resume_after_the_coordinator_died_reaps_its_jobs_and_redoes_nothing_finished(
        kube: Any, volume: Path, tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys
    import time

    with FakeCluster(_api(), "montage", volume.parent / "pod-logs") as cluster:
        serve_pod_logs(kube, cluster)
        coordinator = subprocess.Popen(
            [sys.executable, "-m", "montage_core", "run", str(volume / "clips"), "--music", str(volume / "music.wav"),
             "-o", str(tmp_path / "out.mp4"), "--backend", "k8s", *RUN], stderr=subprocess.DEVNULL,
            env={**os.environ, "MONTAGE_K8S_PARALLELISM": "1"})  # one pod at a time: the Job outlives the crash
        deadline = time.monotonic() + 120
        while not [s for s in cluster.succeeded if s.startswith("analysis-")] and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        coordinator.send_signal(signal.SIGKILL)  # mid-analysis: its Job goes on in the cluster
        coordinator.wait()
        # ... and stays unfinished (no room for its next pods) until the resumed coordinator deals with it
        cluster.full = {name for (res, _, name) in kube.objects if res.plural == "jobs"}
        finished = {s for s in cluster.succeeded if s.startswith("analysis-")}
        assert 1 <= len(finished) < len(SHOTS), finished
        resumed = await asyncio.to_thread(run_cli, "resume", _last_job_id())
    assert resumed.returncode == 0, resumed.stderr
    assert "left running by an earlier coordinator of job" in resumed.stderr
    runs: dict[str, int] = {}
    for _, shard, _ in cluster.started:
        runs[shard] = runs.get(shard, 0) + 1
    assert all(runs[shard] == 1 for shard in finished), runs  # finished before the crash: never redone
    assert (tmp_path / "out.mp4").exists()


async def test_broll_planning_scores_the_script_in_pods(kube: Any, volume: Path, tmp_path: Path) -> None:
    """A third kind of shard (the B-roll planner's script scoring) runs as its own Indexed Job."""
    script = volume / "voice over.txt"
    script.write_text("Bright colours\nA moving pattern\nStill frames\n")
    proc, cluster = await _run_k8s(kube, volume, tmp_path / "broll.mp4", [], "--planner", "broll",
                                   "--script", str(script), "--set", "min_sharpness=0")
    assert proc.returncode == 0, proc.stderr
    assert sum(shard.startswith("broll-") for _, shard, _ in cluster.started) == 1
    stages = {kube.objects[k].last.raw["metadata"]["labels"]["montage/stage"] for k in kube.objects
              if k[0].plural == "jobs"}
    assert stages == {"preflight", "analysis", "plan", "render"}


def _errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


async def test_a_job_whose_pods_are_never_created_is_not_waited_for_forever(
        kube: Any, volume: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No event says why (a Role without "list events", an old cluster): the timeout and the likely causes."""
    monkeypatch.setenv("MONTAGE_K8S_PENDING_TIMEOUT", "3")
    proc, cluster = await _run_k8s(kube, volume, tmp_path / "out.mp4", [Fault("no-pods", "analysis")], timeout=120)
    assert proc.returncode == 1, proc.stderr
    (error,) = _errors(proc.stderr)
    assert "was created in 3 s: a ResourceQuota, Pod Security admission or a missing service account" in error
    assert "kubectl describe job montage-" in error and not (tmp_path / "out.mp4").exists()


QUOTA = ("exceeded quota: compute, requested: limits.memory=2Gi, used: limits.memory=15Gi, "
         "limited: limits.memory=16Gi")
PSA = ('violates PodSecurity "restricted:latest": allowPrivilegeEscalation != false (container "worker" must set '
       "securityContext.allowPrivilegeEscalation=false)")


@pytest.mark.parametrize("fault,timeout,expected", [
    # a quota may free up as other pods end: waited for, up to the pending timeout
    (Fault("no-pods", "analysis", message=QUOTA), "3", f'cannot create pods: FailedCreate: pods "{{job}}-0-" is '
                                                       f"forbidden: {QUOTA}"),
    # admission says the same on every try: at once, whatever the timeout
    (Fault("no-pods", "analysis", message=PSA), "600", f'cannot create pods: FailedCreate: pods "{{job}}-0-" is '
                                                       f"forbidden: {PSA}"),
    (Fault("condition", "analysis", condition=("Failed", "DeadlineExceeded", "Job was active longer than specified "
                                                                             "deadline")),
     "600", "failed: DeadlineExceeded: Job was active longer than specified deadline"),
    (Fault("condition", "analysis", condition=("Suspended", "JobSuspended", "Job suspended")), "3",
     "stayed suspended for 3 s (JobSuspended: Job suspended): a queueing controller (Kueue) holds it"),
    # scheduled, and never started: the pod's own Warning event
    (Fault("mount", "analysis"), "3", "cannot run: pod {job}-"),
], ids=["quota", "pod-security", "deadline", "suspended", "mount"])
async def test_a_job_that_cannot_run_ends_the_run_in_one_line_quoting_the_cluster(
        kube: Any, volume: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fault: Fault, timeout: str,
        expected: str) -> None:
    import time

    monkeypatch.setenv("MONTAGE_K8S_PENDING_TIMEOUT", timeout)
    started = time.monotonic()
    proc, cluster = await _run_k8s(kube, volume, tmp_path / "out.mp4", [fault], timeout=240)
    assert proc.returncode == 1, proc.stderr
    assert time.monotonic() - started < 200  # a 600 s timeout was not waited out
    (error,) = _errors(proc.stderr)
    job = next(name for (res, _, name) in kube.objects if res.plural == "jobs" and "-analys-" in name)
    assert error.startswith(f"error: Job {job} ") and expected.format(job=job) in error, error
    if fault.kind == "mount":
        assert "did not start in 3 s: FailedMount: MountVolume.SetUp failed for volume \"montage-data\"" in error
    waited = [line for line in proc.stderr.splitlines() if "waiting up to" in line]
    assert bool(waited) == (fault.message == QUOTA or fault.kind == "mount"), proc.stderr
    # every analysis shard failed with that line, and the job with it; no clip is blamed
    shards = JobStore().shards(_last_job_id())
    assert shards and {(row["state"], row["error"]) for row in shards} == {("failed", error[len("error: "):])}
    assert JobStore().job(_last_job_id())["error"] == error[len("error: "):]
    assert "skipping" not in proc.stderr and not [shard for _, shard, _ in cluster.started if shard]
    assert not (tmp_path / "out.mp4").exists()


async def test_a_deleted_job_ends_the_run_in_one_line_and_resume_finishes_it(
        kube: Any, volume: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The analysis Job is deleted (by someone else) after its first shard: the run says so in one
    line, and ``montage resume`` runs the rest without redoing the finished shard."""
    monkeypatch.setenv("MONTAGE_K8S_PARALLELISM", "1")  # one pod at a time: shards are left when it goes
    out = tmp_path / "out.mp4"
    with FakeCluster(_api(), "montage", volume.parent / "pod-logs") as cluster:
        cluster.faults = [Fault("delete-job", "analysis", times=1)]
        serve_pod_logs(kube, cluster)
        proc = await asyncio.to_thread(run_cli, "run", str(volume / "clips"), "--music", str(volume / "music.wav"),
                                       "-o", str(out), "--backend", "k8s", *RUN)
        assert proc.returncode == 1, proc.stderr
        job_id = _last_job_id()
        (deleted,) = cluster.deleted
        assert _errors(proc.stderr) == [
            f"error: Job {deleted} was deleted while it ran (by someone else, or a namespace clean-up); "
            f"`montage resume {job_id}` runs its unfinished shards again"], proc.stderr
        finished = [s for s in cluster.succeeded if s.startswith("analysis-")]
        assert 1 <= len(finished) < len(SHOTS)
        resumed = await asyncio.to_thread(run_cli, "resume", job_id)
    assert resumed.returncode == 0, resumed.stderr
    assert out.exists() and JobStore().job(job_id)["state"] == "done"
    runs: dict[str, int] = {}
    for _, shard, _ in cluster.started:
        runs[shard] = runs.get(shard, 0) + 1
    assert all(runs[shard] == 1 for shard in finished), runs  # done before the deletion: never redone
    assert all(runs.get(f"analysis-{k:04d}") for k in range(len(SHOTS))), runs


def _live_jobs() -> list[str]:
    from kubernetes import client

    return [j.metadata.name for j in client.BatchV1Api(_api()).list_namespaced_job("montage").items]


async def _start_k8s_run(cluster: FakeCluster, volume: Path, out: Path) -> tuple[Any, str]:
    """A real coordinator (``montage run --backend k8s``), one pod at a time, once its first analysis
    pod runs; its standard error goes to ``out`` + ``.log``."""
    import subprocess
    import sys
    import time

    with open(f"{out}.log", "wb") as log:
        coordinator = subprocess.Popen(
            [sys.executable, "-m", "montage_core", "run", str(volume / "clips"), "--music",
             str(volume / "music.wav"), "-o", str(out), "--backend", "k8s", *RUN], stderr=log,
            env={**os.environ, "MONTAGE_K8S_PARALLELISM": "1"})
    deadline = time.monotonic() + 120
    while not any(info["shard"].startswith("analysis-") for _, info in list(cluster.processes.values())):
        if coordinator.poll() is not None or time.monotonic() > deadline:
            coordinator.kill()
            pytest.fail(f"no analysis pod started: {Path(f'{out}.log').read_text()}")
        await asyncio.sleep(0.05)
    return coordinator, _last_job_id()


async def test_cancel_stops_a_running_coordinator_and_its_jobs(kube: Any, volume: Path, tmp_path: Path) -> None:
    with FakeCluster(_api(), "montage", volume.parent / "pod-logs") as cluster:
        serve_pod_logs(kube, cluster)
        coordinator, job_id = await _start_k8s_run(cluster, volume, tmp_path / "out.mp4")
        cancel = await asyncio.to_thread(run_cli, "cancel", job_id)
        code = await asyncio.to_thread(coordinator.wait, 60)
        stderr = Path(f"{tmp_path / 'out.mp4'}.log").read_text()
        assert cancel.returncode == 0, cancel.stderr
        assert cancel.stdout.splitlines() == [f"stopped its coordinator (process {coordinator.pid})",
                                              f"job {job_id} cancelled"]
        assert code == 143, stderr  # stopped as by Ctrl-C (SIGTERM): its own clean-up deleted its Job
        assert f"warning: job {job_id} cancelled" in stderr.splitlines()
        await asyncio.sleep(0.5)  # the fake controller's next round collects the pods of deleted Jobs
        assert await asyncio.to_thread(_live_jobs) == []
        assert not [p for p, _ in cluster.processes.values() if p.poll() is None]  # its pods are gone
    job = JobStore().job(job_id)
    assert job["state"] == "cancelled" and not (tmp_path / "out.mp4").exists()  # not "interrupted": cancelled
    listed = await asyncio.to_thread(run_cli, "jobs")
    assert f"{job_id}  cancelled" in listed.stdout
    again = await asyncio.to_thread(run_cli, "cancel", job_id)
    assert (again.returncode, again.stdout) == (0, f"job {job_id} is already cancelled\n")


async def test_cancel_deletes_the_jobs_a_dead_coordinator_left_and_cleanup_takes_its_folder(
        kube: Any, volume: Path, tmp_path: Path) -> None:
    import signal

    with FakeCluster(_api(), "montage", volume.parent / "pod-logs") as cluster:
        serve_pod_logs(kube, cluster)
        coordinator, job_id = await _start_k8s_run(cluster, volume, tmp_path / "out.mp4")
        coordinator.send_signal(signal.SIGKILL)  # no clean-up: its Job runs on in the cluster
        await asyncio.to_thread(coordinator.wait)
        (left,) = await asyncio.to_thread(_live_jobs)
        folder = volume / "jobs" / job_id
        assert (folder / left / "shards.json").is_file()  # one folder per job on the volume
        cancel = await asyncio.to_thread(run_cli, "cancel", job_id)
        assert cancel.returncode == 0, cancel.stderr
        assert cancel.stdout.splitlines() == [f"deleted Job {left} and its pods", f"job {job_id} cancelled"]
        await asyncio.sleep(0.5)
        assert await asyncio.to_thread(_live_jobs) == []
        assert not [p for p, _ in cluster.processes.values() if p.poll() is None]  # its pods are gone
    assert JobStore().job(job_id)["state"] == "cancelled"

    # the folder it left on the volume: kept while younger than --older-than, listed by --dry-run, then removed
    listed = await asyncio.to_thread(run_cli, "k8s", "cleanup", "--dry-run", "--older-than", "0")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.splitlines()[0].startswith(f"would remove {folder} (cancelled, 0 h ago, ")
    assert folder.is_dir()
    young = await asyncio.to_thread(run_cli, "k8s", "cleanup")
    assert young.stdout.splitlines() == [f"removed 0 folder(s), 0 bytes; kept 0 of running or interrupted jobs, 1 "
                                         f"finished less than 24 h ago, 0 of jobs not in {JobStore().path}"]
    assert folder.is_dir()
    unknown = volume / "jobs" / "20300101-000000"  # montage analyze's: no job in the store, kept
    unknown.mkdir()
    done = await asyncio.to_thread(run_cli, "k8s", "cleanup", "--older-than", "0")
    assert done.stdout.splitlines()[0].startswith(f"removed {folder} (cancelled, ")
    assert done.stdout.splitlines()[-1].endswith("kept 0 of running or interrupted jobs, 0 finished less than 0 h "
                                                 f"ago, 1 of jobs not in {JobStore().path}")
    assert not folder.exists() and unknown.is_dir()
