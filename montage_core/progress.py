"""Terminal progress: a bar per stage and one live line per worker."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path
from typing import TextIO

from .interfaces import ProgressEvent


def clock(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


VERBS = {"analysis": "analyzing", "music": "finding the beats of", "render": "rendering"}


def worker_line(event: ProgressEvent) -> str:
    """``worker-2 · analyzing beach.mp4 · 00:05:00 / 00:12:30``"""
    verb = VERBS.get(event.stage, event.stage) if event.state in ("started", "running") else event.state
    line = f"{event.worker} · {verb} {Path(event.clip).name}"
    if event.total:
        line += f" · {clock(event.position)} / {clock(event.total)}"
    return line


class ProgressDisplay:
    """Redraws in place on a terminal; elsewhere prints one line per finished shard."""

    def __init__(self, stage: str, total: int, stream: TextIO | None = None, quiet: bool = False):
        self.stage, self.total, self.done = stage, total, 0
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self.tty = self.stream.isatty()
        self.workers: dict[str, ProgressEvent] = {}
        self.finished: set[str] = set()  # shard ids: a shard re-run after its pod was evicted counts once
        self._drawn = 0
        self._last = 0.0
        self._lock = threading.Lock()
        self.started = time.monotonic()
        #: media seconds of each shard, and how far each has got: the ETA is media-weighted
        self.lengths: dict[str, float] = {}
        self.positions: dict[str, float] = {}

    def eta(self) -> str:
        """`` · ETA 00:01:23`` once a tenth of the work is done ("" before: too early to tell)."""
        total = sum(self.lengths.values())
        if not total:
            total, done = float(max(1, self.total)), float(self.done)
        else:
            done = sum(min(self.positions.get(k, 0.0), v) for k, v in self.lengths.items())
        if done < 0.1 * total or done >= total:
            return ""
        elapsed = time.monotonic() - self.started
        return f" · ETA {clock(elapsed * (total - done) / done)}"

    def event(self, event: ProgressEvent) -> None:
        with self._lock:
            if event.state == "queued":
                self.total += 1
                self.lengths[event.shard] = float(event.total or 0.0)
                return
            self.workers[event.worker] = event
            if event.shard in self.lengths:
                finished = event.state in ("done", "failed")
                self.positions[event.shard] = self.lengths[event.shard] if finished else float(event.position or 0.0)
            if event.state in ("done", "failed") and event.shard not in self.finished:
                self.finished.add(event.shard)
                self.done = len(self.finished)
                if not self.tty and not self.quiet:
                    print(f"{self.stage} {self.done}/{self.total} · {worker_line(event)}{self.eta()}", file=self.stream)
            if self.tty and not self.quiet and (time.monotonic() - self._last > 0.1 or event.state == "done"):
                self._draw()

    def _draw(self) -> None:
        self._last = time.monotonic()
        width = 30
        filled = int(width * self.done / max(1, self.total))
        lines = [f"{self.stage:9s} [{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total}{self.eta()}"]
        lines += [f"  {worker_line(e)}" for _, e in sorted(self.workers.items())]
        out = ("\x1b[F\x1b[2K" * self._drawn) + "\n".join(lines) + "\n"
        self.stream.write(out)
        self.stream.flush()
        self._drawn = len(lines)

    def close(self) -> None:
        if self.tty and not self.quiet:
            with self._lock:
                self._draw()
