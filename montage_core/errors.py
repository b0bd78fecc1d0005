"""One error family. Only the CLI turns these into exit codes."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any


class MontageError(Exception):
    """Base of every error montage raises on purpose; its message is one line for the user."""

    exit_code = 1


class UsageError(MontageError):
    """A bad value given by the user (an option, a name)."""

    exit_code = 2


class UnknownChoiceError(UsageError):
    """A name that is not among the registered ones; the message lists the known ones."""

    def __init__(self, kind: str, name: str, known: Iterable[str]):
        import difflib

        self.kind, self.name, self.known = kind, name, sorted(known)
        from .catalogue import install_hint

        close = difflib.get_close_matches(name, self.known, n=1, cutoff=0.5)
        hint = install_hint(kind, name) or (f"; did you mean {close[0]!r}?" if close else "")
        super().__init__(f"unknown {kind} {name!r} (known: {', '.join(self.known) or 'none'}){hint}")

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.kind, self.name, self.known))


class InputError(MontageError):
    """A media file that cannot be used; names the file and the problem."""

    def __init__(self, path: str | Path, problem: str):
        self.path, self.problem = str(path), problem
        super().__init__(f"{self.path}: {problem}")

    def __reduce__(self) -> tuple[Any, ...]:  # errors cross process boundaries (worker → coordinator)
        return (type(self), (self.path, self.problem))


class PluginError(MontageError):
    """A plugin broke a contract (duplicate names, bad registration)."""


class UnavailableError(MontageError):
    """A plugin object exists but cannot work on this machine; names the reason."""


class ProblemsError(UsageError):
    """Several problems found before any work (options, inputs); the CLI prints one line each."""

    heading = "the job cannot start"

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__(f"{self.heading}:\n" + "\n".join(f"  {p}" for p in self.problems))

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.problems,))


class PreflightError(ProblemsError):
    """Pre-flight checks found problems; one line each, printed before any work is submitted."""

    exit_code = 1
    heading = "pre-flight failed"


class ShardError(MontageError):
    """A shard failed. ``transient`` says whether retrying it elsewhere may succeed."""

    def __init__(self, message: str, *, transient: bool):
        self.transient = transient
        super().__init__(message)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_shard_error, (str(self), self.transient))


def _shard_error(message: str, transient: bool) -> ShardError:
    return ShardError(message, transient=transient)


class BackendLost(KeyboardInterrupt):
    """The cluster went away under a job (its scheduler stopped, the connection dropped): the job is
    interrupted, not failed, and no clip is blamed; ``montage resume`` finishes it once the cluster
    is back. A ``KeyboardInterrupt`` so that the same clean-up runs as for Ctrl-C."""
