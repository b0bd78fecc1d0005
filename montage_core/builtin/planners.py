"""The built-in planner: a beat-synced story arc (intro, build, climax, outro) from the music's energy."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import MontageError
from ..hookspecs import hookimpl
from ..interfaces import PlanRequest, Planner
from ..models import Cut, MusicAnalysis, Shot, Timeline, Transition

#: frames kept clear at each end of a shot: the frames next to a detected cut are often mixed
SHOT_MARGIN_FRAMES = 2
#: the last cut runs to the end of the music; a remainder shorter than this joins the cut before
MIN_TAIL_SECONDS = 0.75
#: where in a shot the n-th use of it is taken (fraction of the spare length): centre first
WINDOW_POSITIONS = (0.5, 0.0, 1.0, 0.25, 0.75)


@dataclass
class Arc:
    """Story phases as time ranges: intro [0, build), build [build, climax), climax, outro [outro, end]."""

    build: float
    climax: float
    climax_end: float
    outro: float

    def phase(self, t: float) -> str:
        if t < self.build:
            return "intro"
        if t < self.climax:
            return "build"
        if t < self.climax_end:
            return "climax"
        if t < self.outro:
            return "build"
        return "outro"


def story_arc(music: MusicAnalysis, duration: float) -> Arc:
    """Climax: the loudest stretch (a quarter of the piece); intro/outro: the quiet ends around it."""
    step = 0.5
    times = [i * step for i in range(int(duration / step) + 1)]
    energy = [music.energy_at(t) for t in times]
    width = max(1, int(0.25 * len(times)))
    best = max(range(0, len(times) - width + 1), key=lambda i: (sum(energy[i : i + width]), -i))
    climax, climax_end = times[best], times[min(len(times) - 1, best + width - 1)]
    threshold = 0.5 * max(energy) if max(energy) > 0 else 0.0
    first_loud = next((t for t, e in zip(times, energy) if e >= threshold), 0.0)
    last_loud = next((t for t, e in zip(reversed(times), reversed(energy)) if e >= threshold), duration)
    build = min(max(first_loud, 0.08 * duration), 0.25 * duration, climax)
    outro = max(min(last_loud, 0.92 * duration), 0.8 * duration, climax_end)
    return Arc(build, climax, climax_end, outro)


class StoryArcPlanner(Planner):
    name = "story_arc"
    description = "Every cut on a beat; pacing from the style for intro, build, climax and outro"

    def plan(self, request: PlanRequest) -> Timeline:
        music, style, fps = request.music, request.style, request.fps
        duration = min(music.duration, request.duration or music.duration)
        total_frames = int(round(duration * fps))
        duration = total_frames / fps
        arc = story_arc(music, duration)
        rng = random.Random(request.seed)
        # Beats as output frames: a cut placed there is on the beat within half a frame.
        beat_frames = sorted({int(round(b * fps)) for b in music.beats if 0 < b * fps < total_frames})
        downbeats = {int(round(b * fps)) for b in music.downbeats}
        usable = [b for b in beat_frames if b <= total_frames - int(MIN_TAIL_SECONDS * fps)]
        fade = 0
        if style.transition.kind == "crossfade":
            fade = max(2, int(round(style.transition.duration * fps)))
        picker = ShotPicker(request.ranked, fps)
        boundaries, picks = [0], []
        i = 0  # index of the first usable beat after the current cut
        while True:
            while i < len(usable) and usable[i] <= boundaries[-1]:
                i += 1
            if i >= len(usable):
                break
            k = self._beats_for_cut(usable, i, downbeats, style.pacing[arc.phase(boundaries[-1] / fps)], rng)
            # Shorten the cut (still on a beat) to the longest one an unused shot can fill, if any can.
            fits = [m for m in range(k, 0, -1)
                    if picker.has_unused(self._need(boundaries[-1], usable[i + m - 1], fade, fps))]
            k = fits[0] if fits else k
            end = usable[i + k - 1]
            previous = picks[-1][0].clip if picks else None
            picks.append(picker.pick(self._need(boundaries[-1], end, fade, fps), previous))
            boundaries.append(end)
            i += k
        picks.append(picker.pick(self._need(boundaries[-1], total_frames, fade, fps),
                                 picks[-1][0].clip if picks else None))
        boundaries.append(total_frames)
        spans = list(zip(boundaries, boundaries[1:]))
        halves = [0] + [self._half_overlap(fade, spans[k - 1], spans[k]) for k in range(1, len(spans))] + [0]
        cuts: list[Cut] = []
        for k, ((a, b), (shot, score)) in enumerate(zip(spans, picks)):
            h_in, h_out = halves[k], halves[k + 1]
            need = (b - a + h_in + h_out) / fps
            # A shot shorter than its slot starts at its first frame; the renderer holds its last one.
            # A reused shot shows another part of itself where it is long enough.
            slack = max(0.0, shot.duration - need - picker.margin)
            source_in = shot.start + picker.margin / 2 + slack * WINDOW_POSITIONS[picker.nth_use[k] % len(WINDOW_POSITIONS)]
            cuts.append(Cut(
                index=k, source=shot.clip, source_in=round(source_in, 6), source_out=round(source_in + need, 6),
                start=a / fps, end=b / fps, phase=arc.phase(a / fps), shot=shot.id, score=score,
                transition=Transition("crossfade", 2 * h_in / fps) if h_in else Transition("cut"),
            ))
        return Timeline(
            music=music.path, duration=duration, fps=fps, width=request.width, height=request.height,
            style=style.name, grade=style.grade, seed=request.seed, cuts=cuts, tempo=round(music.tempo, 3),
            beats=[b for b in music.beats if b <= duration], planner=self.name,
        )

    @staticmethod
    def _need(start: int, end: int, fade: int, fps: float) -> float:
        """Source seconds a cut from frame ``start`` to ``end`` may need, dissolve handles included."""
        return (end - start + fade) / fps

    @staticmethod
    def _half_overlap(fade: int, left: tuple[int, int], right: tuple[int, int]) -> int:
        """Half a crossfade in frames, at most 40 % of either neighbouring cut."""
        limit = int(0.4 * min(left[1] - left[0], right[1] - right[0]))
        return min(fade, limit) // 2

    @staticmethod
    def _beats_for_cut(usable: list[int], i: int, downbeats: set[int], pacing: tuple[int, int],
                       rng: random.Random) -> int:
        """Beats this cut lasts: the style's range for the phase, landing on a downbeat when it can."""
        low, high = pacing
        n = rng.randint(low, high)
        options = [k for k in range(low, high + 1) if i + k - 1 < len(usable)]
        on_bar = [k for k in options if usable[i + k - 1] in downbeats]
        if on_bar and n not in on_bar:
            n = min(on_bar, key=lambda k: abs(k - n))
        return max(1, min(n, len(usable) - i))


class ShotPicker:
    """Best-ranked unused shot that is long enough; reuse only once every usable shot has been used."""

    def __init__(self, ranked: list[tuple[Shot, float]], fps: float):
        if not ranked:
            raise MontageError("no usable shots to plan with")
        self.ranked = ranked
        self.margin = 2 * SHOT_MARGIN_FRAMES / fps
        self.uses: dict[tuple[str, int], int] = {}
        #: for each pick in order, how often its shot had been picked before
        self.nth_use: list[int] = []

    def _fits(self, shot: Shot, need: float) -> bool:
        return shot.duration >= need + self.margin

    def has_unused(self, need: float) -> bool:
        """Whether a shot used least so far (unused, until all are) is long enough for ``need`` seconds."""
        fewest = min(self.uses.get(self._key(s), 0) for s, _ in self.ranked)
        return any(self._fits(s, need) and self.uses.get(self._key(s), 0) == fewest for s, _ in self.ranked)

    def pick(self, need: float, previous_clip: str | None) -> tuple[Shot, float]:
        fitting = [(s, sc) for s, sc in self.ranked if self._fits(s, need)]
        if not fitting:  # nothing is long enough: the longest shots (the renderer holds the last frame)
            longest = max(s.duration for s, _ in self.ranked)
            fitting = [(s, sc) for s, sc in self.ranked if s.duration == longest]
        fewest = min(self.uses.get(self._key(s), 0) for s, _ in fitting)
        candidates = [(s, sc) for s, sc in fitting if self.uses.get(self._key(s), 0) == fewest]
        best_score = candidates[0][1]
        choice = candidates[0]
        # Among near-equal candidates, avoid two cuts in a row from the same clip.
        for shot, score in candidates:
            if score < best_score - 0.05:
                break
            if shot.clip != previous_clip:
                choice = (shot, score)
                break
        key = self._key(choice[0])
        self.nth_use.append(self.uses.get(key, 0))
        self.uses[key] = self.uses.get(key, 0) + 1
        return choice

    @staticmethod
    def _key(shot: Shot) -> tuple[str, int]:
        return (shot.clip, shot.index)


@hookimpl
def montage_register_planners(register: Callable[[Any], None]) -> None:
    register(StoryArcPlanner())
