"""Pre-flight for the shared storage: is the mount path there, and can this pod write, read and delete on it?

Every shard reads its inputs from and writes its outputs to the shared volume, so a missing or read-only
mount fails every pod of a stage. Checking the mode bits is not enough (NFS squashes root, CSI drivers
mount read-only, quotas refuse writes), so a real probe file is written, synced, read back and removed.
The file system type and mount point come from /proc/self/mountinfo so the report says *what* is mounted.
POSIX only (os.statvfs), which is what pods run.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import socket
import stat
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

MOUNTINFO = Path("/proc/self/mountinfo")


@dataclass
class StorageReport:
    path: str
    ok: bool
    fs_type: str = ""  # "nfs4", "ext4", "overlay", ...; "" when /proc/self/mountinfo cannot tell
    mount_point: str = ""
    free_bytes: int = 0  # available to unprivileged users (f_bavail), which is what the pod's uid gets
    problem: str = ""  # one line when not ok

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        if not self.ok:
            return self.problem
        where = f"{self.fs_type} mounted at {self.mount_point}" if self.fs_type else "file system type unknown"
        return f"{self.path}: {where}, {_size(self.free_bytes)} free, write/read/delete OK"


def _size(n: int) -> str:
    for unit, scale in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} bytes"


def _unescape(field: str) -> str:
    """mountinfo writes space, tab, newline and backslash in paths as octal escapes (\\040 ...)."""
    for code in ("\\040", "\\011", "\\012", "\\134"):
        field = field.replace(code, chr(int(code[1:], 8)))
    return field


def mount_of(resolved: str, mountinfo: Path = MOUNTINFO) -> tuple[str, str]:
    """(fs type, mount point) of the longest mount point containing ``resolved``; ("", "") when unknown.

    A later line for the same mount point wins: it was mounted over the earlier one.
    """
    best_type, best_point = "", ""
    try:
        lines = mountinfo.read_text().splitlines()
    except OSError:
        return "", ""
    for line in lines:
        before, sep, after = line.partition(" - ")
        fields = before.split()
        if not sep or len(fields) < 5 or not after.split():
            continue
        point = _unescape(fields[4])
        inside = resolved == point or resolved.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best_point):
            best_type, best_point = after.split()[0], point
    return best_type, best_point


@dataclass(frozen=True)
class Place:
    """Where the probe runs, for its messages: in a pod (``mount_path``, the PVC the kubelet
    mounts) or on the coordinator's machine (``local_mount``, the same volume mounted there)."""

    name: str  # "in the pod" / "on this machine"
    missing: str  # how to fix a path that does not exist
    not_a_directory: str
    permission: str  # how to let this user write
    read_only: str


PLACES = {
    "pod": Place("in the pod", "mount the PVC there (volumeMounts mountPath) or set MONTAGE_MOUNT_PATH",
                 "point MONTAGE_MOUNT_PATH at the directory the PVC is mounted on",
                 "chown/chmod the export, or set the pod's fsGroup (securityContext.fsGroup)",
                 "make the PVC ReadWriteMany and the mount writable (no readOnly: true in volumeMounts, an rw export)"),
    "here": Place("on this machine", "mount the shared volume there (the PVC the pods mount) or set "
                  "MONTAGE_LOCAL_MOUNT to where this machine mounts it",
                  "point MONTAGE_LOCAL_MOUNT at the directory this machine mounts the shared volume on",
                  "chown/chmod the export, or run montage as a user the export lets write",
                  "mount it read-write here (an rw export, no ro mount option)"),
}


def _write_problem(path: str, exc: OSError, stage: str, place: Place) -> str:
    """The one line for a failed probe step, saying which setting fixes it."""
    # a pod's lines are quoted as the cluster's (pre-flight's "in the cluster (PVC …)"); this machine's say so
    where = "" if place is PLACES["pod"] else f" {place.name}"
    if exc.errno == errno.EROFS:
        return f"{path} is mounted read-only{where}: {place.read_only}"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return (f"{path} is not writable by uid {os.geteuid()}{where} ({stage} of a probe file refused): "
                f"{place.permission}")
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"{path} is full ({exc.strerror}): grow the PVC or remove old job outputs"
    return f"{path}: {stage} of a probe file failed ({exc.strerror or exc}): check the volume and its mount"


def probe_storage(path: str | Path, *, min_free_bytes: int = 1 << 30, where: str = "pod") -> StorageReport:
    """Write, fsync, read back and delete a probe file under ``path``; never raises for storage trouble.

    ``where``: ``pod`` (a worker's mount, ``mount_path``) or ``here`` (the coordinator's view of the
    same volume, ``local_mount``): the problem lines name that place and its setting."""
    place = PLACES[where]
    shown = str(path)
    try:
        if not stat.S_ISDIR(os.stat(path).st_mode):
            here = "" if where == "pod" else f" {place.name}"
            return StorageReport(shown, False, problem=f"{shown} is not a directory{here}: {place.not_a_directory}")
    except FileNotFoundError:
        return StorageReport(shown, False, problem=f"{shown} does not exist {place.name}: {place.missing}")
    except OSError as exc:  # EACCES on a parent, ESTALE from a gone NFS server
        return StorageReport(shown, False, problem=f"{shown} cannot be reached ({exc.strerror or exc}): check the "
                                                   "mount and the permissions of its parent directories")
    resolved = os.path.realpath(path)
    fs_type, mount_point = mount_of(resolved)
    report = StorageReport(shown, False, fs_type, mount_point)
    try:
        vfs = os.statvfs(resolved)
        report.free_bytes, free_known = vfs.f_bavail * vfs.f_frsize, True
    except OSError:
        free_known = False  # some FUSE mounts do not answer statvfs; the write below is the real test

    # hostname, pid and a random part: many pods probe the same shared directory at once
    probe = os.path.join(resolved, f".montage-probe-{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(4)}")
    data, stage = os.urandom(64 * 1024), "creation"
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            stage = "writing"
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)  # reach the server: a network file system may only fail here (quota, ENOSPC)
        finally:
            os.close(fd)
        stage = "reading back"
        with open(probe, "rb") as f:
            same = f.read() == data
        stage = "deletion"
        os.unlink(probe)
    except OSError as exc:
        report.problem = _write_problem(shown, exc, stage, place)
        return report
    finally:
        if os.path.lexists(probe):
            with contextlib.suppress(OSError):  # the problem line already says deletion failed
                os.unlink(probe)
    if not same:
        report.problem = (f"{shown} gave back other bytes than were written to a probe file: the mount loses or "
                          "caches writes; check the NFS/CSI mount options (no async, sync on close)")
    elif free_known and report.free_bytes < min_free_bytes:
        report.problem = (f"{shown} has only {_size(report.free_bytes)} free, less than the "
                          f"{_size(min_free_bytes)} needed: grow the PVC or remove old job outputs")
    else:
        report.ok = True
    return report
