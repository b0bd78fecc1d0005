"""Analyze: probed clips → shots and per-shot features, one shard per clip (or per time range of a long one).

Cache hits (by content digest, analyzer versions and analysis width) never reach a worker; a
clip that fails is reported and left out, and the others are still used.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from ..errors import InputError, ShardError
from ..interfaces import Backend, ProgressEvent, ShardTask
from ..jobstore import JobStore
from ..models import ClipAnalysis, MediaInfo
from ..plugins import MontageManager
from ..specs import AnalysisSpec
from .probe import ProbedClip, analysis_shard_id

if TYPE_CHECKING:  # pragma: no cover - typing only
    from .music import MusicOnBackend

log = logging.getLogger("montage")

#: clips longer than this many seconds are analyzed as several time-range shards
SHARD_SECONDS = 300.0


def analyze_clips(
    clips: Sequence[ProbedClip], manager: MontageManager, backend: Backend, *, use_cache: bool = True,
    on_event: Callable[[ProgressEvent], None] = lambda e: None, store: JobStore | None = None, job_id: str = "",
    input_args: Sequence[str] = (), music: MusicOnBackend | None = None,
) -> tuple[list[ClipAnalysis], dict[str, str]]:
    """Analyses of the usable clips (in the order given) and ``{clip: problem}`` for the others.

    ``music``: the track's analysis shard, run in the same round (first: it is the longest, and the
    planner waits for it); its outcome is handed to it, read with ``music.result()``.
    """
    from ..analysis import cache
    from ..analysis.analyze import ANALYSIS_WIDTH, analyzer_versions
    from ..engine import run_shards

    versions = analyzer_versions(list(manager.analyzers))
    analyses: dict[str, ClipAnalysis] = {}
    failures: dict[str, str] = {}
    tasks: list[ShardTask] = []
    misses = []
    for clip in clips:
        hit = cache.load(cache.analysis_key(clip.digest, versions, ANALYSIS_WIDTH), clip.path) if use_cache else None
        if hit is not None:
            analyses[clip.path] = hit
        else:
            misses.append(clip)
    pieces = range_pieces(backend, len(misses))
    for clip in misses:
        spec = AnalysisSpec(media=clip.media, digest=clip.digest, analyzers=versions, input_args=list(input_args),
                            use_cache=use_cache)
        shard_id = analysis_shard_id(clip.position)
        ranges = shard_ranges(clip.media, pieces)
        if len(ranges) == 1:
            tasks.append(ShardTask(shard_id, "analysis", clip.path, spec, clip.media.duration))
            continue
        fps = clip.media.fps or 25.0
        for k, (start, count) in enumerate(ranges):
            seconds = (count if count is not None else clip.media.frame_count - start) / fps
            tasks.append(ShardTask(f"{shard_id}-r{k:03d}", "analysis", clip.path,
                                   replace(spec, ranged=True, start_frame=start, frame_count=count), seconds))
    beside = [music.task] if music is not None else []
    outcomes = run_shards(backend, run_stage if beside else analyze_shard, [*beside, *tasks], on_event=on_event,
                          store=store, job_id=job_id) if tasks or beside else {}
    if music is not None:
        music.take(outcomes)
    by_clip: dict[str, list[ShardTask]] = {}
    for task in tasks:
        by_clip.setdefault(task.clip, []).append(task)
    for path, clip_tasks in by_clip.items():
        failed = [outcomes[t.id] for t in clip_tasks if not outcomes[t.id].ok]
        if failed:
            failures[path] = failed[0].error
            on_event(ProgressEvent.of(failed[0].task, "failed", message=failed[0].error,
                                      worker=failed[0].worker or "-"))
            continue
        if not clip_tasks[0].payload.ranged:
            analyses[path] = ClipAnalysis.from_dict(outcomes[clip_tasks[0].id].result)
            continue
        try:
            analyses[path] = merge_ranges(path, clip_tasks, [outcomes[t.id].result["series"] for t in clip_tasks],
                                          manager, use_cache)
        except InputError as exc:
            failures[path] = str(exc)
    for path, error in failures.items():
        log.warning("skipping %s", error if path in error else f"{path}: {error}")
    return [analyses[c.path] for c in clips if c.path in analyses], failures


def run_stage(task: ShardTask, emit: Callable[[ProgressEvent], None]) -> Any:
    """Shard function for a round of several stages' shards (the clips' and the music's): the
    stage function of each task's spec, by its kind."""
    return task.payload.stage_function()(task, emit)


def analyze_shard(task: ShardTask, emit: Callable[[ProgressEvent], None]) -> dict[str, Any]:
    """Shard function (runs in a worker): analyze one clip, or one time range of it."""
    from ..analysis.analyze import analyze_clip
    from ..plugins import get_manager

    spec: AnalysisSpec = task.payload
    registry = get_manager().analyzers  # the worker's own plugins: it checks them against the coordinator's
    wanted = spec.analyzers or {a.name: a.version for a in registry}
    # The coordinator decides which analyzers run (its cache key depends on them); a worker that
    # lacks one, or has another version, must not silently compute something else.
    missing = {name: version for name, version in wanted.items()
               if name not in registry or registry.get(name).version != version}
    if missing:
        raise ShardError(f"this worker lacks analyzer(s) {', '.join(f'{n} {v}' for n, v in missing.items())} "
                         f"(it has: {', '.join(f'{a.name} {a.version}' for a in registry)}); install the same plugins "
                         "on every worker", transient=False)
    analyzers = [registry.get(name) for name in wanted]

    def progress(position: float, total: float) -> None:
        emit(ProgressEvent.of(task, "running", position, total))

    emit(ProgressEvent.of(task, "started"))
    if spec.ranged:  # a time range of a long clip: per-frame series, merged by the coordinator
        from ..analysis import cache
        from ..analysis.analyze import ANALYSIS_WIDTH, analyze_series

        start, count = spec.start_frame, spec.frame_count
        key = cache.analysis_key(spec.digest, wanted, ANALYSIS_WIDTH)
        series = cache.load_range(key, start, count) if spec.use_cache else None
        if series is None:
            series = analyze_series(task.clip, spec.media, analyzers, progress=progress, input_args=spec.input_args,
                                    start_frame=start, frame_count=count)
            if spec.use_cache:
                cache.store_range(key, start, count, series)
        emit(ProgressEvent.of(task, "done", task.total))
        return {"series": series}
    result = analyze_clip(task.clip, analyzers, progress=progress, use_cache=spec.use_cache,
                          input_args=spec.input_args, digest=spec.digest, info=spec.media)
    emit(ProgressEvent.of(task, "done", task.total))
    return result.to_dict()


#: a time range shorter than this costs more in start-up than its share of the decode saves
MIN_RANGE_SECONDS = 60.0


def range_pieces(backend: Any, clips: int) -> int:
    """Into how many ranges each of ``clips`` clips to analyse may be cut: fewer clips than
    workers, and long ones are split so that every worker has a share of the decode."""
    workers = getattr(backend, "workers", None) or 1
    return max(1, workers // max(1, clips))


def shard_ranges(info: MediaInfo, pieces: int = 1) -> list[tuple[int, int | None]]:
    """(start frame, frame count) ranges of ``$MONTAGE_SHARD_SECONDS`` (the last one runs to the end);
    with ``pieces`` > 1 (idle workers to share it), shorter ones: about ``duration / pieces`` seconds,
    never under ``MIN_RANGE_SECONDS``."""
    seconds = float(os.environ.get("MONTAGE_SHARD_SECONDS", SHARD_SECONDS))
    if pieces > 1:
        seconds = min(seconds, max(MIN_RANGE_SECONDS, info.duration / pieces))
    if info.duration <= 1.5 * seconds or not info.fps:
        return [(0, None)]
    step = max(1, int(round(seconds * info.fps)))
    starts = list(range(0, info.frame_count, step))
    if info.frame_count - starts[-1] < step // 2:  # no runt range at the end
        starts.pop()
    return [(s, step) for s in starts[:-1]] + [(starts[-1], None)]


def merge_ranges(clip: str, tasks: Sequence[ShardTask], parts: Sequence[dict[str, Any]], manager: MontageManager,
                 use_cache: bool) -> ClipAnalysis:
    """A long clip's analysis from its time-range shards: series joined in order, then shots."""
    import numpy as np

    from ..analysis import cache
    from ..analysis.analyze import ANALYSIS_WIDTH, clip_from_series

    spec: AnalysisSpec = tasks[0].payload
    analyzers = [manager.analyzers.get(name) for name in spec.analyzers]
    series = {name: np.concatenate([np.asarray(part[name]) for part in parts]) for name in parts[0]}
    result = clip_from_series(clip, spec.media, spec.digest, analyzers, series)
    if use_cache:
        cache.store(cache.analysis_key(spec.digest, spec.analyzers, ANALYSIS_WIDTH), result)
    return result
