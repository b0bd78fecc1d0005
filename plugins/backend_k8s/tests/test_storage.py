"""The storage pre-flight against real directories and a really read-only mount."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from montage_backend_k8s.storage import mount_of, probe_storage

# Run in a child process with its own mount namespace: the read-only bind mount is seen by that
# process only and disappears with it. Prints the report as JSON; exits 77 when mounting is refused.
PROBE_SCRIPT = """
import json, subprocess, sys
from montage_backend_k8s.storage import probe_storage
d = sys.argv[1]
for args in (["mount", "--bind", d, d], ["mount", "-o", "remount,bind,ro", d]):
    if subprocess.run(args, capture_output=True).returncode:
        sys.exit(77)
print(json.dumps(probe_storage(d, min_free_bytes=0).to_dict()))
"""


def _probe_in_namespace(d: Path) -> dict[str, Any] | None:
    """The report from a child in its own mount namespace, or None when this machine does not permit one."""
    try:
        done = subprocess.run(["unshare", "-m", sys.executable, "-c", PROBE_SCRIPT, str(d)],
                              check=False, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return json.loads(done.stdout) if done.returncode == 0 else None


def _no_probe_left(d: Path) -> bool:
    return not any(p.name.startswith(".montage-probe-") for p in d.iterdir())


def test_writable_directory(tmp_path: Path) -> None:
    r = probe_storage(tmp_path, min_free_bytes=0)
    assert r.ok and r.problem == ""
    assert r.fs_type and r.mount_point and os.path.realpath(tmp_path).startswith(r.mount_point)
    assert r.free_bytes > 0
    assert _no_probe_left(tmp_path)
    assert r.describe().startswith(f"{tmp_path}: {r.fs_type} mounted at {r.mount_point}, ")
    assert r.describe().endswith("free, write/read/delete OK")
    assert r.to_dict()["ok"] is True


def test_missing_path(tmp_path: Path) -> None:
    r = probe_storage(tmp_path / "data")
    assert not r.ok
    assert r.problem == (f"{tmp_path / 'data'} does not exist in the pod: mount the PVC there "
                         "(volumeMounts mountPath) or set MONTAGE_MOUNT_PATH")
    assert r.describe() == r.problem
    # the coordinator's own view of the volume: this machine, and the setting for it
    here = probe_storage(tmp_path / "data", where="here")
    assert here.problem == (f"{tmp_path / 'data'} does not exist on this machine: mount the shared volume there (the "
                            "PVC the pods mount) or set MONTAGE_LOCAL_MOUNT to where this machine mounts it")
    (tmp_path / "file").write_text("x")
    assert probe_storage(tmp_path / "file", where="here").problem == (
        f"{tmp_path / 'file'} is not a directory on this machine: point MONTAGE_LOCAL_MOUNT at the directory this "
        "machine mounts the shared volume on")


def test_not_a_directory(tmp_path: Path) -> None:
    (tmp_path / "data").write_text("x")
    r = probe_storage(tmp_path / "data")
    assert not r.ok and "is not a directory" in r.problem and "\n" not in r.problem


def test_too_little_free_space(tmp_path: Path) -> None:
    r = probe_storage(tmp_path, min_free_bytes=1 << 50)
    assert not r.ok and r.free_bytes > 0
    assert r.problem.startswith(f"{tmp_path} has only ")
    assert "free, less than the 1024.0 TiB needed: grow the PVC" in r.problem
    assert _no_probe_left(tmp_path)


def test_read_only_mount_or_unwritable_directory(tmp_path: Path) -> None:
    """A read-only bind mount where the kernel lets us make one, else a directory this uid cannot write."""
    report = None
    if shutil.which("unshare") and shutil.which("mount"):
        report = _probe_in_namespace(tmp_path)
    if report is not None:
        assert not report["ok"]
        assert report["problem"] == (f"{tmp_path} is mounted read-only: make the PVC ReadWriteMany and the mount "
                                     "writable (no readOnly: true in volumeMounts, an rw export)")
        assert report["free_bytes"] > 0 and report["fs_type"]
        return
    # No mount namespace here: the same check through permissions. Root ignores mode bits, so as root
    # the probe runs with effective uid 65534 ("nobody"; the saved uid stays 0 so root comes back) in a
    # world-readable directory outside root's private tmp. In-process because a child interpreter under
    # /root could not even be started as that uid.
    d = Path(tempfile.mkdtemp(prefix="montage-ro-", dir="/tmp"))
    try:
        d.chmod(0o555)
        uid = 65534 if os.geteuid() == 0 else os.geteuid()
        if uid != os.geteuid():
            os.seteuid(uid)
        try:
            report = probe_storage(d, min_free_bytes=0).to_dict()
        finally:
            if os.getuid() == 0:
                os.seteuid(0)
        assert not report["ok"]
        assert report["problem"].startswith(f"{d} is not writable by uid {uid} (creation of a probe file refused)")
        assert "fsGroup" in report["problem"]
    finally:
        d.chmod(0o755)
        shutil.rmtree(d)


def test_mountinfo_longest_prefix_and_escapes(tmp_path: Path) -> None:
    info = tmp_path / "mountinfo"
    info.write_text(
        "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n"
        "30 22 0:40 / /data rw,relatime shared:2 - nfs4 server:/export rw,vers=4.2\n"
        "31 22 0:41 / /database rw shared:3 - xfs /dev/sdb rw\n"
        "32 30 0:42 / /data/my\\040clips rw shared:4 - tmpfs tmpfs rw\n"
    )
    assert mount_of("/data/jobs/1", info) == ("nfs4", "/data")
    assert mount_of("/data", info) == ("nfs4", "/data")
    assert mount_of("/databases", info) == ("ext4", "/")
    assert mount_of("/data/my clips/a.mp4", info) == ("tmpfs", "/data/my clips")
    assert mount_of("/x", tmp_path / "absent") == ("", "")
