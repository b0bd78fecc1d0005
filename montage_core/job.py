"""One job: validated options, the plugin manager and the backend, checked before anything slow.

``montage run``, ``resume``, ``demo`` and the web UI's jobs go through :meth:`Job.prepare`, so each
gets the same validation: every name known (with "did you mean"), every number in range, every
input present and readable, the output path safe, the backend available and past its pre-flight
checks. Every problem found is reported at once, one ``error:`` line each, in well under a second
(probing the music is one ffprobe call), before any analysis, decoding or worker start.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import InputError, MontageError, ProblemsError
from .interfaces import Backend
from .plugins import MontageManager, get_manager

#: frame rates ffmpeg's encoders and NLEs handle for a montage
MAX_FPS = 240.0


@dataclass
class Job:
    """A job ready to run: its options (checked), clips (collected), manager and backend (open)."""

    options: Any  # pipeline.JobOptions
    manager: MontageManager
    backend: Backend
    clips: list[str]
    #: the encoder chain, resolved (and checked to work here) once
    chain: list[tuple[Any, Any]]

    @classmethod
    def prepare(cls, options: Any, manager: MontageManager | None = None) -> Job:
        """Check everything ``options`` name; raise :class:`ProblemsError` listing every problem."""
        from .pipeline import collect_clips

        manager = manager or get_manager()
        problems: list[str] = []
        backend, chain = _check_choices(options, manager, problems.append)
        _check_numbers(options, problems.append)
        clips = collect_clips(options.clips)
        given = [c for c in options.clips if os.path.exists(c)]
        if not clips or not given:
            missing = ", ".join(c for c in options.clips if not os.path.exists(c))
            problems.append(f"no clips found ({missing}: no such file or folder)" if missing
                            else f"no video files in {', '.join(options.clips)}")
        _check_music(options.music, problems.append)
        if options.script and not Path(options.script).is_file():
            problems.append(f"{options.script}: no such script file")
        if not problems:
            from .render import check_output_path

            try:
                check_output_path(Path(options.output),
                                  [*clips, options.music, *([options.script] if options.script else [])])
            except MontageError as exc:
                problems.append(str(exc))
        if problems:
            raise ProblemsError(problems)
        assert backend is not None and chain is not None  # else a problem was listed
        backend.configure(scheduler=options.scheduler, workers=options.workers)  # availability checked above
        return cls(options, manager, backend, clips, chain)


def _check_choices(options: Any, manager: MontageManager,
                   problem: Callable[[str], None]) -> tuple[Backend | None, list[tuple[Any, Any]] | None]:
    """Every name the options use is registered; style parameters parse and are in range; the
    backend is available and the chosen encoder works. Returns the backend and encoder chain."""
    from .accel import check_quality, chosen_accelerator
    from .pipeline import check_style_requirements, job_encoder_chain, resolve_style_params

    def attempt(check: Callable[[], Any]) -> Any:
        try:
            return check()
        except MontageError as exc:
            problem(str(exc))
            return None

    style = attempt(lambda: manager.styles.get(options.style))
    if style is not None:
        attempt(lambda: resolve_style_params(style, options.style_params))
        attempt(lambda: check_style_requirements(style, manager))
    attempt(lambda: manager.planners.get(options.planner))
    attempt(lambda: manager.embedders.get(options.embedder))
    backend = attempt(lambda: manager.backends.get(options.backend))
    if backend is not None and (reason := attempt(backend.availability)):
        problem(f"backend {options.backend!r} is not available: {reason}")
    accelerators = list(manager.accelerators)
    chain = None
    if backend is not None:  # the name is known, and the encoder works here (on a cluster: on each node)
        chain = attempt(lambda: job_encoder_chain(backend, accelerators, options.accel))
    else:  # without a backend, the name at least
        attempt(lambda: chosen_accelerator(accelerators, options.accel))
    attempt(lambda: check_quality(options.quality))
    if options.planner == "broll" and not options.script:
        problem("--planner broll needs --script FILE (plain text or SRT)")
    return backend, chain


def _check_numbers(options: Any, problem: Callable[[str], None]) -> None:
    if options.width <= 0 or options.height <= 0 or options.width % 2 or options.height % 2:
        problem(f"resolution {options.width}x{options.height}: width and height must be positive even numbers")
    if not 0 < options.fps <= MAX_FPS:
        problem(f"--fps {options.fps:g} is out of range (0 < fps <= {MAX_FPS:g})")
    if options.duration is not None and options.duration <= 0:
        problem(f"--duration {options.duration:g} must be a positive number of seconds")
    if options.workers is not None and options.workers < 1:
        problem(f"--workers {options.workers} must be at least 1")


def _check_music(music: str, problem: Callable[[str], None]) -> None:
    from .ffmpeg import probe_media

    try:
        if not probe_media(music).has_audio:
            problem(f"{music}: has no audio stream")
    except InputError as exc:
        problem(str(exc))


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


def open_backend(manager: Any, name: str, scheduler: str | None = None, workers: int | None = None,
                 *, preflight: bool = True) -> Any:
    """The backend a command will run shards on: known, available here, configured, and past its
    pre-flight checks, the same way for every command."""
    from .pipeline import run_preflight

    backend = manager.backends.get(name)
    if reason := backend.availability():
        raise MontageError(f"backend {name!r} is not available: {reason}")
    backend.configure(scheduler=scheduler, workers=workers)
    if preflight:
        run_preflight(manager, backend, {})
    return backend
