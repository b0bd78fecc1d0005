"""Work that runs in a process of its own, so that a crash or its memory cannot take the
coordinator with it: music analysis (librosa and its JIT-compiled helpers) runs this way."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .errors import MontageError


def _child(connection: Any, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
    from .procs import watch_parent

    watch_parent()
    try:
        message: tuple[str, Any] = ("ok", fn(*args))
    except BaseException as exc:  # noqa: BLE001 - every failure goes back to the caller
        message = ("error", exc)
    try:
        connection.send(message)
    except Exception as exc:  # an exception that cannot be pickled still says what happened
        connection.send(("error", MontageError(f"{type(message[1]).__name__}: {message[1]} ({exc})")))
    finally:
        connection.close()


class IsolatedCall:
    """``fn(*args)`` started now in a fresh process; :meth:`result` waits for it.

    A process that crashes from a signal (a JIT cache another process corrupted, most often) gets
    the JIT cache cleared and one more try; any other death is a :class:`MontageError` naming
    ``what``.
    """

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...], what: str):
        self.fn, self.args, self.what = fn, args, what
        self._start()

    def _start(self) -> None:
        from .jit import configure_jit_cache

        configure_jit_cache()
        context = multiprocessing.get_context("spawn")
        self._connection, child_end = context.Pipe(duplex=False)
        self.process = context.Process(target=_child, args=(child_end, self.fn, self.args),
                                       name=f"montage-{self.what}", daemon=True)
        self.process.start()
        child_end.close()

    def _wait(self) -> tuple[str, Any] | None:
        try:
            message = self._connection.recv()
        except EOFError:  # the process died before it could answer
            message = None
        self._connection.close()
        self.process.join()
        return message

    def result(self) -> Any:
        """The function's return value; its exception re-raised here."""
        from .jit import crash_signal, crashed_again, recover_from_crash

        for attempt in (1, 2):
            message = self._wait()
            if message is not None:
                kind, value = message
                if kind == "error":
                    raise value
                return value
            crashed = crash_signal(self.process.exitcode)
            if not crashed:
                raise MontageError(f"{self.what}: its process died (exit status {self.process.exitcode}; "
                                   "killed, or out of memory)")
            if attempt == 2:
                raise MontageError(crashed_again(f"{self.what}: its process", crashed))
            recover_from_crash(f"{self.what}: its process", crashed)
            self._start()
        raise AssertionError("unreachable")  # pragma: no cover

    def __enter__(self) -> IsolatedCall:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: Any) -> None:
        if kind is not None:  # the caller failed or was interrupted: the work is not wanted any more
            self.cancel()

    def cancel(self) -> None:
        """Stop the process and whatever it started."""
        from .procs import kill_tree

        if self.process.exitcode is None and self.process.pid:
            kill_tree(self.process.pid)
        self.process.join(timeout=5)
        self._connection.close()


def _warm_librosa() -> None:
    """Import librosa and run the music analysis once on a short click track, so every
    JIT-compiled function it uses is compiled (or loaded) under the JIT lock."""
    import tempfile
    import wave

    import numpy as np

    from .music import SAMPLE_RATE, analyze_music

    clicks = np.zeros(4 * SAMPLE_RATE, np.int16)
    for start in range(0, len(clicks), SAMPLE_RATE // 2):  # 120 BPM
        clicks[start : start + 200] = 20000
    with tempfile.TemporaryDirectory(prefix="montage-warm-") as folder:
        path = Path(folder) / "clicks.wav"
        with wave.open(str(path), "wb") as out:
            out.setnchannels(1)
            out.setsampwidth(2)
            out.setframerate(SAMPLE_RATE)
            out.writeframes(clicks.tobytes())
        analyze_music(path)


def analyze_music_checked(path: str, duration: float | None = None) -> Any:
    """Music analysis with librosa's JIT caches warmed safely first (runs in the music process)."""
    from .jit import distribution_version, ensure_warm
    from .music import analyze_music

    from . import music_cache

    ensure_warm(f"librosa-{distribution_version('librosa')}", [str(Path(__file__).with_name("music.py"))], _warm_librosa,
                group="librosa")
    music = analyze_music(path, duration)
    music_cache.store(path, duration, music)
    return music


class DoneCall:
    """A call whose result was at hand (a remembered analysis): the same interface, no process."""

    def __init__(self, value: Any):
        self.value = value

    def result(self) -> Any:
        return self.value

    def cancel(self) -> None:
        pass

    def __enter__(self) -> DoneCall:
        return self

    def __exit__(self, *exc: Any) -> None:
        pass
