"""Options several commands share, declared once, and the parsing of their values."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from ..models import DEFAULT_FPS, DEFAULT_HEIGHT, DEFAULT_WIDTH

if TYPE_CHECKING:
    from ..interfaces import Backend
    from ..plugins import MontageManager


# ``montage_core.job`` (job store, engine, pre-flight) is imported by the commands that run work
# (``from ..job import running`` in each), not when the CLI is built: ``--help`` and the listings
# never need it.
def open_backend(manager: MontageManager, name: str, scheduler: str | None = None, workers: int | None = None,
                 *, preflight: bool = True) -> Backend:
    """The commands' one way to open a backend (:func:`montage_core.job.open_backend`)."""
    from ..job import open_backend as open_job_backend

    return open_job_backend(manager, name, scheduler, workers, preflight=preflight)


def parse_resolution(value: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in value.lower().split("x"))
        if w <= 0 or h <= 0 or w % 2 or h % 2:
            raise ValueError
        return w, h
    except ValueError:
        raise click.BadParameter(f"{value!r} is not WIDTHxHEIGHT with even numbers (e.g. 1920x1080)") from None


def parse_sets(values: tuple[str, ...]) -> dict[str, str]:
    params = {}
    for item in values:
        if "=" not in item:
            raise click.BadParameter(f"{item!r} is not NAME=VALUE", param_hint="--set")
        key, value = item.split("=", 1)
        params[key.strip()] = value.strip()
    return params


def _apply(f: Any, decorators: list[Any]) -> Any:
    for decorator in reversed(decorators):
        f = decorator(f)
    return f


def embedder_option(help: str) -> Any:
    """``--embedder``: how shots and text are embedded (see `montage plugins`)."""
    return click.option("--embedder", default="descriptor", show_default=True, help=help)


def reframe_option(default: str, help: str) -> Any:
    """``--reframe``: how a clip of another aspect than the output fills it."""
    return click.option("--reframe", default=default, show_default=True,
                        type=click.Choice(["auto", "centre", "letterbox"]), help=help)


REFRAME_HELP = ("A clip of another aspect than the output (16:9 into 9:16): auto crops a box that follows the "
                "subject, centre crops the middle, letterbox shows it whole with bars.")

#: the output format options, with the defaults every montage shares (montage_core.job)
resolution_option = click.option("--resolution", default=f"{DEFAULT_WIDTH}x{DEFAULT_HEIGHT}", show_default=True,
                                 help="Output WIDTHxHEIGHT (e.g. 1080x1920 for vertical, 1080x1080 square).")
fps_option = click.option("--fps", default=DEFAULT_FPS, show_default=True, help="Output frame rate.")


def job_options(f: Any) -> Any:
    """What a montage is made of: style, planner, pacing inputs and output format."""
    return _apply(f, [
        click.option("--style", default="dynamic", show_default=True, help="Style (see `montage styles`)."),
        click.option("--set", "style_params", multiple=True, metavar="NAME=VALUE", help="Style parameter."),
        click.option("--planner", default="story_arc", show_default=True, help="Timeline planner."),
        click.option("--seed", default=0, show_default=True, help="Same seed, same inputs → same timeline."),
        resolution_option, fps_option, reframe_option("auto", REFRAME_HELP),
        click.option("--duration", type=float, default=None, help="Cut the montage to the first N seconds of music."),
        click.option("--no-cache", is_flag=True, help="Re-analyze even when a cached analysis exists."),
        click.option("--script", default=None, type=click.Path(dir_okay=False),
                     help="Script for --planner broll: plain text (a line per stretch) or SRT."),
        embedder_option("How --planner broll matches lines to shots (see `montage plugins`)."),
    ])


def backend_options(f: Any) -> Any:
    """Where shards run: ``--backend``, ``--scheduler``, ``--workers`` (every command with shards)."""
    return _apply(f, [
        click.option("--backend", default="local", show_default=True, help="Where shards run."),
        click.option("--scheduler", default=None, metavar="ADDRESS",
                     help="Cluster address for the backend (dask: tcp://HOST:8786; also $MONTAGE_DASK_SCHEDULER)."),
        click.option("--workers", type=int, default=None, help="Worker processes to start (local, LocalCluster)."),
    ])


#: ``--dry-run``: what the backend would submit, printed; nothing runs (montage_core.job.check_dry_run)
dry_run_option = click.option("--dry-run", is_flag=True,
                              help="Print what the backend would submit (k8s: its Jobs as YAML) and create nothing.")


def render_options(f: Any) -> Any:
    """Where and how segments are encoded: the backend options plus ``--accel`` and ``--quality``."""
    return backend_options(_apply(f, [
        click.option("--accel", default="auto", show_default=True, help="Encoder: auto, software or a hardware one."),
        click.option("--quality", default="standard", show_default=True,
                     type=click.Choice(["preview", "standard", "high"])),
        click.option("--loudness", default="-14", show_default=True, metavar="LUFS|off",
                     help="Integrated loudness of the montage (EBU R128; true peak at most -1.5 dBTP), or off."),
    ]))
