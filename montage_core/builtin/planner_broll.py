"""The B-roll planner: for each line of a script, the best unused shot that shows what it says.

``montage run CLIPS --music M --planner broll --script SCRIPT`` where SCRIPT is plain text (one
line per stretch of the music, shared out evenly) or SRT (each cue from its own timestamp). Cue
boundaries snap to the nearest beat. Lines are scored against every shot on the backend (one
task per group of lines); the choice is then made in script order, so no shot is reused while
another one matching the line is still unused.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from ..errors import InputError, UsageError
from ..hookspecs import hookimpl
from ..interfaces import PlanRequest, Planner, ProgressEvent, ShardTask
from ..models import Cut, Shot, Timeline
from ..specs import ScoreSpec

LINES_PER_TASK = 16
_SRT_TIME = re.compile(r"(\d+):(\d+):(\d+)[,.](\d+)\s*-->\s*(\d+):(\d+):(\d+)[,.](\d+)")


@dataclass
class ScriptLine:
    text: str
    start: float | None = None  # seconds (SRT); None for plain text


def read_script(path: str | Path) -> list[ScriptLine]:
    """Plain text (one line each, blank lines ignored) or SRT cues."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise InputError(path, f"cannot read the script ({exc.strerror})") from None
    if "-->" in text:
        lines = []
        for block in re.split(r"\n\s*\n", text.strip()):
            match = _SRT_TIME.search(block)
            if not match:
                continue
            h, m, s, ms = (int(x) for x in match.groups()[:4])
            words = " ".join(line.strip() for line in block.splitlines()[block.splitlines().index(
                next(line for line in block.splitlines() if "-->" in line)) + 1:])
            lines.append(ScriptLine(words, h * 3600 + m * 60 + s + ms / 1000))
        if not lines:
            raise InputError(path, "looks like SRT but has no cue with a timestamp")
        return lines
    lines = [ScriptLine(line.strip()) for line in text.splitlines() if line.strip()]
    if not lines:
        raise InputError(path, "the script is empty")
    return lines


def score_lines(task: ShardTask, emit: Callable[[ProgressEvent], None]) -> list[list[float]]:
    """Shard function: each line's match score against every shot (inner products)."""
    import numpy as np

    from ..plugins import get_manager

    spec: ScoreSpec = task.payload
    embedder = get_manager().embedders.get(spec.embedder)  # the worker's own plugins
    return line_scores(embedder, np.asarray(spec.shot_vectors, np.float32), spec.lines)


def line_scores(embedder: Any, shots: Any, lines: list[str]) -> list[list[float]]:
    """Each line's inner product with every row of ``shots`` (float32[n_shots, dim])."""
    return [(shots @ embedder.embed_text(text)).tolist() for text in lines]


class BrollPlanner(Planner):
    name = "broll"
    description = "Script lines (text or SRT) matched to the shots that show them, cut on the beat"

    def plan(self, request: PlanRequest) -> Timeline:
        import numpy as np

        from ..engine import run_shards
        from ..search import read_sidecar

        script = request.options.get("script")
        if not script:
            raise UsageError("the broll planner needs --script FILE (plain text or SRT)")
        lines = read_script(script)
        music, fps = request.music, request.fps
        total = int(round(min(music.duration, request.duration or music.duration) * fps))
        starts = self._starts(lines, total, fps, music.beats)
        shots = [shot for shot, _ in request.ranked]
        rank_score = {self._key(s): score for s, score in request.ranked}
        if request.manager is None:
            raise UsageError("the broll planner needs the job's plugin manager (PlanRequest.manager)")
        embedder = request.manager.embedders.get(request.options.get("embedder", "descriptor"))
        by_clip: dict[str, list[Shot]] = {}
        for shot in shots:
            by_clip.setdefault(shot.clip, []).append(shot)
        vectors, order = [], []
        for clip, clip_shots in by_clip.items():
            vectors.append(embedder.embed_shots(SimpleNamespace(shots=clip_shots), read_sidecar(clip)))
            order += clip_shots
        matrix = np.concatenate(vectors).tolist()
        tasks = [ShardTask(f"broll-{i:04d}", "plan", f"lines {i + 1}–{i + LINES_PER_TASK}",
                           ScoreSpec(embedder=embedder.name, shot_vectors=matrix,
                                     lines=[line.text for line in lines[i : i + LINES_PER_TASK]]))
                 for i in range(0, len(lines), LINES_PER_TASK)]
        backend = request.backend
        if backend is None:  # planning outside a job: score here, with this request's embedder
            scores = line_scores(embedder, np.asarray(matrix, np.float32), [line.text for line in lines])
        else:
            outcomes = run_shards(backend, score_lines, tasks, on_event=lambda e: None)
            failed = [o for o in outcomes.values() if not o.ok]
            if failed:
                raise InputError(script, f"scoring the script failed: {failed[0].error}")
            scores = [row for t in tasks for row in outcomes[t.id].result]
        bounds = [*starts, total]
        used: dict[tuple[str, int], int] = {}
        cuts = []
        for i, line in enumerate(lines):
            a, b = bounds[i], bounds[i + 1]
            need = (b - a) / fps
            shot, score = self._choose(order, scores[i], need, used, rank_score, fps)
            used[self._key(shot)] = used.get(self._key(shot), 0) + 1
            source_in = shot.start + max(0.0, (shot.duration - need) / 2)
            cuts.append(Cut(i, shot.clip, round(source_in, 6), round(source_in + need, 6), a / fps, b / fps,
                            "broll", shot.id, round(score, 4), note=line.text))
        return Timeline(music.path, total / fps, fps, request.width, request.height, request.style.name,
                        request.style.grade, request.seed, cuts, round(music.tempo, 3),
                        [b for b in music.beats if b <= total / fps], planner=self.name)

    @staticmethod
    def _key(shot: Shot) -> tuple[str, int]:
        return (shot.clip, shot.index)

    @staticmethod
    def _starts(lines: list[ScriptLine], total: int, fps: float, beats: list[float]) -> list[int]:
        """First frame of each line's cut: its cue (SRT) or an even share (text), snapped to a beat."""
        beat_frames = sorted({int(round(b * fps)) for b in beats if 0 < b * fps < total})
        if not beat_frames:
            raise UsageError("the music has no beats to cut on")
        wanted = [int(round(line.start * fps)) if line.start is not None else total * k // len(lines)
                  for k, line in enumerate(lines)]
        starts = [0]
        for frame in wanted[1:]:
            later = [b for b in beat_frames if b > starts[-1]]
            if not later:
                raise UsageError(f"the script has more lines ({len(lines)}) than the music has beats to cut on")
            starts.append(min(later, key=lambda b: abs(b - frame)))
        return starts

    def _choose(self, shots: list[Shot], scores: list[float], need: float, used: dict[tuple[str, int], int],
                rank_score: dict[tuple[str, int], float], fps: float) -> tuple[Shot, float]:
        """Best unused matching shot that fits; else reuse the best match; else the style's best."""
        fits = [(s, sc) for s, sc in zip(shots, scores) if s.duration >= need]
        # When no shot is as long as the line, any may serve: the renderer holds its last frame.
        pool = fits or list(zip(shots, scores))
        matching = [(s, sc) for s, sc in pool if sc > 1e-6]
        for candidates in ([p for p in matching if self._key(p[0]) not in used], matching):
            if candidates:
                return max(candidates, key=lambda p: (p[1], -used.get(self._key(p[0]), 0), p[0].id))
        fewest = min(used.get(self._key(s), 0) for s, _ in pool)
        return max(((s, sc) for s, sc in pool if used.get(self._key(s), 0) == fewest),
                   key=lambda p: (rank_score.get(self._key(p[0]), 0.0), p[0].id))


@hookimpl
def montage_register_planners(register: Callable[[Any], None]) -> None:
    register(BrollPlanner())
