"""Following a pod's log by timestamp: each poll gets only what is new, none lost or repeated,
through a log rotation and lines that share a timestamp.

The API is kmock; the pod's log is a :class:`k8s_fakes.KubeletLog` whose lines carry chosen
timestamps, served as the API server and kubelet serve them (``timestamps=true`` prefixes the
RFC 3339 stamp, ``sinceTime`` counts in whole seconds and includes its second).
"""

from __future__ import annotations

import asyncio
import random
from pathlib import Path
from typing import Any

import pytest
from k8s_fakes import FakeCluster, KubeletLog, serve_pod_logs, stamp_text

from kubernetes.client import ApiException

from montage_backend_k8s.logfollow import LogCursor, follow_pod_log, since_time, stamp_nanos

S = 1_900_000_000 * 10**9  # a whole second, in ns since the epoch
MS = 10**6


@pytest.fixture
def pod_log(kube: Any, tmp_path: Path) -> tuple[Any, KubeletLog]:
    """The client's CoreV1Api and the log of pod ``worker-0``, served by the fake kubelet."""
    from kubernetes import client

    from montage_backend_k8s.config import api_client

    api = api_client()
    cluster = FakeCluster(api, "montage", tmp_path / "pod-logs")  # only its kubelet logs: no Job controller runs
    log = cluster.pod_logs["worker-0"] = KubeletLog()
    serve_pod_logs(kube, cluster)
    return client.CoreV1Api(api), log


async def _poll(core: Any, cursor: LogCursor) -> list[str]:
    """One poll; kmock serves on the test's event loop, so the (blocking) client call runs in a thread."""
    return await asyncio.to_thread(follow_pod_log, core, "montage", "worker-0", cursor)


@pytest.mark.asyncio
async def test_each_poll_gets_only_new_lines_through_shared_stamps_and_a_rotation(pod_log: tuple[Any, KubeletLog]) -> None:
    core, log = pod_log
    cursor = LogCursor()
    log.write("one", S + 100 * MS)
    log.write("two", S + 200 * MS)
    assert await _poll(core, cursor) == ["one", "two"]
    log.write("three", S + 200 * MS)  # the very same stamp as "two": new all the same
    log.write("four", S + 700 * MS)
    assert await _poll(core, cursor) == ["three", "four"]  # the server sent the whole second again; two were dropped
    assert log.served[-1].count(b"\n") == 4
    assert await _poll(core, cursor) == []
    log.write("five", S + 10**9)
    log.write("six", S + 10**9)
    assert await _poll(core, cursor) == ["five", "six"]
    assert await _poll(core, cursor) == []
    # now that the last line read is in the next second, the earlier second is not sent again
    assert log.served[-1].decode().splitlines() == [f"{stamp_text(S + 10**9)} five", f"{stamp_text(S + 10**9)} six"]
    # the kubelet rotates the log: the new file is shorter than what was read, and all of it is new
    log.rotate()
    log.write("seven", S + 1500 * MS)
    log.write("eight", S + 3 * 10**9)
    assert await _poll(core, cursor) == ["seven", "eight"]
    assert cursor.text() == "one\ntwo\nthree\nfour\nfive\nsix\nseven\neight\n"  # the whole log, as followed
    assert log.served[-1].count(b"\n") == 2  # the new file has only the new lines
    with pytest.raises(ApiException) as gone:  # the API's refusal reaches the caller as the client's own error
        await asyncio.to_thread(follow_pod_log, core, "montage", "worker-9", LogCursor())
    assert gone.value.status == 404


@pytest.mark.asyncio
async def test_random_logs_polls_and_rotations_lose_and_repeat_nothing(pod_log: tuple[Any, KubeletLog]) -> None:
    core, log = pod_log
    rng = random.Random(18)
    cursor = LogCursor()
    written: list[str] = []
    read: list[str] = []
    now = S
    for step in range(60):
        for _ in range(rng.choice([0, 1, 3, 8])):
            now += rng.choice([0, 0, 1, 250 * MS, 999 * MS, 10**9])  # equal stamps, same second, next seconds
            written.append(f"line {len(written)} of step {step}")
            log.write(written[-1], now)
        read += await _poll(core, cursor)
        if rng.random() < 0.2:
            log.rotate()  # after a poll: what was rotated out had been read
            now += 1  # rotating takes time: no line after it has the stamp of one before
    read += await _poll(core, cursor)
    assert read == written and cursor.lines == written
    assert len(log.rotated) > 0 and len(log.current) < len(written)


def test_timestamps_as_kubelets_write_them() -> None:
    assert stamp_nanos("2030-03-17T10:02:03Z") == stamp_nanos("2030-03-17T10:02:03.000000000Z")
    assert stamp_nanos("2030-03-17T10:02:03.5Z") == stamp_nanos("2030-03-17T10:02:03Z") + 500 * MS
    assert stamp_nanos("2030-03-17T10:02:03.000000007+02:00") == stamp_nanos("2030-03-17T08:02:03Z") + 7
    assert stamp_nanos("not a stamp") is None and stamp_nanos("2030-03-17 10:02:03Z") is None
    assert stamp_nanos(stamp_text(S + 123)) == S + 123
    assert since_time(S + 999 * MS) == since_time(S) == stamp_text(S)[:19] + "Z"
