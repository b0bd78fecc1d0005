"""Music: the track → its beats, accents and sections (:class:`~montage_core.models.MusicAnalysis`).

The analysis is remembered by the track's content (:mod:`montage_core.music_cache`). When it is
not, it runs on the job's backend as a shard like any other, in the same round as the clips'
analysis shards: on the local backend in a worker process (its crash or its memory cannot take the
coordinator with it), on a Dask cluster on a worker, beside the clips and not on this machine. A
backend whose workers cannot be given the track (``Backend.music_shards`` False: Kubernetes pods
see only the clips they are handed) gets it analysed in a process of its own here, from the
job's start (:mod:`montage_core.isolated`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import MontageError
from ..interfaces import Backend, ProgressEvent, ShardOutcome, ShardTask
from ..models import MusicAnalysis
from ..specs import MusicSpec

#: the music shard's id in a job's analysis round (the clips' are ``analysis-0000``, ``analysis-0001-r000`` …)
MUSIC_SHARD_ID = "music"


class MusicOnBackend:
    """The track's analysis as a shard of the analysis round: :attr:`task` goes into that round,
    :meth:`take` reads its outcome, :meth:`result` is the analysis (the interface of
    ``isolated.IsolatedCall`` and ``DoneCall``)."""

    def __init__(self, path: str, duration: float | None):
        from ..ffmpeg import probe_media

        self.path, self.duration = path, duration
        length = probe_media(path).duration
        total = min(length, duration) if duration else length
        self.task = ShardTask(MUSIC_SHARD_ID, "music", path, MusicSpec(path=path, duration=duration), total)
        self._outcome: ShardOutcome | None = None

    def take(self, outcomes: dict[str, ShardOutcome]) -> None:
        self._outcome = outcomes.get(self.task.id)

    def result(self) -> MusicAnalysis:
        from .. import music_cache

        if self._outcome is None:
            raise MontageError(f"{self.path}: the music was not analysed (its shard never ran)")
        if not self._outcome.ok:
            error = self._outcome.error
            raise MontageError(error if self.path in error else f"{self.path}: {error}")
        music = MusicAnalysis.from_dict(self._outcome.result)
        # A worker on another machine remembered it in its own cache: remember it here too.
        music_cache.store(self.path, self.duration, music)
        return music

    def cancel(self) -> None:
        """Nothing to stop here: the backend stops its shards."""

    def __enter__(self) -> MusicOnBackend:
        return self

    def __exit__(self, *exc: Any) -> None:
        pass


def start_music(path: str | Path, duration: float | None, backend: Backend) -> Any:
    """The track's analysis: remembered (``DoneCall``), a shard for the analysis round
    (:class:`MusicOnBackend`, when the backend takes it), or started now in a process of its own
    (``IsolatedCall``). Each has ``result()``, ``cancel()`` and is a context manager."""
    from .. import music_cache
    from ..isolated import DoneCall, IsolatedCall, analyze_music_checked

    path = str(Path(path).absolute())
    if (known := music_cache.load(path, duration)) is not None:
        return DoneCall(known)
    if backend.music_shards:
        return MusicOnBackend(path, duration)
    return IsolatedCall(analyze_music_checked, (path, duration), "music analysis")


def analyze_music_shard(task: ShardTask, emit: Callable[[ProgressEvent], None]) -> dict[str, Any]:
    """Shard function (runs in a worker): analyse the track, remember it in this worker's cache."""
    from ..isolated import analyze_music_checked

    spec: MusicSpec = task.payload
    emit(ProgressEvent.of(task, "started"))
    music = analyze_music_checked(spec.path, spec.duration)
    emit(ProgressEvent.of(task, "done", task.total))
    return music.to_dict()
