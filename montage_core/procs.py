"""Child processes that never outlive montage: workers, the music process and every ffmpeg.

A coordinator killed with SIGKILL runs no cleanup, so each child must notice on its own:

- ffmpeg and ffprobe get a parent-death signal (Linux ``PR_SET_PDEATHSIG``): the kernel kills
  them when the thread that started them ends. Every such thread waits for its child, so the
  signal only ever fires when the process itself is gone.
- montage's own worker processes run a watchdog thread that sees the coordinator go (it is
  re-parented) and then kills its own children and exits.
"""

from __future__ import annotations

import contextlib
import functools
import glob
import os
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

_PR_SET_PDEATHSIG = 1
#: libc's ``prctl``, set by ``child_options`` in the parent before any child it configures forks
_prctl: Any = None


@functools.lru_cache(maxsize=None)
def _find_prctl() -> Any:
    """libc's ``prctl``, or ``None``. Looked up in the parent, before the first fork, because
    ``_die_with_parent`` runs between fork and exec, where little is safe; and not at import, so
    commands that start no child (listings, ``--help``) load no ctypes. The process's own symbols
    (``CDLL(None)``) hold libc's; ``find_library`` would start ``ldconfig`` to find it."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        pass
    import ctypes.util

    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True).prctl
    except (OSError, AttributeError):  # pragma: no cover - a libc without prctl
        return None


def _die_with_parent() -> None:  # pragma: no cover - runs in the forked child
    _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def child_options() -> dict[str, Any]:
    """``subprocess`` keyword arguments for a child that must die with this process."""
    global _prctl
    _prctl = _find_prctl()
    return {"preexec_fn": _die_with_parent} if _prctl is not None else {}


def _stat_fields(pid: int | str) -> list[bytes]:
    """The fields of ``/proc/PID/stat`` after the command name ([] when there is no such process)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            return handle.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return []


def children_of(pid: int) -> list[int]:
    """Process ids whose parent is ``pid`` (from /proc; empty where there is none)."""
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    return [int(entry) for entry in entries
            if entry.isdigit() and (fields := _stat_fields(entry)) and int(fields[1]) == pid]


def kill_tree(pid: int, sig: int = signal.SIGKILL) -> None:
    """Signal ``pid``'s descendants (deepest first), then ``pid`` itself."""
    for child in children_of(pid):
        kill_tree(child, sig)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


def watch_parent(interval: float = 0.25, on_orphaned: Callable[[], None] | None = None) -> None:
    """In a worker: when the coordinator that started this process is gone, stop everything
    this process started, run ``on_orphaned`` and exit (whatever signal killed the coordinator)."""
    parent = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(interval)
            if os.getppid() != parent:
                for child in children_of(os.getpid()):
                    kill_tree(child)
                if on_orphaned is not None:
                    with contextlib.suppress(Exception):  # best effort: we are leaving either way
                        on_orphaned()
                os._exit(1)

    threading.Thread(target=watch, name="montage-parent-watchdog", daemon=True).start()


def process_start_time(pid: int) -> str:
    """When ``pid`` started (clock ticks since boot), to tell it from a later process with the
    same id; "" when it does not exist."""
    fields = _stat_fields(pid)
    return fields[19].decode() if len(fields) > 19 else ""


def is_running(pid: int, start_time: str) -> bool:
    """Whether process ``pid`` still exists and is the one that started at ``start_time``."""
    if pid <= 0:
        return False
    if os.path.isdir("/proc"):
        fields = _stat_fields(pid)
        if not fields or fields[0] == b"Z":  # a zombie has ended; only its parent has not collected it yet
            return False
        current = process_start_time(pid)
        return bool(current) and (not start_time or current == start_time)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def owner_tag() -> str:
    """``HOST-PID`` for temporary file names, so a later run can tell whose they were."""
    import socket

    return f"{socket.gethostname()}-{os.getpid()}"


def remove_orphaned_temps(folder: Path, prefix: str) -> None:
    """Delete ``prefix`` + ``HOST-PID.…`` temporary files (or folders) in ``folder`` that a process
    of this host left when it was killed (one still running keeps its file)."""
    import socket

    host = socket.gethostname()
    for entry in folder.glob(f"{glob.escape(prefix)}{glob.escape(host)}-*"):
        owner = entry.name[len(prefix) + len(host) + 1 :].split(".", 1)[0]
        if owner.isdigit() and not is_running(int(owner), ""):
            with contextlib.suppress(OSError):
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP: handled like Ctrl-C, so the same cleanup runs."""


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """In the main thread: turn SIGTERM/SIGHUP into :class:`Terminated` while the block runs."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise Terminated(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def stop_resource_tracker() -> None:
    """Stop multiprocessing's resource tracker now rather than some time after we exit, so no
    process of ours outlives the command."""
    if "multiprocessing.resource_tracker" not in sys.modules:
        return  # nothing started one (it is imported before it starts): nothing to stop, nothing to collect
    try:
        import gc
        from multiprocessing import resource_tracker, util

        gc.collect()  # queues and locks no longer used release their semaphores now
        util._exit_function()  # noqa: SLF001 - multiprocessing's own exit clean-up, run before the tracker stops
        tracker = resource_tracker._resource_tracker  # noqa: SLF001 - no public way to stop it
        if getattr(tracker, "_pid", None) is not None:
            tracker._stop()
    except Exception:  # pragma: no cover - best effort at exit
        pass
