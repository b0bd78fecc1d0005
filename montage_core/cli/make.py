"""Commands that make a montage: run, resume, cancel, plan, render, analyze, demo, and the job list."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import click

from .app import cli, progress_printer, report
from .options import (backend_options, dry_run_option, fps_option, job_options, parse_resolution, parse_sets,
                      reframe_option, render_options, resolution_option)

if TYPE_CHECKING:  # pragma: no cover - typing only
    from ..job import JobOptions
    from ..models import Timeline


def _dry_run(options: JobOptions, steps: set[str], timeline: Timeline | None = None,
             timeline_file: str | None = None) -> None:
    """``--dry-run``: what the job would submit, on standard output; no job is created, nothing runs."""
    from ..job import Job, check_dry_run
    from ..plugins import get_manager

    manager = get_manager()
    check_dry_run(manager, options.backend)
    job = Job.prepare(options, manager, steps=steps, timeline_file=timeline_file, dry_run=True)
    click.echo(job.backend.dry_run(job.preview(timeline)), nl=False)


@cli.command()
@click.argument("clips", nargs=-1, required=True)
@click.option("--music", required=True, help="Music track (any format ffmpeg reads).")
@click.option("-o", "--output", default="montage.mp4", show_default=True, type=click.Path())
@job_options
@click.option("--format", "formats", default="", metavar="A:B,...",
              help="Also render the same plan in these shapes (e.g. 9:16,1:1, at the --resolution's short side, "
                   "or WIDTHxHEIGHT), each reframed, beside --output as NAME-WxH.mp4.")
@render_options
@dry_run_option
def run(clips: tuple[str, ...], music: str, output: str, style: str, style_params: tuple[str, ...], planner: str,
        seed: int, resolution: str, fps: float, reframe: str, duration: float | None, no_cache: bool,
        script: str | None, embedder: str, formats: str, backend: str, scheduler: str | None, workers: int | None,
        accel: str, quality: str, loudness: str, dry_run: bool) -> None:
    """Analyze CLIPS (files or folders), plan on the beat of --music, render to --output."""
    from ..pipeline import JobOptions, run_job

    width, height = parse_resolution(resolution)
    options = JobOptions(
        clips=[str(Path(c).absolute()) for c in clips], music=str(Path(music).absolute()),
        output=str(Path(output).absolute()), style=style, style_params=parse_sets(style_params), planner=planner,
        backend=backend, accel=accel, quality=quality, width=width, height=height, fps=fps, seed=seed,
        duration=duration, use_cache=not no_cache, scheduler=scheduler, workers=workers,
        script=str(Path(script).absolute()) if script else None, embedder=embedder, loudness=loudness,
        reframe=reframe, formats=[f for f in formats.split(",") if f.strip()])
    if dry_run:
        _dry_run(options, {"analyze", "plan", "render"})
        return
    job_id, result = run_job(options, on_event=progress_printer())
    report(job_id, result)


@cli.command()
@click.argument("job_id")
def resume(job_id: str) -> None:
    """Finish an interrupted job: finished analyses and segments are reused, the rest runs."""
    from ..jobstore import JobStore
    from ..pipeline import resume_options, run_job

    store = JobStore()
    job_id, result = run_job(resume_options(store, job_id), store=store, on_event=progress_printer(),
                             job_id=job_id)
    report(job_id, result)


@cli.command()
@click.argument("job_id")
@click.option("--wait", default=30.0, show_default=True, metavar="SECONDS",
              help="How long the coordinator has to stop before it is killed.")
def cancel(job_id: str, wait: float) -> None:
    """Stop a running job: its coordinator here, and what its backend runs elsewhere (a cluster's Jobs)."""
    from ..cancel import cancel_job
    from ..jobstore import JobStore

    for line in cancel_job(JobStore(), job_id, wait=wait):
        click.echo(line)


@cli.command()
@click.option("--limit", default=20, show_default=True, help="How many of the latest jobs.")
@click.option("--json", "as_json", is_flag=True)
def jobs(limit: int, as_json: bool) -> None:
    """List the latest jobs and their states (`interrupted` ones can be finished with `montage resume`)."""
    import time

    from ..jobstore import JobStore

    rows = JobStore().jobs(limit)
    if as_json:
        click.echo(json.dumps([{"id": r["id"], "state": r["state"], "created": r["created"],
                                "output": json.loads(r["params"] or "{}").get("output", ""), "error": r["error"] or ""}
                               for r in rows], indent=2, ensure_ascii=False))
        return
    for row in rows:
        created = time.strftime("%Y-%m-%d %H:%M", time.localtime(row["created"]))
        output = json.loads(row["params"] or "{}").get("output", "")
        click.echo(f"{row['id']}  {row['state']:11s} {created}  {output}")
        if row["state"] in ("failed", "interrupted") and row["error"]:
            click.echo(f"{'':24s}{row['error']}")


@cli.command()
@click.argument("clips", nargs=-1, required=True)
@click.option("--no-cache", is_flag=True)
@backend_options
@dry_run_option
def analyze(clips: tuple[str, ...], no_cache: bool, backend: str, scheduler: str | None, workers: int | None,
            dry_run: bool) -> None:
    """Analyze CLIPS and print their shots and features as JSON."""
    from ..analysis.analyze import describe
    from ..job import Job, JobOptions, running

    options = JobOptions(clips=[str(Path(c).absolute()) for c in clips], use_cache=not no_cache, backend=backend,
                         scheduler=scheduler, workers=workers)
    if dry_run:
        _dry_run(options, {"analyze"})
        return
    job = Job.prepare(options, steps={"analyze"})
    printer = progress_printer()
    with running(job.backend):
        analyses, failures = job.analyze(lambda e: printer("analysis", e))
    click.echo(json.dumps({"clips": [describe(a) for a in analyses], "failed": failures}, indent=2,
                          ensure_ascii=False))


@cli.command()
@click.argument("clips", nargs=-1, required=True)
@click.option("--music", required=True)
@click.option("-o", "--output", default="timeline.json", show_default=True, type=click.Path())
@job_options
@backend_options
@dry_run_option
def plan(clips: tuple[str, ...], music: str, output: str, style: str, style_params: tuple[str, ...],
         planner: str, seed: int, resolution: str, fps: float, reframe: str, duration: float | None, no_cache: bool,
         script: str | None, embedder: str, backend: str, scheduler: str | None, workers: int | None,
         dry_run: bool) -> None:
    """Analyze and plan only: write the timeline JSON (render it later with `montage render`)."""
    from ..job import Job, JobOptions, running
    from ..models import write_atomic

    width, height = parse_resolution(resolution)
    options = JobOptions(
        clips=[str(Path(c).absolute()) for c in clips], music=str(Path(music).absolute()),
        output=str(Path(output).absolute()), style=style, style_params=parse_sets(style_params), planner=planner,
        backend=backend, width=width, height=height, fps=fps, seed=seed, duration=duration,
        use_cache=not no_cache, scheduler=scheduler, workers=workers,
        script=str(Path(script).absolute()) if script else None, embedder=embedder, reframe=reframe)
    if dry_run:
        _dry_run(options, {"analyze", "plan"})
        return
    job = Job.prepare(options, steps={"analyze", "plan"})
    printer = progress_printer()
    with running(job.backend), job.start_music() as music:
        analyses, _ = job.analyze(lambda e: printer("analysis", e), music=music)
        timeline = job.plan(analyses, music.result())
    write_atomic(output, timeline.to_json())
    click.echo(f"{output}: {len(timeline.cuts)} cuts over {timeline.duration:.2f} s at {timeline.tempo:.1f} BPM")


@cli.command()
@click.argument("timeline", type=click.Path())
@click.option("-o", "--output", default="montage.mp4", show_default=True, type=click.Path())
@reframe_option("auto", "auto: each cut as the timeline crops it (as planned); centre: every cut of another "
                        "aspect than the timeline's cropped in the middle; letterbox: every cut whole, with bars.")
@render_options
@dry_run_option
def render(timeline: str, output: str, reframe: str, backend: str, scheduler: str | None, workers: int | None,
           accel: str, quality: str, loudness: str, dry_run: bool) -> None:
    """Render a TIMELINE.json (from `montage plan` or a previous run) without re-analysis."""
    from ..job import Job, JobOptions, running
    from ..models import Timeline

    tl = Timeline.load(timeline)
    if reframe != "auto":  # auto keeps the planned crops: following the subject needs the analysis
        from ..reframe import reframe_timeline
        from ..stages.export import probe_sources

        tl = reframe_timeline(tl, reframe, probe_sources(tl))
    options = JobOptions(clips=sorted({c.source for c in tl.cuts}), music=tl.music, output=str(Path(output).absolute()),
                         backend=backend, accel=accel, quality=quality, width=tl.width, height=tl.height, fps=tl.fps,
                         scheduler=scheduler, workers=workers, loudness=loudness)
    if dry_run:
        _dry_run(options, {"render"}, tl, timeline)
        return
    job = Job.prepare(options, steps={"render"}, timeline_file=timeline)
    printer = progress_printer()
    with running(job.backend):
        result = job.render(tl, lambda e: printer("render", e), timeline_file=timeline)
    click.echo(f"{result.video} ({result.duration:.2f} s, {len(result.segments)} cuts)")


@cli.command()
@click.option("-o", "--output", default="montage-demo", show_default=True, type=click.Path(file_okay=False),
              help="Folder for the demo media and the montage.")
@click.option("--style", default="dynamic", show_default=True)
@resolution_option
@fps_option
@render_options
def demo(output: str, style: str, resolution: str, fps: float, backend: str, scheduler: str | None,
         workers: int | None, accel: str, quality: str, loudness: str) -> None:
    """Generate demo clips and a music track with a clear beat, and cut a montage from them."""
    from ..pipeline import JobOptions, run_job
    from ..synth import make_demo_media

    folder = Path(output)
    click.echo(f"making demo media in {folder}/ ...", err=True)
    clips, music = make_demo_media(folder)
    width, height = parse_resolution(resolution)
    options = JobOptions(clips=[str(folder / "clips")], music=str(music), output=str(folder / "montage.mp4"),
                         style=style, backend=backend, accel=accel, quality=quality, width=width, height=height,
                         fps=fps, scheduler=scheduler, workers=workers, loudness=loudness)
    job_id, result = run_job(options, on_event=progress_printer())
    report(job_id, result)
