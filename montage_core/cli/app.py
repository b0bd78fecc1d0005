"""The ``montage`` group, its one-line log format and progress output."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import click


class _OneLineFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return f"{record.levelname.lower()}: {record.getMessage()}"


def setup_logging(verbose: int) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_OneLineFormatter())
    root = logging.getLogger("montage")
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    root.propagate = False


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="montage-core")
@click.option("-v", "--verbose", count=True, help="Debug output.")
def cli(verbose: int) -> None:
    """Turn a folder of clips and a music track into a beat-synchronized montage."""
    setup_logging(verbose)


def progress_printer(quiet: bool = False) -> Any:
    from ..progress import ProgressDisplay

    displays: dict[str, ProgressDisplay] = {}

    def on_event(stage: str, event: Any) -> None:
        if stage not in displays:
            for other in displays.values():
                other.close()
            displays[stage] = ProgressDisplay(stage, 0, quiet=quiet)
        displays[stage].event(event)

    return on_event


def report(job_id: str, result: Any) -> None:
    encoders = ", ".join(sorted({s.encoder for s in result.segments}))
    click.echo(f"{result.video} ({result.duration:.2f} s, {len(result.segments)} cuts, encoder: {encoders}; "
               f"job {job_id})")
    from ..stages.export import export_paths

    # every export beside the video that was written (one that could not be was warned about)
    written = [str(p) for p in export_paths(Path(result.video)).values() if p.is_file()]
    click.echo(f"exports: {', '.join(written)}")
