"""The whole job: probe → analyze → select → plan → render → export, with the job store recording it.

The stages live in :mod:`montage_core.stages` (one module each); :class:`montage_core.job.Job`
holds what they share (checked options, the plugin manager, the job's backend). This module
runs them for ``montage run``, ``resume``, ``demo`` and the web UI.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict
from typing import Any

from .interfaces import ProgressEvent
from .job import Job, JobOptions, extra_outputs, resume_options, running
from .jobstore import JobStore
from .models import ClipAnalysis, MusicAnalysis, RenderResult, Timeline
from .plugins import MontageManager

__all__ = ["JobOptions", "plan_timeline", "resume_options", "run_job"]

log = logging.getLogger("montage")


def run_job(options: JobOptions, *, manager: MontageManager | None = None, store: JobStore | None = None,
            on_event: Callable[[str, ProgressEvent], None] | None = None,
            job_id: str | None = None) -> tuple[str, RenderResult]:
    """Run a whole montage job; returns ``(job_id, result)``. Validates every choice before any work.

    With ``job_id`` the job is resumed: finished analyses and segments are found in the caches,
    so only unfinished shards run. An interrupt (Ctrl-C, SIGTERM) stops the workers and leaves
    the job ``interrupted``; a failure leaves it ``failed``.
    """
    from .jit import configure_jit_cache

    configure_jit_cache()
    job = Job.prepare(options, manager)  # every problem at once, before anything slow
    store = store or JobStore()
    if job_id:
        store.restart_job(job_id)
    else:
        job_id = store.create_job(options.style, options.backend, {**asdict(options)})
    log.info("job %s started", job_id)
    job.backend.bind_job(job_id, store)
    emit = on_event or (lambda stage, event: None)
    # Beats are found beside the clips' analysis, on the backend or in a process of their own:
    # never in this process, whose memory and life a crash there must not touch.
    with running(job.backend), job.start_music() as music:
        try:
            analyses, failures = job.analyze(lambda e: emit("analysis", e), store=store, job_id=job_id,
                                             music=music)
            timeline = job.plan(analyses, music.result())
            result = job.render(timeline, lambda e: emit("render", e), store=store, job_id=job_id)
            formats = {f"{timeline.width}x{timeline.height}": result.video}
            for path, width, height in extra_outputs(options):  # the same plan in another shape
                label = f"{width}x{height}"
                shaped = job.render(job.reshape(timeline, analyses, width, height), lambda e: emit("render", e),
                                    store=store, job_id=job_id, output=path, label=label)
                formats[label] = shaped.video
                log.info("%s: %s", label, shaped.video)
        except KeyboardInterrupt as exc:  # leaving the block then stops the workers and the music process
            store.finish_job(job_id, "interrupted", error=f"interrupted ({exc or 'Ctrl-C'}); "
                                                           f"`montage resume {job_id}` finishes it")
            if (store.job(job_id) or {}).get("state") == "cancelled":  # stopped by montage cancel
                log.warning("job %s cancelled", job_id)
            else:
                log.warning("job %s interrupted; `montage resume %s` finishes it (finished shards are reused)",
                            job_id, job_id)
            raise
        except BaseException as exc:
            store.finish_job(job_id, "failed", error=str(exc) or type(exc).__name__)
            raise
    store.finish_job(job_id, "done", {"video": result.video, "timeline": result.timeline_json, "otio": result.otio,
                                      "edl": result.edl, "skipped": failures, "formats": formats,
                                      "encoders": sorted({s.encoder for s in result.segments})})
    return job_id, result


def plan_timeline(
    analyses: Sequence[ClipAnalysis], music: MusicAnalysis, manager: MontageManager, *, style: str, planner: str,
    style_params: dict[str, str] | None = None, width: int, height: int, fps: float, seed: int,
    duration: float | None = None, options: dict[str, Any] | None = None,
) -> Timeline:
    """select → plan in one call, by names, as ``montage plan`` does after analysis: for scripts and
    plugin tests that plan a real timeline without a job (see docs/plugin-authoring.md)."""
    from .stages import plan, select_shots
    from .stages.select import resolve_style_params

    style_obj = manager.styles.get(style)
    ranked = select_shots(analyses, style_obj, resolve_style_params(style_obj, style_params or {}), manager)
    return plan.plan_timeline(ranked, music, manager, style=style_obj, planner=planner, width=width, height=height,
                              fps=fps, seed=seed, duration=duration, options=options)
