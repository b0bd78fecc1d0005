"""The whole job: probe → analyze → select → plan → render, with the job store recording it."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from .errors import InputError, MontageError, PreflightError, ShardError, UsageError
from .interfaces import Backend, PlanRequest, ProgressEvent, ShardTask, Style
from .jobstore import JobStore
from .models import ClipAnalysis, MediaInfo, MusicAnalysis, RenderResult, SegmentResult, Shot, Timeline
from .plugins import MontageManager, get_manager
from .specs import AnalysisSpec

log = logging.getLogger("montage")

VIDEO_EXTENSIONS = {".mp4", ".mov", ".m4v", ".mkv", ".webm", ".avi", ".mts", ".m2ts", ".mpg", ".mpeg", ".wmv",
                    ".flv", ".3gp", ".ts", ".mxf", ".ogv"}


@dataclass(kw_only=True)
class JobOptions:
    """Everything ``montage run`` takes (keywords only: there are too many to pass by position)."""

    clips: list[str]
    music: str
    output: str = "montage.mp4"
    style: str = "dynamic"
    style_params: dict[str, str] = field(default_factory=dict)
    planner: str = "story_arc"
    backend: str = "local"
    accel: str = "auto"
    quality: str = "standard"
    width: int = 1920
    height: int = 1080
    fps: float = 30.0
    seed: int = 0
    duration: float | None = None
    use_cache: bool = True
    scheduler: str | None = None
    workers: int | None = None
    script: str | None = None
    embedder: str = "descriptor"


def resume_options(store: JobStore, job_id: str) -> JobOptions:
    """The options a stored job was started with."""
    import json

    job = store.job(job_id)
    if job is None:
        known = ", ".join(j["id"] for j in store.jobs(5)) or "none"
        raise UsageError(f"no job {job_id!r} in {store.path} (latest: {known})")
    if job["state"] == "done":
        raise UsageError(f"job {job_id} is already done: {json.loads(job['result'] or '{}').get('video', '')}")
    return JobOptions(**json.loads(job["params"]))


def collect_clips(paths: Sequence[str]) -> list[str]:
    """Files as given; folders expanded to their video files (sorted, recursive)."""
    clips: list[str] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            found = sorted(str(f.absolute()) for f in p.rglob("*") if f.is_file() and f.suffix.lower() in VIDEO_EXTENSIONS
                           and not f.name.startswith("."))
            if not found:
                log.warning("%s: folder holds no video files (looked for %s)", p, ", ".join(sorted(VIDEO_EXTENSIONS)))
            clips.extend(found)
        else:
            clips.append(str(p.absolute()))
    return list(dict.fromkeys(clips))


def resolve_style_params(style: Style, given: dict[str, str]) -> dict[str, float]:
    """Defaults overlaid with ``--set`` values, each validated against the style's declaration."""
    params = {name: p.default for name, p in style.params.items()}
    for name, raw in given.items():
        if name not in style.params:
            raise UsageError(f"style {style.name!r} has no parameter {name!r} (known: {', '.join(sorted(style.params)) or 'none'})")
        spec = style.params[name]
        try:
            value = float(raw)
        except ValueError:
            raise UsageError(f"style parameter {name}={raw!r} is not a number") from None
        if not spec.minimum <= value <= spec.maximum:
            raise UsageError(f"style parameter {name}={value:g} is out of range ({spec.minimum:g}..{spec.maximum:g})")
        params[name] = value
    return params


def check_style_requirements(style: Style, manager: MontageManager) -> None:
    """A style that ranks by an analyzer's output needs that analyzer installed."""
    missing = [name for name in style.requires if name not in manager.analyzers]
    if missing:
        raise MontageError(f"style {style.name!r} needs the analyzer(s) {', '.join(missing)}, which no installed "
                           f"plugin provides (installed: {', '.join(manager.analyzers.names())})")


# ----------------------------------------------------------------------------- analysis
def analyze_shard(task: ShardTask, emit: Callable[[ProgressEvent], None]) -> dict[str, Any]:
    """Shard function (runs in a worker): analyze one clip with every registered analyzer."""
    from .analysis.analyze import analyze_clip

    spec: AnalysisSpec = task.payload
    registry = get_manager().analyzers
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
        from .analysis import cache
        from .analysis.analyze import ANALYSIS_WIDTH, analyze_series

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


def analyze_clips(
    clips: Sequence[str], manager: MontageManager, backend: Backend, *, use_cache: bool = True,
    on_event: Callable[[ProgressEvent], None] = lambda e: None, store: JobStore | None = None, job_id: str = "",
    input_args: Sequence[str] = (),
) -> tuple[list[ClipAnalysis], dict[str, str]]:
    """Analyses of the usable clips and ``{clip: error}`` for the others. Cache hits never reach a worker."""
    from .analysis import cache
    from .analysis.analyze import ANALYSIS_WIDTH, analyzer_versions
    from .engine import run_shards
    from .ffmpeg import probe_media

    backend.warm(len(clips))  # workers start and import while we probe and hash
    versions = analyzer_versions(list(manager.analyzers))
    analyses: dict[str, ClipAnalysis] = {}
    failures: dict[str, str] = {}
    tasks: list[ShardTask] = []

    def prepare(clip: str) -> tuple[MediaInfo, str, ClipAnalysis | None]:
        info = probe_media(clip)
        if not info.has_video:
            raise InputError(clip, "has no video stream (audio-only file)")
        digest = cache.file_digest(clip)
        hit = cache.load(cache.analysis_key(digest, versions, ANALYSIS_WIDTH), clip) if use_cache else None
        return info, digest, hit

    # Probing and hashing wait on ffprobe and the disk: do them side by side, not one clip at a time.
    with ThreadPoolExecutor(max_workers=min(8, max(1, len(clips)))) as pool:
        prepared = {clip: pool.submit(prepare, clip) for clip in clips}
    for index, clip in enumerate(clips):
        try:
            info, digest, hit = prepared[clip].result()
        except InputError as exc:
            failures[clip] = str(exc)
            if store and job_id:  # the job store is the one record of what happened to every clip
                store.shard_state(job_id, f"analysis-{index:04d}", "analysis", clip, "failed", error=str(exc))
            continue
        if hit is not None:
            analyses[clip] = hit
            continue
        spec = AnalysisSpec(media=info, digest=digest, analyzers=versions, input_args=list(input_args),
                            use_cache=use_cache)
        ranges = shard_ranges(info)
        if len(ranges) == 1:
            tasks.append(ShardTask(f"analysis-{index:04d}", "analysis", clip, spec, info.duration))
            continue
        fps = info.fps or 25.0
        for k, (start, count) in enumerate(ranges):
            seconds = (count if count is not None else info.frame_count - start) / fps
            tasks.append(ShardTask(f"analysis-{index:04d}-r{k:03d}", "analysis", clip,
                                   replace(spec, ranged=True, start_frame=start, frame_count=count), seconds))
    if tasks:
        outcomes = run_shards(backend, analyze_shard, tasks, on_event=on_event, store=store, job_id=job_id)
        pieces: dict[str, list[ShardTask]] = {}
        for task in tasks:
            pieces.setdefault(task.clip, []).append(task)
        for clip, clip_tasks in pieces.items():
            failed = [outcomes[t.id] for t in clip_tasks if not outcomes[t.id].ok]
            if failed:
                failures[clip] = failed[0].error
                on_event(ProgressEvent.of(failed[0].task, "failed", message=failed[0].error,
                                          worker=failed[0].worker or "-"))
                continue
            if not clip_tasks[0].payload.ranged:
                analyses[clip] = ClipAnalysis.from_dict(outcomes[clip_tasks[0].id].result)
                continue
            try:
                analyses[clip] = merge_ranges(clip, clip_tasks, [outcomes[t.id].result["series"] for t in clip_tasks],
                                              manager, use_cache)
            except InputError as exc:
                failures[clip] = str(exc)
    for clip, error in failures.items():
        log.warning("skipping %s", error if clip in error else f"{clip}: {error}")
    return [analyses[c] for c in clips if c in analyses], failures


#: clips longer than this many seconds are analyzed as several time-range shards
SHARD_SECONDS = 300.0


def shard_ranges(info: MediaInfo) -> list[tuple[int, int | None]]:
    """(start frame, frame count) ranges of ``$MONTAGE_SHARD_SECONDS`` (the last one runs to the end)."""
    import os

    seconds = float(os.environ.get("MONTAGE_SHARD_SECONDS", SHARD_SECONDS))
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

    from .analysis import cache
    from .analysis.analyze import ANALYSIS_WIDTH, clip_from_series

    spec: AnalysisSpec = tasks[0].payload
    analyzers = [manager.analyzers.get(name) for name in spec.analyzers]
    series = {name: np.concatenate([np.asarray(part[name]) for part in parts]) for name in parts[0]}
    result = clip_from_series(clip, spec.media, spec.digest, analyzers, series)
    if use_cache:
        cache.store(cache.analysis_key(spec.digest, spec.analyzers, ANALYSIS_WIDTH), result)
    return result


# ----------------------------------------------------------------------------- planning
def plan_timeline(
    analyses: Sequence[ClipAnalysis], music: MusicAnalysis, manager: MontageManager, *, style: str, planner: str,
    style_params: dict[str, str] | None = None, width: int, height: int, fps: float, seed: int,
    duration: float | None = None, options: dict[str, Any] | None = None,
) -> Timeline:
    """select (the style ranks shots) and plan (the planner places them on the beat grid).

    ``options`` reach the planner (``script`` for B-roll, ``backend`` to fan work out on).
    """
    style_obj = manager.styles.get(style)
    planner_obj = manager.planners.get(planner)
    params = resolve_style_params(style_obj, style_params or {})
    check_style_requirements(style_obj, manager)
    shots: list[Shot] = [s for a in analyses for s in a.shots]
    if not shots:
        raise MontageError("no usable shots: every clip failed or was empty")
    ranked = style_obj.rank(shots, params, lambda message: log.warning("%s", message))
    if not ranked:
        raise MontageError(f"style {style!r} kept no shot out of {len(shots)}")
    return planner_obj.plan(PlanRequest(ranked, music, style_obj, fps, width, height, seed, duration,
                                        options=dict(options or {})))


# ----------------------------------------------------------------------------- render
def render_timeline(
    timeline: Timeline, output: Path, manager: MontageManager, backend: Backend, *, accel: str = "auto",
    quality: str = "standard", on_event: Callable[[ProgressEvent], None] = lambda e: None,
    store: JobStore | None = None, job_id: str = "", chain: list[tuple[Any, Any]] | None = None,
    timeline_file: str | Path | None = None,
) -> RenderResult:
    """Encode segments on the backend, join, mux, export. Nothing appears at ``output`` unless complete.

    ``chain`` is the encoder chain when the caller has resolved (and logged) it already;
    ``timeline_file`` is the timeline's own file, which the video must not replace.
    """
    from .accel import check_quality
    from .engine import run_shards
    from .export import write_exports
    from .render import check_output_path, join_segments, render_segment, segment_specs

    check_quality(quality)
    check_output_path(output, [c.source for c in timeline.cuts] + [timeline.music], timeline_file)
    for source in {c.source for c in timeline.cuts} | {timeline.music}:
        if not Path(source).is_file():
            raise InputError(source, "no such file (the timeline refers to it)")
    if chain is None:
        chain = job_encoder_chain(backend, list(manager.accelerators), accel)
        log.info("encoder chain: %s", " → ".join(a.name for a, _ in chain))
    specs = segment_specs(timeline, chain, quality, accel)
    tasks = [ShardTask(f"segment-{s.index:04d}", "render", s.main.source, s, s.frames / timeline.fps) for s in specs]
    outcomes = run_shards(backend, render_segment, tasks, on_event=on_event, store=store, job_id=job_id)
    failed = [outcomes[t.id] for t in tasks if not outcomes[t.id].ok]
    if failed:
        raise MontageError(f"{len(failed)} of {len(tasks)} segments failed; first: {failed[0].error} "
                           "(finished segments are kept and reused on the next run)")
    segments = [SegmentResult(**outcomes[t.id].result) for t in tasks]
    join_segments(timeline, segments, output)
    exports = write_exports(timeline, output)
    return RenderResult(str(output), exports["timeline_json"], exports["otio"], exports["edl"], segments,
                        timeline.duration)


# ----------------------------------------------------------------------------- the job
def job_encoder_chain(backend: Backend, accelerators: list[Any], accel: str) -> list[tuple[Any, Any]]:
    """The encoder chain for a job. On a backend whose shards run on other machines the
    accelerator is a node's property: only the name is checked here, each node resolves its
    own chain (software stands in for this host's)."""
    from .accel import chosen_accelerator, encoder_chain

    if not backend.remote_nodes:
        return encoder_chain(accelerators, accel)
    chosen_accelerator(accelerators, accel)  # the name must exist; whether it works is each node's question
    return encoder_chain(accelerators, "software")


def run_preflight(manager: MontageManager, backend: Backend, context: dict[str, Any]) -> None:
    """Every pre-flight check for this backend; all problems at once, one line each, before any work."""
    problems: list[str] = []
    for check in manager.preflight_checks:
        if check.applies_to(backend.name):
            problems += check.run({**context, "backend": backend})
    if problems:
        raise PreflightError(problems)


def run_job(options: JobOptions, *, manager: MontageManager | None = None, store: JobStore | None = None,
            on_event: Callable[[str, ProgressEvent], None] | None = None,
            job_id: str | None = None) -> tuple[str, RenderResult]:
    """Run a whole montage job; returns ``(job_id, result)``. Validates every choice before any work.

    With ``job_id`` the job is resumed: finished analyses and segments are found in the caches,
    so only unfinished shards run. An interrupt (Ctrl-C, SIGTERM) stops the workers and leaves
    the job ``interrupted``; a failure leaves it ``failed``.
    """
    from .accel import analysis_decoder, describe_chain, log_devices, probe_all
    from .isolated import start_music_analysis
    from .jit import configure_jit_cache
    from .job import Job, running

    configure_jit_cache()
    job = Job.prepare(options, manager)  # every problem at once, before anything slow
    manager, backend, clips, chain, output = job.manager, job.backend, job.clips, job.chain, Path(options.output)
    accelerators = list(manager.accelerators)
    if backend.remote_nodes:
        decode_args: list[str] = []
        log.info("encoders (--accel %s) and the analysis decoder are resolved on each node", options.accel)
    else:
        probes = probe_all(accelerators)
        log_devices(probes)
        decoder, decode_args = analysis_decoder(accelerators, probes)
        log.info("encoder chain: %s; analysis decode: %s", describe_chain(chain), decoder)
    run_preflight(manager, backend, {"options": options, "clips": clips})
    store = store or JobStore()
    if job_id:
        store.restart_job(job_id)
    else:
        job_id = store.create_job(options.style, options.backend, {**asdict(options)})
    log.info("job %s started", job_id)
    backend.bind_job(job_id, store)
    emit = on_event or (lambda stage, event: None)
    # Beats are found in a process of their own while the workers decode the clips: its memory
    # is returned when it ends, and a crash there cannot take this process down.
    with running(backend), start_music_analysis(options.music, options.duration) as music:
        try:
            analyses, failures = analyze_clips(clips, manager, backend, use_cache=options.use_cache,
                                               on_event=lambda e: emit("analysis", e), store=store, job_id=job_id,
                                               input_args=decode_args)
            music_analysis = music.result()
            if not analyses:
                first = next(iter(failures.values()))
                raise MontageError(f"none of the {len(clips)} clips is usable (first problem: {first})")
            timeline = plan_timeline(analyses, music_analysis, manager, style=options.style,
                                     planner=options.planner, style_params=options.style_params,
                                     width=options.width, height=options.height, fps=options.fps, seed=options.seed,
                                     duration=options.duration,
                                     options={"script": options.script, "backend": backend,
                                              "embedder": options.embedder})
            result = render_timeline(timeline, output, manager, backend, accel=options.accel, quality=options.quality,
                                     on_event=lambda e: emit("render", e), store=store, job_id=job_id, chain=chain)
        except KeyboardInterrupt as exc:  # leaving the block then stops the workers and the music process
            store.finish_job(job_id, "interrupted", error=f"interrupted ({exc or 'Ctrl-C'}); "
                                                           f"`montage resume {job_id}` finishes it")
            log.warning("job %s interrupted; `montage resume %s` finishes it (finished shards are reused)",
                        job_id, job_id)
            raise
        except BaseException as exc:
            store.finish_job(job_id, "failed", error=str(exc) or type(exc).__name__)
            raise
    store.finish_job(job_id, "done", {"video": result.video, "timeline": result.timeline_json, "otio": result.otio,
                                      "edl": result.edl, "skipped": failures,
                                      "encoders": sorted({s.encoder for s in result.segments})})
    return job_id, result
