"""The ``montage`` command. Imports stay inside commands so ``montage --help`` is fast.

Commands are grouped by what users do: ``make`` (run, resume, cancel, plan, render, analyze, demo, jobs),
``library`` (index, search), ``environment`` (plugins, styles, check-hw, cache, preflight,
new-plugin), ``services`` (serve, worker); ``options`` declares the options they share.
"""

from __future__ import annotations

import sys

import click

from ..errors import MontageError, ProblemsError
from . import environment, library, make, services  # noqa: F401 - each registers its commands
from .app import cli

__all__ = ["cli", "main"]


def main() -> None:
    """Entry point: plugin commands added, MontageError → one line and a non-zero exit.

    SIGTERM and SIGHUP stop a command as Ctrl-C does (workers stopped, the job left
    ``interrupted``), and no process the command started outlives it.
    """
    from ..jit import configure_jit_cache
    from ..procs import stop_resource_tracker, terminate_as_interrupt

    configure_jit_cache()  # before anything imports Numba
    try:
        with terminate_as_interrupt():
            _main()
    finally:
        stop_resource_tracker()


def _main() -> None:
    from .app import setup_logging

    setup_logging(0)  # plugin load problems are logged before click parses -v; give them their prefix
    try:
        from ..plugins import get_manager

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
    except ProblemsError as exc:  # one line per problem (pre-flight: each with its fix)
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

    from ..errors import BackendLost
    from ..procs import Terminated

    if isinstance(exc, BackendLost):  # the job's own line says how to resume it
        click.echo(f"error: interrupted: {exc}", err=True)
        sys.exit(75)  # EX_TEMPFAIL: try again when the cluster is back
    if isinstance(exc, Terminated):
        click.echo(f"interrupted ({exc})", err=True)
        sys.exit(128 + signal.Signals[str(exc)].value)
    click.echo("interrupted" if exc is not None else "aborted", err=True)
    sys.exit(130)
