"""Commands over a clip library: index it, search it."""

from __future__ import annotations

import json
from pathlib import Path

import click

from .app import cli, progress_printer
from .options import backend_options, embedder_option, open_backend


def index_dir(index: str | None) -> Path:
    import os

    from ..config import state_dir

    return Path(index or os.environ.get("MONTAGE_INDEX") or state_dir() / "index")


@cli.command()
@click.argument("library", nargs=-1, required=True)
@click.option("--shards", default=8, show_default=True, help="Index shards (one search task each).")
@click.option("--index", "index", default=None, help="Index folder (default $MONTAGE_INDEX or the state folder).")
@embedder_option("How shots are embedded for search (see `montage plugins`).")
@backend_options
def index(library: tuple[str, ...], shards: int, index: str | None, embedder: str, backend: str,
          scheduler: str | None, workers: int | None) -> None:
    """Index the shots of a clip LIBRARY (folders or files) for `montage search`; only changed clips are redone."""
    from ..job import Job, JobOptions, running
    from ..search import build_index

    options = JobOptions(clips=[str(Path(c).absolute()) for c in library], backend=backend, scheduler=scheduler,
                         workers=workers, embedder=embedder)
    job = Job.prepare(options, steps={"analyze"})
    printer = progress_printer()
    with running(job.backend):
        report = build_index(job, index_dir(index), shards=shards, on_event=lambda e: printer(e.stage, e))
    click.echo(f"{report['clips']} clips indexed ({report['embedded']} embedded now, {report['removed']} removed, "
               f"{report['shards_rewritten']} shards rewritten, {report['failed']} failed) in {index_dir(index)}")


@cli.command("search")
@click.argument("query", required=False, default="")
@click.option("--like", "like", default=None, metavar="CLIP", help="Query by example: shots like this clip's.")
@click.option("--top", "top", default=10, show_default=True)
@click.option("--index", "index", default=None)
@embedder_option("How the query is embedded; the index must have been built with the same one.")
@click.option("--json", "as_json", is_flag=True)
@backend_options
def search_command(query: str, like: str | None, top: int, index: str | None, embedder: str, as_json: bool,
                   backend: str, scheduler: str | None, workers: int | None) -> None:
    """Find the shots that best match QUERY (text) or --like CLIP, exactly, over every index shard."""
    from dataclasses import asdict

    from ..errors import UsageError
    from ..job import running
    from ..plugins import get_manager
    from ..search import read_sidecar, search

    manager = get_manager()
    embedder_obj = manager.embedders.get(embedder)
    if bool(query) == bool(like):
        raise UsageError("give a text QUERY or --like CLIP (one of them)")
    if like:
        from ..analysis.analyze import analyze_clip

        analysis = analyze_clip(like, list(manager.analyzers))
        vector = embedder_obj.embed_shots(analysis, read_sidecar(like)).mean(axis=0)
    else:
        vector = embedder_obj.embed_text(query)
    with running(open_backend(manager, backend, scheduler, workers)) as backend_obj:
        hits = search(index_dir(index), vector, manager, backend_obj, embedder_name=embedder, k=top)
    if as_json:
        click.echo(json.dumps([asdict(h) for h in hits], indent=2, ensure_ascii=False))
        return
    for rank, hit in enumerate(hits, 1):
        click.echo(f"{rank:3d}. {hit.score:6.3f}  {hit.source}  {hit.source_in:7.2f}–{hit.source_out:7.2f} s")
