"""The ``montage`` command. Imports stay inside commands so ``montage --help`` is fast."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

import click

from .errors import MontageError, PreflightError


class _OneLineFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return f"{record.levelname.lower()}: {record.getMessage()}"


def _setup_logging(verbose: int) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_OneLineFormatter())
    root = logging.getLogger("montage")
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    root.propagate = False


def _parse_resolution(value: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in value.lower().split("x"))
        if w <= 0 or h <= 0 or w % 2 or h % 2:
            raise ValueError
        return w, h
    except ValueError:
        raise click.BadParameter(f"{value!r} is not WIDTHxHEIGHT with even numbers (e.g. 1920x1080)") from None


def _parse_sets(values: tuple[str, ...]) -> dict[str, str]:
    params = {}
    for item in values:
        if "=" not in item:
            raise click.BadParameter(f"{item!r} is not NAME=VALUE", param_hint="--set")
        key, value = item.split("=", 1)
        params[key.strip()] = value.strip()
    return params


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="montage-core")
@click.option("-v", "--verbose", count=True, help="Debug output.")
def cli(verbose: int) -> None:
    """Turn a folder of clips and a music track into a beat-synchronized montage."""
    _setup_logging(verbose)


def _job_options(f: Any) -> Any:
    for decorator in reversed([
        click.option("--style", default="dynamic", show_default=True, help="Style (see `montage styles`)."),
        click.option("--set", "style_params", multiple=True, metavar="NAME=VALUE", help="Style parameter."),
        click.option("--planner", default="story_arc", show_default=True, help="Timeline planner."),
        click.option("--seed", default=0, show_default=True, help="Same seed, same inputs → same timeline."),
        click.option("--resolution", default="1920x1080", show_default=True, help="Output WIDTHxHEIGHT."),
        click.option("--fps", default=30.0, show_default=True, help="Output frame rate."),
        click.option("--duration", type=float, default=None, help="Cut the montage to the first N seconds of music."),
        click.option("--no-cache", is_flag=True, help="Re-analyze even when a cached analysis exists."),
        click.option("--script", default=None, type=click.Path(dir_okay=False),
                     help="Script for --planner broll: plain text (a line per stretch) or SRT."),
        click.option("--embedder", default="descriptor", show_default=True,
                     help="How --planner broll matches lines to shots (see `montage plugins`)."),
    ]):
        f = decorator(f)
    return f


def _render_options(f: Any) -> Any:
    for decorator in reversed([
        click.option("--backend", default="local", show_default=True, help="Where shards run."),
        click.option("--scheduler", default=None, metavar="ADDRESS",
                     help="Cluster address for the backend (dask: tcp://HOST:8786; also $MONTAGE_DASK_SCHEDULER)."),
        click.option("--workers", type=int, default=None, help="Worker processes to start (local, LocalCluster)."),
        click.option("--accel", default="auto", show_default=True, help="Encoder: auto, software or a hardware one."),
        click.option("--quality", default="standard", show_default=True,
                     type=click.Choice(["preview", "standard", "high"])),
    ]):
        f = decorator(f)
    return f


def _progress_printer(quiet: bool = False) -> Any:
    from .progress import ProgressDisplay

    displays: dict[str, ProgressDisplay] = {}

    def on_event(stage: str, event: Any) -> None:
        if stage not in displays:
            for other in displays.values():
                other.close()
            displays[stage] = ProgressDisplay(stage, 0, quiet=quiet)
        displays[stage].event(event)

    return on_event


@cli.command()
@click.argument("clips", nargs=-1, required=True)
@click.option("--music", required=True, help="Music track (any format ffmpeg reads).")
@click.option("-o", "--output", default="montage.mp4", show_default=True, type=click.Path())
@_job_options
@_render_options
def run(clips: tuple[str, ...], music: str, output: str, style: str, style_params: tuple[str, ...], planner: str,
        seed: int, resolution: str, fps: float, duration: float | None, no_cache: bool, script: str | None,
        embedder: str, backend: str, scheduler: str | None, workers: int | None, accel: str, quality: str) -> None:
    """Analyze CLIPS (files or folders), plan on the beat of --music, render to --output."""
    from .pipeline import JobOptions, run_job

    width, height = _parse_resolution(resolution)
    options = JobOptions([str(Path(c).absolute()) for c in clips], str(Path(music).absolute()),
                         str(Path(output).absolute()), style,
                         _parse_sets(style_params), planner, backend, accel, quality, width, height, fps, seed,
                         duration, not no_cache, scheduler, workers,
                         str(Path(script).absolute()) if script else None, embedder)
    job_id, result = run_job(options, on_event=_progress_printer())
    _report(job_id, result)


@cli.command()
@click.argument("job_id")
def resume(job_id: str) -> None:
    """Finish an interrupted job: finished analyses and segments are reused, the rest runs."""
    from .jobstore import JobStore
    from .pipeline import resume_options, run_job

    store = JobStore()
    job_id, result = run_job(resume_options(store, job_id), store=store, on_event=_progress_printer(),
                             job_id=job_id)
    _report(job_id, result)


@cli.command()
@click.option("--limit", default=20, show_default=True, help="How many of the latest jobs.")
@click.option("--json", "as_json", is_flag=True)
def jobs(limit: int, as_json: bool) -> None:
    """List the latest jobs and their states (`interrupted` ones can be finished with `montage resume`)."""
    import time

    from .jobstore import JobStore

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


def _report(job_id: str, result: Any) -> None:
    encoders = ", ".join(sorted({s.encoder for s in result.segments}))
    click.echo(f"{result.video} ({result.duration:.2f} s, {len(result.segments)} cuts, encoder: {encoders}; "
               f"job {job_id})")
    click.echo(f"exports: {result.timeline_json}, {result.otio}, {result.edl}")


@cli.command()
@click.argument("clips", nargs=-1, required=True)
@click.option("--backend", default="local", show_default=True)
@click.option("--no-cache", is_flag=True)
def analyze(clips: tuple[str, ...], backend: str, no_cache: bool) -> None:
    """Analyze CLIPS and print their shots and features as JSON."""
    from .analysis.analyze import describe
    from .pipeline import analyze_clips, collect_clips
    from .plugins import get_manager

    manager = get_manager()
    backend_obj = manager.backends.get(backend)
    printer = _progress_printer()
    try:
        analyses, failures = analyze_clips(collect_clips(clips), manager, backend_obj, use_cache=not no_cache,
                                           on_event=lambda e: printer("analysis", e))
    except BaseException:
        backend_obj.abort()
        raise
    finally:
        backend_obj.close()
    click.echo(json.dumps({"clips": [describe(a) for a in analyses], "failed": failures}, indent=2,
                          ensure_ascii=False))
    if failures and not analyses:
        raise MontageError("no clip could be analyzed")


@cli.command()
@click.argument("clips", nargs=-1, required=True)
@click.option("--music", required=True)
@click.option("-o", "--output", default="timeline.json", show_default=True, type=click.Path())
@click.option("--backend", default="local", show_default=True)
@_job_options
def plan(clips: tuple[str, ...], music: str, output: str, backend: str, style: str, style_params: tuple[str, ...],
         planner: str, seed: int, resolution: str, fps: float, duration: float | None, no_cache: bool,
         script: str | None, embedder: str) -> None:
    """Analyze and plan only: write the timeline JSON (render it later with `montage render`)."""
    from .isolated import start_music_analysis
    from .models import write_atomic
    from .pipeline import analyze_clips, collect_clips, plan_timeline
    from .plugins import get_manager
    from .render import check_output_path

    manager = get_manager()
    width, height = _parse_resolution(resolution)
    manager.styles.get(style)
    backend_obj = manager.backends.get(backend)
    clip_paths = collect_clips(clips)
    check_output_path(Path(output), [*clip_paths, music, *([script] if script else [])])
    music_call = start_music_analysis(music, duration)
    try:
        analyses, _ = analyze_clips(clip_paths, manager, backend_obj, use_cache=not no_cache)
        if not analyses:
            raise MontageError("no clip could be analyzed")
        timeline = plan_timeline(analyses, music_call.result(), manager, style=style,
                                 planner=planner, style_params=_parse_sets(style_params), width=width, height=height,
                                 fps=fps, seed=seed, duration=duration,
                                 options={"script": script, "backend": backend_obj, "embedder": embedder})
    except BaseException:
        music_call.cancel()
        backend_obj.abort()
        raise
    finally:
        backend_obj.close()
    write_atomic(output, timeline.to_json())
    click.echo(f"{output}: {len(timeline.cuts)} cuts over {timeline.duration:.2f} s at {timeline.tempo:.1f} BPM")


@cli.command()
@click.argument("timeline", type=click.Path())
@click.option("-o", "--output", default="montage.mp4", show_default=True, type=click.Path())
@_render_options
def render(timeline: str, output: str, backend: str, scheduler: str | None, workers: int | None, accel: str,
           quality: str) -> None:
    """Render a TIMELINE.json (from `montage plan` or a previous run) without re-analysis."""
    from .models import Timeline
    from .pipeline import render_timeline
    from .plugins import get_manager

    manager = get_manager()
    tl = Timeline.load(timeline)
    backend_obj = manager.backends.get(backend)
    backend_obj.configure(scheduler=scheduler, workers=workers)
    printer = _progress_printer()
    try:
        result = render_timeline(tl, Path(output), manager, backend_obj, accel=accel, quality=quality,
                                 on_event=lambda e: printer("render", e), timeline_file=timeline)
    except BaseException:
        backend_obj.abort()
        raise
    finally:
        backend_obj.close()
    click.echo(f"{result.video} ({result.duration:.2f} s, {len(result.segments)} cuts)")


@cli.command()
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
def styles(fmt: str) -> None:
    """List the registered styles."""
    from .plugins import get_manager

    manager = get_manager()
    rows = [{"name": s.name, "plugin": manager.styles.origin(s.name), "description": s.description,
             "pacing": {k: list(v) for k, v in s.pacing.items()},
             "transition": {"kind": s.transition.kind, "duration": s.transition.duration}, "grade": s.grade,
             "params": {k: {"default": p.default, "help": p.help} for k, p in s.params.items()}}
            for s in sorted(manager.styles, key=lambda s: s.name)]
    if fmt == "json":
        click.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    for row in rows:
        pacing = ", ".join(f"{k} {a}-{b}" for k, (a, b) in row["pacing"].items())
        click.echo(f"{row['name']:14s} {row['description']}")
        click.echo(f"{'':14s} beats per cut: {pacing}; transition: {row['transition']['kind']}"
                   + (f" {row['transition']['duration']:g}s" if row["transition"]["duration"] else "")
                   + (f"; params: {', '.join(row['params'])}" if row["params"] else ""))


@cli.command()
@click.option("--format", "fmt", type=click.Choice(["json", "table"]), default="json", show_default=True)
@click.option("--all", "show_all", is_flag=True, help="Include the built-in plugins.")
def plugins(fmt: str, show_all: bool) -> None:
    """List installed plugins: version, hooks, what each registered, availability."""
    from .plugininfo import plugin_rows

    rows = plugin_rows(show_all)
    if fmt == "json":
        click.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    for row in rows:
        status = "ok" if row["available"] else f"unavailable: {row['reason']}"
        registered = "; ".join(f"{k}: {', '.join(v)}" for k, v in row["registered"].items())
        click.echo(f"{row['name']:22s} {row['version']:8s} {status}")
        if registered:
            click.echo(f"{'':22s} {registered}")
        for obj in row.get("objects", []):
            if not obj["available"]:
                click.echo(f"{'':22s} {obj['kind']} {obj['name']}: unavailable: {obj['reason']}")


@cli.command("check-hw")
@click.option("--json", "as_json", is_flag=True)
@click.option("--refresh", is_flag=True, help="Probe again instead of using this host's cached result.")
def check_hw(as_json: bool, refresh: bool) -> None:
    """Probe every accelerator and device; show the encoder chain a run would use."""
    from dataclasses import asdict

    from .accel import analysis_decoder, encoder_chain, probe_all
    from .hwaccel import describe_probe
    from .plugins import get_manager

    accelerators = list(get_manager().accelerators)
    probes = probe_all(accelerators, refresh=refresh)
    chain = [a.name for a, _ in encoder_chain(accelerators)]  # raises (exit 1) when no encoder works
    decoder, _ = analysis_decoder(accelerators, probes)
    if as_json:
        click.echo(json.dumps({"accelerators": [asdict(p) for p in probes.values()], "chain": chain,
                               "analysis_decoder": decoder}, indent=2))
        return
    for probe in probes.values():
        status = "ok" if probe.available else "unavailable"
        click.echo(f"{probe.name:10s} {status:12s} {probe.reason}")
        for line in describe_probe(probe):
            click.echo(line)
    click.echo(f"encoder chain: {' → '.join(chain)}")
    click.echo(f"analysis decode: {decoder}")


@cli.command()
@click.option("-o", "--output", default="montage-demo", show_default=True, type=click.Path(file_okay=False),
              help="Folder for the demo media and the montage.")
@click.option("--style", default="dynamic", show_default=True)
@click.option("--resolution", default="1280x720", show_default=True)
@click.option("--fps", default=25.0, show_default=True)
@_render_options
def demo(output: str, style: str, resolution: str, fps: float, backend: str, scheduler: str | None,
         workers: int | None, accel: str, quality: str) -> None:
    """Generate demo clips and a music track with a clear beat, and cut a montage from them."""
    from .pipeline import JobOptions, run_job
    from .synth import make_demo_media

    folder = Path(output)
    click.echo(f"making demo media in {folder}/ ...", err=True)
    clips, music = make_demo_media(folder)
    width, height = _parse_resolution(resolution)
    options = JobOptions([str(folder / "clips")], str(music), str(folder / "montage.mp4"), style, {}, "story_arc",
                         backend, accel, quality, width, height, fps, 0, scheduler=scheduler, workers=workers)
    job_id, result = run_job(options, on_event=_progress_printer())
    _report(job_id, result)


def _index_dir(index: str | None) -> Path:
    import os

    from .config import state_dir

    return Path(index or os.environ.get("MONTAGE_INDEX") or state_dir() / "index")


@cli.command()
@click.argument("library", nargs=-1, required=True)
@click.option("--shards", default=8, show_default=True, help="Index shards (one search task each).")
@click.option("--index", "index", default=None, help="Index folder (default $MONTAGE_INDEX or the state folder).")
@click.option("--embedder", default="descriptor", show_default=True)
@click.option("--backend", default="local", show_default=True)
@click.option("--scheduler", default=None, metavar="ADDRESS")
@click.option("--workers", type=int, default=None)
def index(library: tuple[str, ...], shards: int, index: str | None, embedder: str, backend: str,
          scheduler: str | None, workers: int | None) -> None:
    """Index the shots of a clip LIBRARY (folders or files) for `montage search`; only changed clips are redone."""
    from .pipeline import collect_clips
    from .plugins import get_manager
    from .search import build_index

    manager = get_manager()
    backend_obj = manager.backends.get(backend)
    backend_obj.configure(scheduler=scheduler, workers=workers)
    printer = _progress_printer()
    try:
        report = build_index(collect_clips(library), _index_dir(index), manager, backend_obj, embedder_name=embedder,
                             shards=shards, on_event=lambda e: printer(e.stage, e))
    finally:
        backend_obj.close()
    click.echo(f"{report['clips']} clips indexed ({report['embedded']} embedded now, {report['removed']} removed, "
               f"{report['shards_rewritten']} shards rewritten, {report['failed']} failed) in {_index_dir(index)}")


@cli.command("search")
@click.argument("query", required=False, default="")
@click.option("--like", "like", default=None, metavar="CLIP", help="Query by example: shots like this clip's.")
@click.option("--top", "top", default=10, show_default=True)
@click.option("--index", "index", default=None)
@click.option("--embedder", default="descriptor", show_default=True)
@click.option("--backend", default="local", show_default=True)
@click.option("--json", "as_json", is_flag=True)
def search_command(query: str, like: str | None, top: int, index: str | None, embedder: str, backend: str,
                   as_json: bool) -> None:
    """Find the shots that best match QUERY (text) or --like CLIP, exactly, over every index shard."""
    from dataclasses import asdict

    from .errors import UsageError
    from .plugins import get_manager
    from .search import read_sidecar, search

    manager = get_manager()
    embedder_obj = manager.embedders.get(embedder)
    if bool(query) == bool(like):
        raise UsageError("give a text QUERY or --like CLIP (one of them)")
    if like:
        from .analysis.analyze import analyze_clip

        analysis = analyze_clip(like, list(manager.analyzers))
        vector = embedder_obj.embed_shots(analysis, read_sidecar(like)).mean(axis=0)
    else:
        vector = embedder_obj.embed_text(query)
    backend_obj = manager.backends.get(backend)
    try:
        hits = search(_index_dir(index), vector, manager, backend_obj, embedder_name=embedder, k=top)
    finally:
        backend_obj.close()
    if as_json:
        click.echo(json.dumps([asdict(h) for h in hits], indent=2, ensure_ascii=False))
        return
    for rank, hit in enumerate(hits, 1):
        click.echo(f"{rank:3d}. {hit.score:6.3f}  {hit.source}  {hit.source_in:7.2f}–{hit.source_out:7.2f} s")


@cli.command()
@click.option("--clear", is_flag=True, help="Delete cached analyses, ranges, rendered segments and compiled kernels.")
@click.option("--clear-jit", is_flag=True, help="Delete only the compiled (JIT) kernels; they are rebuilt on next use.")
def cache(clear: bool, clear_jit: bool) -> None:
    """Show (or clear) montage's cache: analyses by content hash, rendered segments, compiled kernels."""
    from .analysis import cache as analysis_cache
    from .config import cache_dir
    from .jit import clear_jit_cache, jit_cache_dir

    if clear or clear_jit:
        kernels = clear_jit_cache()
        click.echo(f"removed {kernels} compiled kernel files from {jit_cache_dir()}")
        if clear:
            click.echo(f"removed {analysis_cache.clear()} cached files from {cache_dir()}")
        return
    for area, (count, size) in analysis_cache.usage().items():
        click.echo(f"{area:10s} {count:6d} files {size / 2**20:9.1f} MiB")
    jit_files = [p for p in jit_cache_dir().rglob("*") if p.is_file()] if jit_cache_dir().is_dir() else []
    click.echo(f"{'jit':10s} {len(jit_files):6d} files {sum(p.stat().st_size for p in jit_files) / 2**20:9.1f} MiB"
               f" ({jit_cache_dir()})")
    click.echo(f"in {cache_dir()}")


@cli.command()
@click.option("--backend", default="local", show_default=True, help="Backend whose pre-flight checks to run.")
@click.option("--scheduler", default=None, help="Cluster address or context, as for montage run.")
def preflight(backend: str, scheduler: str | None) -> None:
    """Check a backend before submitting work: each problem on one line with its fix; exit 1 if any."""
    from .pipeline import run_preflight
    from .plugins import get_manager

    manager = get_manager()
    chosen = manager.backends.get(backend)
    if reason := chosen.availability():
        raise MontageError(f"backend {backend!r} is not available: {reason}")
    chosen.configure(scheduler=scheduler)
    checks = [c.name for c in manager.preflight_checks if c.applies_to(backend)]
    run_preflight(manager, chosen, {})  # problems: main() prints one error line each and exits 1
    click.echo(f"pre-flight passed for backend {backend} ({', '.join(checks) or 'no checks registered'})")


@cli.command()
@click.option("--shards", "shard_file", required=True, type=click.Path(dir_okay=False),
              help="Shard file written by a cluster backend.")
@click.option("--index", type=int, default=None, help="Which shard (default $JOB_COMPLETION_INDEX).")
@click.option("--stage", default=None, help="Stage name, for logs only.")
def worker(shard_file: str, index: int | None, stage: str | None) -> None:
    """Run one shard for a cluster backend (exit 0 done, 3 bad input, 1 other failure)."""
    from .worker import run_worker

    sys.exit(run_worker(shard_file, index))


@cli.command("new-plugin")
@click.argument("kind")
@click.argument("name")
@click.option("--dir", "folder", default=".", show_default=True, type=click.Path(file_okay=False),
              help="Where to create montage-NAME/.")
def new_plugin(kind: str, name: str, folder: str) -> None:
    """Create a plugin package: KIND is style, analyzer, accelerator, planner or backend."""
    from .scaffold import new_plugin as scaffold

    root = scaffold(kind, name, Path(folder))
    click.echo(f"created {root}/ — next: pip install -e {root} && python -m pytest {root}/tests")


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8765, show_default=True)
@click.option("--media-root", default=".", show_default=True, type=click.Path(file_okay=False),
              help="New jobs may only use (and uploads go to) files under this folder.")
@click.option("--token", envvar="MONTAGE_SERVE_TOKEN", default=None,
              help="Require this access token (?token=… once per browser); also $MONTAGE_SERVE_TOKEN.")
def serve(host: str, port: int, media_root: str, token: str | None) -> None:
    """Web UI: start, watch, inspect and download jobs (the same job store as the CLI)."""
    import uvicorn

    from .web.app import create_app

    if host not in ("127.0.0.1", "localhost", "::1"):
        logging.getLogger("montage").warning(
            "listening on %s: anyone who can reach this address can start jobs%s", host,
            "" if token else " (set --token to require an access token)")
    click.echo(f"montage serve: http://{host}:{port}/ (media root {Path(media_root).resolve()})")
    uvicorn.run(create_app(Path(media_root), token=token), host=host, port=port, log_level="warning")


def main() -> None:
    """Entry point: plugin commands added, MontageError → one line and a non-zero exit.

    SIGTERM and SIGHUP stop a command as Ctrl-C does (workers stopped, the job left
    ``interrupted``), and no process the command started outlives it.
    """
    from .jit import configure_jit_cache
    from .procs import stop_resource_tracker, terminate_as_interrupt

    configure_jit_cache()  # before anything imports Numba
    try:
        with terminate_as_interrupt():
            _main()
    finally:
        stop_resource_tracker()


def _main() -> None:
    try:
        from .plugins import get_manager

        get_manager().add_commands(cli)
    except MontageError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort as exc:  # click turns KeyboardInterrupt (and so SIGTERM) into Abort
        _interrupted(exc.__cause__ if isinstance(exc.__cause__, KeyboardInterrupt) else None)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except PreflightError as exc:  # one line per problem, each with its fix
        for problem in exc.problems:
            click.echo(f"error: {problem}", err=True)
        sys.exit(exc.exit_code)
    except MontageError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt as exc:
        _interrupted(exc)


def _interrupted(exc: KeyboardInterrupt | None) -> None:
    """Exit as a process stopped by that signal conventionally does: 130 for Ctrl-C, 143 for SIGTERM."""
    import signal

    from .procs import Terminated

    if isinstance(exc, Terminated):
        click.echo(f"interrupted ({exc})", err=True)
        sys.exit(128 + signal.Signals[str(exc)].value)
    click.echo("interrupted" if exc is not None else "aborted", err=True)
    sys.exit(130)
