"""Long-running roles: the web UI and a cluster worker."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click

from .app import cli


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8765, show_default=True)
@click.option("--media-root", default=None, type=click.Path(file_okay=False),
              help="New jobs may only use (and uploads go to) files under this folder "
                   "[default: a folder of its own, $MONTAGE_HOME/media; never the current folder].")
@click.option("--allowed-host", "allowed_host", multiple=True, metavar="NAME",
              help="Another host name the UI may be reached by (a reverse proxy's); the bound address always is.")
@click.option("--token", envvar="MONTAGE_SERVE_TOKEN", default=None,
              help="Require this access token (?token=… once per browser); also $MONTAGE_SERVE_TOKEN.")
def serve(host: str, port: int, media_root: str | None, allowed_host: tuple[str, ...], token: str | None) -> None:
    """Web UI: start, watch, inspect and download jobs (the same job store as the CLI)."""
    import uvicorn

    from ..config import state_dir
    from ..web.app import create_app

    media_root = media_root or str(state_dir() / "media")

    if host not in ("127.0.0.1", "localhost", "::1"):
        logging.getLogger("montage").warning(
            "listening on %s: anyone who can reach this address can start jobs%s", host,
            "" if token else " (set --token to require an access token)")
    click.echo(f"montage serve: http://{host}:{port}/ (media root {Path(media_root).resolve()})")
    uvicorn.run(create_app(Path(media_root), token=token, host=host, extra_hosts=allowed_host), host=host, port=port,
                log_level="warning")


@cli.command()
@click.option("--shards", "shard_file", required=True, type=click.Path(dir_okay=False),
              help="Shard file written by a cluster backend.")
@click.option("--index", type=int, default=None, help="Which shard (default $JOB_COMPLETION_INDEX).")
@click.option("--stage", default=None, help="Stage name, for logs only.")
def worker(shard_file: str, index: int | None, stage: str | None) -> None:
    """Run one shard for a cluster backend (exit 0 done, 3 bad input, 1 other failure)."""
    from ..worker import run_worker

    sys.exit(run_worker(shard_file, index))
