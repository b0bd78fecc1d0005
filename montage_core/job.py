"""One job: validated options, the plugin manager and a backend of its own, checked before anything slow.

Every command that does work goes through :meth:`Job.prepare` (``run``, ``resume``, ``demo``,
``analyze``, ``plan``, ``render``, ``index`` and the web UI's jobs), so each gets the same
validation: every name known (with "did you mean"), every number in range, every input present
and readable, the output path safe, the backend available and past its pre-flight checks. Every
problem found is reported at once, one ``error:`` line each, in well under a second (probing the
music is one ffprobe call), before any analysis, decoding or worker start.

A job then runs the stages (:mod:`montage_core.stages`) it was prepared for with
:meth:`Job.analyze`, :meth:`Job.plan` and :meth:`Job.render`, each passing the job's own manager
and backend on.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .errors import InputError, MontageError, PreflightError, ProblemsError, UsageError
from .interfaces import Backend, ProgressEvent, StagePreview
from .jobstore import JobStore
from .models import DEFAULT_FPS, DEFAULT_HEIGHT, DEFAULT_WIDTH, ClipAnalysis, MusicAnalysis, RenderResult, Timeline
from .plugins import MontageManager, get_manager

log = logging.getLogger("montage")

#: frame rates ffmpeg's encoders and NLEs handle for a montage
MAX_FPS = 240.0

#: a source scaled up more than this much looks soft: say so
UPSCALE_WARNING = 2.0

#: the stages a whole montage runs; a command may prepare a job for fewer
ALL_STEPS = frozenset({"analyze", "plan", "render"})


@dataclass(kw_only=True)
class JobOptions:
    """Everything ``montage run`` takes (keywords only: there are too many to pass by position)."""

    clips: list[str]
    music: str = ""
    output: str = "montage.mp4"
    style: str = "dynamic"
    style_params: dict[str, str] = field(default_factory=dict)
    planner: str = "story_arc"
    backend: str = "local"
    accel: str = "auto"
    quality: str = "standard"
    width: int = DEFAULT_WIDTH
    height: int = DEFAULT_HEIGHT
    fps: float = DEFAULT_FPS
    seed: int = 0
    duration: float | None = None
    use_cache: bool = True
    scheduler: str | None = None
    workers: int | None = None
    script: str | None = None
    embedder: str = "descriptor"
    #: integrated loudness of the montage in LUFS, or "off" to keep the music's own level
    loudness: str = "-14"
    #: how a clip of another aspect than the output fills it: "auto" (a crop following the subject),
    #: "centre" (a centred crop) or "letterbox" (the whole frame, with bars); see montage_core.reframe
    reframe: str = "auto"
    #: more shapes of the same plan ("9:16", "1:1" or WIDTHxHEIGHT), each reframed for its shape and
    #: written beside ``output`` (see :func:`extra_outputs`)
    formats: list[str] = field(default_factory=list)


def format_size(value: str, width: int, height: int) -> tuple[int, int]:
    """The size of one ``--format``: an aspect ratio ``A:B`` at the main output's short side (a
    1920x1080 montage's 9:16 is 1080x1920, its 1:1 1080x1080), or an explicit ``WIDTHxHEIGHT``."""
    text = value.strip().lower()
    numbers = text.replace(":", "x").split("x")
    try:
        a, b = (int(n) for n in numbers)
    except ValueError:
        a = b = 0
    if len(numbers) != 2 or a <= 0 or b <= 0:
        raise UsageError(f"--format {value!r} is neither an aspect ratio (e.g. 9:16, 1:1) nor a size (e.g. 1080x1920)")
    if "x" in text:
        size = (a, b)
    else:
        short = min(width, height)
        size = (2 * round(short * a / b / 2), short) if a >= b else (short, 2 * round(short * b / a / 2))
    if size[0] % 2 or size[1] % 2 or max(size) > 8192:
        raise UsageError(f"--format {value!r} gives {size[0]}x{size[1]}: sizes must be even and at most 8192")
    return size


def extra_outputs(options: JobOptions) -> list[tuple[str, int, int]]:
    """(path, width, height) of each ``--format`` besides the main output: ``montage.mp4`` in 9:16 is
    ``montage-1080x1920.mp4``. A format of the main output's own size adds nothing."""
    out = Path(options.output)
    extras: dict[tuple[int, int], str] = {}
    for value in options.formats:
        size = format_size(value, options.width, options.height)
        if size != (options.width, options.height):
            extras.setdefault(size, str(out.with_name(f"{out.stem}-{size[0]}x{size[1]}{out.suffix}")))
    return [(path, w, h) for (w, h), path in extras.items()]


def unknown_job(store: JobStore, job_id: str) -> UsageError:
    """One line naming the store and the latest job ids, to pick the right one."""
    known = ", ".join(j["id"] for j in store.jobs(5)) or "none"
    return UsageError(f"no job {job_id!r} in {store.path} (latest: {known})")


def resume_options(store: JobStore, job_id: str) -> JobOptions:
    """The options a stored job was started with."""
    job = store.job(job_id)
    if job is None:
        raise unknown_job(store, job_id)
    if job["state"] == "done":
        raise UsageError(f"job {job_id} is already done: {json.loads(job['result'] or '{}').get('video', '')}")
    return JobOptions(**json.loads(job["params"]))


@dataclass
class Job:
    """A job ready to run: its options (checked), clips (collected), manager and backend (its own, configured)."""

    options: JobOptions
    manager: MontageManager
    backend: Backend
    clips: list[str]
    #: the encoder chain, resolved (and checked to work here) once; empty when the job does not render
    chain: list[tuple[Any, Any]]
    #: ffmpeg input arguments of the analysis decoder (a hardware decoder when one works here)
    decode_args: list[str] = field(default_factory=list)
    steps: frozenset[str] = ALL_STEPS

    @classmethod
    def prepare(cls, options: JobOptions, manager: MontageManager | None = None, *,
                steps: Collection[str] = ALL_STEPS, timeline_file: str | Path | None = None,
                dry_run: bool = False) -> Job:
        """Check everything ``options`` name for ``steps``; raise :class:`ProblemsError` listing every
        problem, or :class:`PreflightError` when a backend's pre-flight check fails.

        ``timeline_file`` is the timeline a ``render`` job reads (the video must not replace it).
        ``dry_run``: the job will only be shown (:meth:`preview`), so no pre-flight check runs (a
        cluster's would create its probe).
        """
        from .stages import collect_clips

        steps = frozenset(steps)
        manager = manager or get_manager()
        problems: list[str] = []
        backend, chain = _check_choices(options, manager, steps, problems.append)
        _check_numbers(options, problems.append)
        clips = collect_clips(options.clips)
        given = [c for c in options.clips if os.path.exists(c)]
        if not clips or not given:
            missing = ", ".join(c for c in options.clips if not os.path.exists(c))
            problems.append(f"no clips found ({missing}: no such file or folder)" if missing
                            else f"no video files in {', '.join(options.clips)}")
        if "plan" in steps or "render" in steps:
            _check_music(options.music, problems.append)
        if "plan" in steps and options.script and not Path(options.script).is_file():
            problems.append(f"{options.script}: no such script file")
        if {"plan", "render"} & steps:  # independent of the other checks: report it with them
            from .stages.render import check_output_path

            try:
                check_output_path(Path(options.output),
                                  [*clips, options.music, *([options.script] if options.script else [])], timeline_file)
            except MontageError as exc:
                problems.append(str(exc))
        if problems:
            raise ProblemsError(problems)
        assert backend is not None  # else a problem was listed
        job = cls(options, manager, backend, clips, chain or [], steps=steps)
        if "analyze" in steps:
            job.decode_args = _analysis_decoder(manager, backend, chain or [], options.accel)
        if not dry_run:
            run_preflight(manager, backend, {"options": options, "clips": clips})
        return job

    def preview(self, timeline: Timeline | None = None) -> list[StagePreview]:
        """The stages this job would submit to its backend, with their shard counts, for
        ``--dry-run``; nothing runs. ``timeline``: the one a render job renders (without it, the
        cuts are known only after analysis and planning)."""
        from .ffmpeg import probe_media
        from .stages.analyze import range_pieces, shard_ranges

        stages = []
        if "analyze" in self.steps:  # as Job.analyze does: cached clips never reach the backend
            misses = self._clips_to_analyze()
            pieces = range_pieces(self.backend, len(misses))
            shards = 0
            for clip in misses:  # a long clip is several time-range shards
                try:
                    shards += len(shard_ranges(probe_media(clip), pieces))
                except MontageError:  # the real run skips it with a warning
                    continue
            if shards:
                stages.append(StagePreview("analysis", shards))
        if "plan" in self.steps and self.options.planner == "broll" and self.options.script:
            from .builtin.planner_broll import LINES_PER_TASK, read_script

            lines = len(read_script(self.options.script))
            stages.append(StagePreview("plan", -(-lines // LINES_PER_TASK)))
        if "render" in self.steps:
            stages.append(StagePreview("render", len(timeline.cuts) if timeline else None, self.options.accel))
        return stages

    # ------------------------------------------------------------------------- the stages
    def start_music(self) -> Any:
        """The music's analysis, started (see :func:`montage_core.stages.music.start_music`): pass it
        to :meth:`analyze`, read it with ``result()``; use it as a context manager, which stops it
        when the job fails."""
        from .stages.music import start_music

        return start_music(self.options.music, self.options.duration, self.backend)

    def analyze(self, on_event: Callable[[ProgressEvent], None] = lambda e: None, *, store: JobStore | None = None,
                job_id: str = "", music: Any = None) -> tuple[list[ClipAnalysis], dict[str, str]]:
        """probe → analyze: the usable clips' analyses, and ``{clip: problem}`` for the others.

        ``music`` (from :meth:`start_music`): when the backend analyses the track, its shard runs in
        this round, beside the clips', and its result is read from ``music.result()`` afterwards."""
        from .stages import analyze_clips, probe_clips
        from .stages.music import MusicOnBackend

        shard = music if isinstance(music, MusicOnBackend) else None
        to_analyze = len(self._clips_to_analyze()) + (shard is not None)
        if to_analyze:  # workers start and import while the clips are probed and hashed; none for cached clips
            self.backend.warm(to_analyze)
        probed, failures = probe_clips(self.clips, store=store, job_id=job_id)
        analyses, failed = analyze_clips(probed, self.manager, self.backend, use_cache=self.options.use_cache,
                                         on_event=on_event, store=store, job_id=job_id, input_args=self.decode_args,
                                         music=shard)
        failures.update(failed)
        if not analyses:
            first = next(iter(failures.values()), "no clips")
            raise MontageError(f"none of the {len(self.clips)} clips is usable (first problem: {first})")
        return analyses, failures

    def _clips_to_analyze(self) -> list[str]:
        """The clips whose analysis is probably not cached (looked up without reading them)."""
        from .analysis.analyze import ANALYSIS_WIDTH, analyzer_versions
        from .analysis.cache import probably_cached

        versions = analyzer_versions(list(self.manager.analyzers))
        return [clip for clip in self.clips
                if not (self.options.use_cache and probably_cached(clip, versions, ANALYSIS_WIDTH))]

    def plan(self, analyses: list[ClipAnalysis], music: MusicAnalysis) -> Timeline:
        """select → plan: the style ranks the shots, the planner puts them on the beat grid."""
        from .stages import plan_timeline, select_shots
        from .stages.select import resolve_style_params

        o = self.options
        warn_upscaled(analyses, o.width, o.height)
        style = self.manager.styles.get(o.style)
        ranked = select_shots(analyses, style, resolve_style_params(style, o.style_params), self.manager)
        timeline = plan_timeline(ranked, music, self.manager, style=style, planner=o.planner, width=o.width,
                                 height=o.height, fps=o.fps, seed=o.seed, duration=o.duration, backend=self.backend,
                                 options={"script": o.script, "embedder": o.embedder})
        return self.reshape(timeline, analyses, o.width, o.height)

    def reshape(self, timeline: Timeline, analyses: list[ClipAnalysis], width: int, height: int) -> Timeline:
        """The plan at another output size, each cut reframed for that shape (``--reframe``): the
        same cuts on the same beats, so every shape of a montage tells the same story."""
        from .reframe import reframe_timeline

        return reframe_timeline(replace(timeline, width=width, height=height), self.options.reframe,
                                {a.media.path: a.media for a in analyses}, {a.media.path: a.track for a in analyses})

    def render(self, timeline: Timeline, on_event: Callable[[ProgressEvent], None] = lambda e: None, *,
               store: JobStore | None = None, job_id: str = "", timeline_file: str | Path | None = None,
               output: str | Path | None = None, label: str = "") -> RenderResult:
        """render → export: the video at the job's output (or ``output``, for another ``--format``,
        whose shards are named with ``label``), with its timeline, OTIO and EDL beside it."""
        from .loudness import parse_loudness
        from .stages import render_timeline

        return render_timeline(timeline, Path(output or self.options.output), self.manager, self.backend,
                               accel=self.options.accel, quality=self.options.quality, on_event=on_event,
                               store=store, job_id=job_id, chain=self.chain or None, timeline_file=timeline_file,
                               loudness=parse_loudness(self.options.loudness), label=label)


def warn_upscaled(analyses: list[ClipAnalysis], width: int, height: int) -> None:
    """One warning per clip that is scaled up more than ``UPSCALE_WARNING`` times to fit the output."""
    for analysis in analyses:
        media = analysis.media
        if media.width and media.height:
            factor = min(width / media.width, height / media.height)
            if factor > UPSCALE_WARNING:
                log.warning("%s is %dx%d: scaled up %.1fx to %dx%d, it will look soft", media.path, media.width,
                            media.height, factor, width, height)


def _check_choices(options: JobOptions, manager: MontageManager, steps: frozenset[str],
                   problem: Callable[[str], None]) -> tuple[Backend | None, list[tuple[Any, Any]] | None]:
    """Every name the options use for ``steps`` is registered; style parameters parse and are in
    range; the backend is available and the chosen encoder works. Returns the backend (new, for
    this job) and the encoder chain."""
    from .accel import check_quality, chosen_accelerator
    from .loudness import parse_loudness
    from .stages.render import job_encoder_chain
    from .stages.select import check_style_requirements, resolve_style_params

    def attempt(check: Callable[[], Any]) -> Any:
        try:
            return check()
        except MontageError as exc:
            problem(str(exc))
            return None

    if "plan" in steps:
        style = attempt(lambda: manager.styles.get(options.style))
        if style is not None:
            attempt(lambda: resolve_style_params(style, options.style_params))
            attempt(lambda: check_style_requirements(style, manager))
        attempt(lambda: manager.planners.get(options.planner))
        if options.planner == "broll" and not options.script:
            problem("--planner broll needs --script FILE (plain text or SRT)")
    attempt(lambda: manager.embedders.get(options.embedder))
    if {"plan", "render"} & steps:
        from .reframe import check_mode

        attempt(lambda: check_mode(options.reframe))
        attempt(lambda: extra_outputs(options))
    backend = attempt(lambda: manager.new_backend(options.backend, scheduler=options.scheduler,
                                                  workers=options.workers))
    if backend is not None and (reason := attempt(backend.availability)):
        problem(f"backend {options.backend!r} is not available: {reason}")
    chain = None
    if "render" in steps:
        accelerators = list(manager.accelerators)
        if backend is not None:  # the name is known, and the encoder works here (on a cluster: on each node)
            chain = attempt(lambda: job_encoder_chain(backend, accelerators, options.accel))
        else:  # without a backend, the name at least
            attempt(lambda: chosen_accelerator(accelerators, options.accel))
        attempt(lambda: check_quality(options.quality))
        attempt(lambda: parse_loudness(options.loudness))
    return backend, chain


def _check_numbers(options: JobOptions, problem: Callable[[str], None]) -> None:
    if options.width <= 0 or options.height <= 0 or options.width % 2 or options.height % 2:
        problem(f"resolution {options.width}x{options.height}: width and height must be positive even numbers")
    if not 0 < options.fps <= MAX_FPS:
        problem(f"--fps {options.fps:g} is out of range (0 < fps <= {MAX_FPS:g})")
    if options.duration is not None and not (math.isfinite(options.duration) and options.duration > 0):
        problem(f"--duration {options.duration:g} must be a positive number of seconds")  # nan and inf too
    if options.workers is not None and options.workers < 1:
        problem(f"--workers {options.workers} must be at least 1")


def _check_music(music: str, problem: Callable[[str], None]) -> None:
    from .ffmpeg import probe_media

    if not music:
        problem("no music track given (--music FILE)")
        return
    try:
        if not probe_media(music).has_audio:
            problem(f"{music}: has no audio stream")
    except InputError as exc:
        problem(str(exc))


def _analysis_decoder(manager: MontageManager, backend: Backend, chain: list[tuple[Any, Any]], accel: str) -> list[str]:
    """ffmpeg input arguments of the best decoder for analysis here; on a cluster each node picks its own."""
    from .accel import analysis_decoder, describe_chain, log_devices, probe_all

    if backend.remote_nodes:
        log.info("encoders (--accel %s) and the analysis decoder are resolved on each node", accel)
        return []
    accelerators = list(manager.accelerators)
    probes = probe_all(accelerators)
    log_devices(probes)
    decoder, decode_args = analysis_decoder(accelerators, probes)
    if chain:
        log.info("encoder chain: %s; analysis decode: %s", describe_chain(chain), decoder)
    else:
        log.info("analysis decode: %s", decoder)
    return decode_args


def run_preflight(manager: MontageManager, backend: Backend, context: dict[str, Any]) -> None:
    """Every pre-flight check for this backend; all problems at once, one line each, before any work."""
    problems: list[str] = []
    for check in manager.preflight_checks:
        if check.applies_to(backend.name):
            problems += check.run({**context, "backend": backend})
    if problems:
        raise PreflightError(problems)


@contextlib.contextmanager
def running(backend: Backend) -> Iterator[Backend]:
    """Work on ``backend``: it is closed afterwards, and aborted first when the work raised or was
    interrupted (Ctrl-C, SIGTERM), so running shards and what they started stop at once."""
    try:
        yield backend
    except BaseException:
        backend.abort()
        raise
    finally:
        backend.close()


def check_dry_run(manager: MontageManager, backend: str) -> None:
    """``--dry-run`` shows what a backend would submit to a cluster: one usage line for a backend
    that submits nothing, naming those that can."""
    able = sorted(b.name for b in manager.backends if getattr(b, "supports_dry_run", False))
    if not getattr(manager.backends.get(backend), "supports_dry_run", False):
        choices = " or ".join(able) if able else "k8s (pip install montage-backend-k8s)"
        raise UsageError(f"--dry-run shows what a cluster backend would submit, and backend {backend!r} submits "
                         f"nothing; use --backend {choices}")


def open_backend(manager: MontageManager, name: str, scheduler: str | None = None, workers: int | None = None,
                 *, preflight: bool = True) -> Backend:
    """A backend of its own for a command that is not a montage job (``search``, ``preflight``):
    known, available here, configured, and past its pre-flight checks."""
    backend = manager.new_backend(name, scheduler=scheduler, workers=workers)
    if reason := backend.availability():
        raise MontageError(f"backend {name!r} is not available: {reason}")
    if preflight:
        run_preflight(manager, backend, {})
    return backend
