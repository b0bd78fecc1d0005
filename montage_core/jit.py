"""Numba JIT caches that cannot poison a run: montage owns where they live and who writes them.

Numba's on-disk cache is not safe when several processes compile the same function at once:
its index (``.nbi``) and machine-code files (``.N.nbc``) are read, extended and rewritten by each
process on its own, and can end up mapping one signature to another's code. Every later load of
that entry then dies with SIGSEGV. So:

- the cache lives in a folder of montage's own, one per montage/Numba/Python version, under the
  montage cache folder (unless the user set ``NUMBA_CACHE_DIR``), never inside site-packages;
- the first compilation of each kernel set (montage's analyzers, a plugin's, librosa's) happens
  under an exclusive file lock; once a set is known to be warm, loads take a shared lock, so they
  run side by side but never beside a compilation;
- a process that still dies from a signal gets the cache cleared (``clear_jit_cache``) and its
  work retried once by the caller.

This module imports nothing heavy: the CLI calls :func:`configure_jit_cache` before anything
imports Numba.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

log = logging.getLogger("montage.jit")

#: set beside ``NUMBA_CACHE_DIR`` when montage chose it, so a child process with another
#: ``MONTAGE_CACHE_DIR`` chooses again instead of taking it for the user's own setting
OWNED_MARK = "MONTAGE_NUMBA_CACHE_DIR"
#: signals that mean "the process crashed" rather than "someone stopped it"
CRASH_SIGNALS = frozenset({signal.SIGSEGV, signal.SIGBUS, signal.SIGILL, signal.SIGABRT, signal.SIGFPE})
CLEAR_HINT = "montage cache --clear-jit"

_warm_sets: set[str] = set()
_warm_guard = threading.Lock()


def distribution_version(distribution: str) -> str:
    # Every command names the JIT folder by Numba's version, and importlib.metadata would read
    # every installed distribution to find it: the one ``<name>-<version>.dist-info`` folder
    # beside the (unimported) package says it for a stat.
    import importlib.util

    try:
        spec = importlib.util.find_spec(distribution)
    except (ImportError, ValueError):
        spec = None
    if spec is not None and spec.origin and spec.submodule_search_locations:
        site = Path(spec.origin).parent.parent
        prefix = f"{distribution.replace('-', '_')}-"
        try:
            found = [n for n in os.listdir(site) if n.startswith(prefix) and n.endswith(".dist-info")]
        except OSError:
            found = []
        if len(found) == 1:
            return found[0][len(prefix):-len(".dist-info")]
    from importlib import metadata

    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "none"


def _user_cache_dir() -> str | None:
    """``NUMBA_CACHE_DIR`` when the user (not montage) set it."""
    value = os.environ.get("NUMBA_CACHE_DIR")
    if value and value != os.environ.get(OWNED_MARK):
        return value
    return None


def jit_cache_dir() -> Path:
    """Where compiled kernels are cached: the user's ``NUMBA_CACHE_DIR``, else a folder per
    montage, Numba and Python version under the montage cache folder."""
    user = _user_cache_dir()
    if user:
        return Path(user)
    from . import __version__
    from .config import cache_dir

    python = f"py{sys.version_info.major}{sys.version_info.minor}"
    return cache_dir() / "jit" / f"montage-{__version__}-numba-{distribution_version('numba')}-{python}"


def configure_jit_cache() -> Path:
    """Point Numba at :func:`jit_cache_dir` (before it is imported; reloaded if it was)."""
    folder = jit_cache_dir()
    if not _user_cache_dir():
        os.environ["NUMBA_CACHE_DIR"] = os.environ[OWNED_MARK] = str(folder)
        if "numba" in sys.modules:  # kernels decorated from now on see the new folder
            from numba.core import config

            config.reload_config()
    return folder


@contextlib.contextmanager
def jit_lock(group: str, exclusive: bool = True) -> Iterator[Path]:
    """Hold one kernel group's lock in the JIT cache folder (exclusive to compile, shared to load).

    Groups share no compiled function (montage's kernels, a plugin's, librosa's), so they may
    compile side by side; a function is only ever compiled by one process at a time.
    """
    folder = configure_jit_cache()
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / f".lock-{group}", "a+b") as handle:
        mode = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
        try:
            fcntl.flock(handle, mode | fcntl.LOCK_NB)
        except BlockingIOError:
            log.debug("waiting for another process compiling %s kernels in %s", group, folder)
            fcntl.flock(handle, mode)
        try:
            yield folder
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _stamp(name: str, sources: Sequence[str]) -> str:
    """A kernel set's identity: its name and its source files' sizes and times (a changed
    source recompiles, so it must not count as warm)."""
    import hashlib  # here, not at import: every command imports this module (the CLI, backend_local)

    parts = [name]
    for source in sources:
        try:
            st = os.stat(source)
            parts.append(f"{source}\0{st.st_size}\0{st.st_mtime_ns}")
        except OSError:
            parts.append(source)
    return hashlib.blake2b("\n".join(parts).encode(), digest_size=8).hexdigest()


def ensure_warm(name: str, sources: Sequence[str], warm: Callable[[], None], group: str = "") -> None:
    """Run ``warm`` (which compiles or loads kernel set ``name`` of ``group``) once per process, safely.

    The first process to warm a set compiles it alone (the group's exclusive lock) and leaves a
    marker; the others wait for it and then load the cached code under a shared lock.
    """
    group = group or name
    stamp = _stamp(name, sources)
    with _warm_guard:
        if stamp in _warm_sets:
            return
        folder = configure_jit_cache()
        marker = folder / f".warm-{name}-{stamp}"
        if marker.exists():
            with jit_lock(group, exclusive=False):
                if marker.exists():  # not cleared while we waited
                    warm()
                    _warm_sets.add(stamp)
                    return
        with jit_lock(group, exclusive=True):
            warm()
            marker.touch()
        _warm_sets.add(stamp)


#: the Numba threads a worker's current shard may use (set per shard by the backend)
SHARD_THREADS = "MONTAGE_SHARD_THREADS"


def thread_share(cores: int, workers: int, shards: int) -> int:
    """Cores per running shard: a job with fewer shards than workers gives each the idle ones."""
    return max(1, cores // max(1, min(workers, shards)))


def use_thread_share(quarter: bool = False) -> None:
    """Run this process's Numba kernels on the threads its shard was given (``SHARD_THREADS``),
    or a quarter of them (at least one) beside other work that keeps those cores busy; at most
    the pool Numba started with. Nothing when no share was set."""
    share = os.environ.get(SHARD_THREADS, "")
    if not share.isdigit():
        return
    import numba

    threads = int(share) // 4 if quarter else int(share)
    numba.set_num_threads(max(1, min(threads, numba.config.NUMBA_NUM_THREADS)))


def clear_jit_cache() -> int:
    """Delete every cached kernel and warm marker (holding every group's lock); return the count.

    Also removes kernel caches that older montage releases left inside the installed package.
    """
    removed = 0
    package = Path(__file__).parent
    folder = configure_jit_cache()
    folder.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as locks:
        for lock in sorted(folder.glob(".lock-*")):  # one order everywhere: no deadlock
            locks.enter_context(jit_lock(lock.name.removeprefix(".lock-"), exclusive=True))
        for root in (folder, package):
            for entry in root.rglob("*"):
                if entry.is_file() and (entry.suffix in (".nbi", ".nbc") or entry.name.startswith(".warm-")):
                    entry.unlink(missing_ok=True)
                    removed += 1
    with _warm_guard:
        _warm_sets.clear()
    return removed


def recover_from_crash(who: str, signum: int) -> None:
    """``who`` crashed from ``signum``: clear the JIT cache (the usual cause) and say so; the caller retries once."""
    removed = clear_jit_cache()
    log.warning("%s crashed (%s); cleared the JIT cache in %s (%d files) and retrying once",
                who, signal_name(signum), jit_cache_dir(), removed)


def crashed_again(who: str, signum: int) -> str:
    """The error for a crash after :func:`recover_from_crash` already cleared the cache: what to do."""
    return (f"{who} crashed ({signal_name(signum)}) again after the JIT cache was cleared; run `{CLEAR_HINT}`, "
            "and report it if it keeps happening")


def crash_signal(exitcode: int | None) -> int:
    """The crash signal a process died from (``-11`` → 11, a shell's ``139`` → 11), else 0."""
    if exitcode is None:
        return 0
    number = -exitcode if exitcode < 0 else exitcode - 128 if exitcode > 128 else 0
    return number if number in CRASH_SIGNALS else 0


def signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"
