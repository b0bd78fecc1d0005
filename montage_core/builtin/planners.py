"""The built-in planner: a beat-synced story arc (intro, build, climax, outro) from the music's energy."""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import MontageError
from ..hookspecs import hookimpl
from ..interfaces import PlanRequest, Planner
from ..models import Cut, MusicAnalysis, Shot, Timeline, Transition

log = logging.getLogger("montage")

#: frames kept clear at each end of a shot: the frames next to a detected cut are often mixed
SHOT_MARGIN_FRAMES = 2
#: the last cut runs to the end of the music; a remainder shorter than this joins the cut before
MIN_TAIL_SECONDS = 0.75
#: where in a whole shot a cut may start (fraction of the spare length), best first: centre first
WINDOW_POSITIONS = (0.5, 0.0, 1.0, 0.25, 0.75)
#: at most this many back-to-back cuts are offered from one window
MAX_TILES = 16
#: a phrase: the bars a piece of music is built of; a montage cut short ends on a phrase when it can
BARS_PER_PHRASE = 4


@dataclass
class Arc:
    """Story phases as time ranges: intro [0, build), build [build, climax), climax, outro [outro, end]."""

    build: float
    climax: float
    climax_end: float
    outro: float

    def phase(self, t: float) -> str:
        # After the climax comes the release: paced as the outro, never a second build.
        if t < self.build:
            return "intro"
        if t < self.climax:
            return "build"
        if t < self.climax_end:
            return "climax"
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
        duration = ending(music, request.duration)
        total_frames = int(round(duration * fps))
        duration = total_frames / fps
        arc = story_arc(music, duration)
        rng = random.Random(request.seed)
        # Beats as output frames: a cut placed there is on the beat within half a frame.
        beat_frames = sorted({int(round(b * fps)) for b in music.beats if 0 < b * fps < total_frames})
        downbeats = {int(round(b * fps)) for b in music.downbeats}
        accents = {int(round(b * fps)): music.accent(b) for b in music.beats}
        usable = [b for b in beat_frames if b <= total_frames - int(MIN_TAIL_SECONDS * fps)]
        section_frames = {int(round(t * fps)) for t in music.sections}
        lengths = BeatPlan(usable, downbeats, accents, {k for k, frame in enumerate(usable) if frame in section_frames},
                           lambda k: style.pacing[arc.phase((usable[k - 1] if k else 0) / fps)])
        fade = 0
        if style.transition.kind == "crossfade":
            fade = max(2, int(round(style.transition.duration * fps)))
        picker = ShotPicker(request.ranked, fps)
        boundaries, picks = [0], []
        forced_short = 0
        i = 0  # index of the first usable beat after the current cut
        while True:
            while i < len(usable) and usable[i] <= boundaries[-1]:
                i += 1
            if i >= len(usable):
                break
            options = lengths.options(i, rng)
            # The best-placed length of the style's range that footage not shown yet can fill, else
            # the best-placed one, reusing footage; shorter than the range only when no shot at all
            # is long enough for it (then the longest length some shot can fill, still on a beat).
            def need(m: int) -> float:
                return self._need(boundaries[-1], usable[i + m - 1], fade, fps)

            fits = [m for m in options if picker.has_unused(need(m))]
            if not fits and not any(picker.long_enough(need(m)) for m in options):
                shorter = [m for m in range(min(options) - 1, 0, -1) if picker.long_enough(need(m))]
                forced_short += bool(shorter)
                fits = shorter[:1]
            k = fits[0] if fits else options[0]
            end = usable[i + k - 1]
            picks.append(picker.pick(self._need(boundaries[-1], end, fade, fps), picks[-1] if picks else None))
            boundaries.append(end)
            i += k
        picks.append(picker.pick(self._need(boundaries[-1], total_frames, fade, fps), picks[-1] if picks else None))
        boundaries.append(total_frames)
        if forced_short:
            log.warning("%d of %d cuts are shorter than style %s asks: no shot is long enough for them",
                        forced_short, len(picks), style.name)
        spans = list(zip(boundaries, boundaries[1:]))
        halves = [0] + [self._half_overlap(fade, spans[k - 1], spans[k]) for k in range(1, len(spans))] + [0]
        cuts: list[Cut] = []
        for k, ((a, b), pick) in enumerate(zip(spans, picks)):
            h_in, h_out = halves[k], halves[k + 1]
            need = (b - a + h_in + h_out) / fps
            cuts.append(Cut(
                index=k, source=pick.shot.clip, source_in=round(pick.source_in, 6),
                source_out=round(pick.source_in + need, 6), start=a / fps, end=b / fps, phase=arc.phase(a / fps),
                shot=pick.shot.id, score=pick.score,
                transition=Transition("crossfade", 2 * h_in / fps) if h_in else Transition("cut"),
            ))
        return Timeline(
            music=music.path, duration=duration, fps=fps, width=request.width, height=request.height,
            style=style.name, grade=style.grade, seed=request.seed, cuts=cuts, tempo=round(music.tempo, 3),
            beats=[b for b in music.beats if b <= duration + 0.5 / fps], planner=self.name,  # the end's beat too
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


class BeatPlan:
    """The best cut lengths (in beats) from each beat on, planned a section at a time.

    A cut's merit is how well its end sits: the beat's accent, a downbeat a little more than another
    beat of the same accent (centred, so a cut on an average beat adds nothing and more cuts are
    no better than fewer). From each usable beat, the best total merit of cuts in the style's range for their phase that
    end exactly on the next section change (or on the last usable beat) is found backwards, once:
    a greedy choice would reach a section change a beat short or over it. Where no cuts in range
    land there, the one cut before it is shorter or longer than the range.
    """

    #: what a cut outside the style's range costs: more than any accent gains
    OUT_OF_RANGE = 2.0

    def __init__(self, usable: list[int], downbeats: set[int], accents: dict[int, float], sections: set[int],
                 pacing_at: Callable[[int], tuple[int, int]]):
        n = len(usable)
        self.merit = [accents.get(f, 0.5) + (0.1 if f in downbeats else 0.0) - 0.53 for f in usable]
        self.pacing = [pacing_at(k) for k in range(n)]
        #: for each beat, the index of the beat the cuts from there must land on
        self.landing = [0] * n
        target = n - 1
        for k in range(n - 1, -1, -1):
            if k in sections and k < n - 1:
                target = k
            self.landing[k] = target
        self.best = [0.0] * (n + 1)  # best[i]: the best total from "the next cut starts after beat i-1"
        for i in range(n - 1, -1, -1):
            self.best[i] = max(value for _, value in self._scored(i))

    def _scored(self, i: int) -> list[tuple[int, float]]:
        """(length, merit of this cut plus the best of what follows) for the lengths allowed from ``i``."""
        low, high = self.pacing[i]
        landing = self.landing[i]
        inside = [k for k in range(low, high + 1) if i + k - 1 <= landing]
        if inside:
            return [(k, self.merit[i + k - 1] + self.best[i + k]) for k in inside]
        k = landing - i + 1  # no length in range fits before the landing beat: this one cut lands on it
        return [(k, self.merit[landing] - self.OUT_OF_RANGE + self.best[landing + 1])]

    def options(self, i: int, rng: random.Random) -> list[int]:
        """The lengths from beat ``i``, best first (a little seeded randomness keeps the pace alive)."""
        scored = self._scored(i)
        return [k for k, _ in sorted(scored, key=lambda kv: kv[1] + 0.1 * rng.random(), reverse=True)]


def ending(music: MusicAnalysis, requested: float | None) -> float:
    """Where the montage ends: the whole track, or for a requested length the bar line nearest it,
    a phrase's (every 4th bar) when one lies within a bar of it, so the piece never stops mid-phrase."""
    if not requested or requested >= music.duration:
        return music.duration
    bars = [b for b in music.downbeats if 0.5 * requested <= b <= min(music.duration, 1.5 * requested)]
    if not bars:
        return requested
    bar = (bars[-1] - bars[0]) / max(1, len(bars) - 1) if len(bars) > 1 else 2.0
    first = music.downbeats.index(bars[0])
    phrases = [b for n, b in enumerate(bars) if (first + n) % BARS_PER_PHRASE == 0 and abs(b - requested) <= bar]
    end = min(phrases or bars, key=lambda b: abs(b - requested))
    log.info("ending at %.2f s on a %s line (asked for %.2f s)", end, "phrase" if phrases else "bar", requested)
    return end


@dataclass(frozen=True)
class Pick:
    """The footage for one cut: the shot (or window) it comes from, its score, where it starts."""

    shot: Shot
    score: float
    source_in: float


class ShotPicker:
    """The best-ranked footage not used yet that is long enough. Reuse comes last, only once no
    unused stretch fits: then the least-used footage, never the stretch of the cut just before."""

    def __init__(self, ranked: list[tuple[Shot, float]], fps: float):
        if not ranked:
            raise MontageError("no usable shots to plan with")
        self.ranked = ranked
        self.fps = fps
        #: frames kept clear next to a detected cut, in seconds
        self.margin = SHOT_MARGIN_FRAMES / fps
        #: source ranges used so far, by detected shot (its windows share them), in the time of the
        #: shot's original when the shot is a copy of another file's (see :func:`same_footage`)
        self.used: dict[tuple[str, int], list[tuple[float, float]]] = {}
        self.footage = same_footage([shot for shot, _ in ranked], fps)

    def _used(self, shot: Shot) -> tuple[list[tuple[float, float]], float]:
        """The ranges already shown of ``shot``'s footage and the offset from its time to theirs."""
        key, offset = self.footage.get((shot.clip, shot.index), ((shot.clip, shot.index), 0.0))
        return self.used.setdefault(key, []), offset

    def _starts(self, shot: Shot, need: float) -> list[float]:
        """Where a cut of ``need`` seconds could start in ``shot`` (best first); [] when it does not fit.
        A window is taken from its start and may run on to the end of its shot; a whole shot from
        its middle first, then its other parts."""
        lo = shot.start + (self.margin if shot.window <= 1 else 0.0)
        hi = shot.shot_end - self.margin
        if hi - lo < need:
            return []
        # Back to back from the start of a window (up to its end), so a window serves several cuts
        # before any of its frames is shown twice; a whole shot from the middle out.
        tiles = [lo + k * need for k in range(MAX_TILES) if lo + k * need < max(lo + 1e-9, min(shot.end, hi - need))]
        # right after what earlier cuts took from this shot: footage used up without gaps
        used, offset = self._used(shot)
        after_used = [b - offset for _, b in sorted(used) if lo <= b - offset <= hi - need]
        if shot.window:
            return (tiles or [lo])[:1] + after_used + tiles[1:]
        return [lo + (hi - lo - need) * position for position in WINDOW_POSITIONS] + after_used + tiles[1:]

    def _overlap(self, shot: Shot, start: float, end: float) -> int:
        """How used a cut from ``start`` to ``end`` of ``shot`` would be: 0 for fresh footage (an
        untouched shot, or an untouched window of a long one), 1 for an unused part of a shot already
        cut from, 1 + n when it shows again what n earlier cuts showed."""
        slack = 0.5 / self.fps  # touching ranges are fine; sharing even one frame is not
        used_in_original, offset = self._used(shot)
        used = [(a - offset, b - offset) for a, b in used_in_original]
        overlaps = sum(1 for a, b in used if start < b - slack and a + slack < end)
        if overlaps:
            return 1 + overlaps
        if shot.window:
            return int(any(shot.start < b - slack and a + slack < shot.end for a, b in used))
        return int(bool(used))

    def _options(self, need: float) -> list[tuple[int, Pick]]:
        """(times used, pick) for every shot long enough, at its least-used start."""
        options = []
        for shot, score in self.ranked:
            best: tuple[int, float] | None = None
            for start in self._starts(shot, need):
                used = self._overlap(shot, start, start + need)
                if best is None or used < best[0]:
                    best = (used, start)
                if used == 0:
                    break
            if best is not None:
                options.append((best[0], Pick(shot, score, best[1])))
        return options

    def long_enough(self, need: float) -> bool:
        """Whether any shot can fill ``need`` seconds, used or not."""
        return any(self._starts(shot, need) for shot, _ in self.ranked)

    def has_unused(self, need: float) -> bool:
        """Whether footage not shown yet is long enough for ``need`` seconds."""
        return any(self._overlap(shot, start, start + need) <= 1
                   for shot, _ in self.ranked for start in self._starts(shot, need))

    def pick(self, need: float, previous: Pick | None) -> Pick:
        options = self._options(need)
        if not options:  # nothing is long enough: the longest shots (the renderer holds the last frame)
            longest = max(s.shot_end - s.start for s, _ in self.ranked)
            options = [(self._overlap(s, s.start, s.shot_end), Pick(s, sc, s.start + (self.margin if s.window <= 1 else 0.0)))
                       for s, sc in self.ranked if s.shot_end - s.start == longest]
        fewest = min(used for used, _ in options)
        candidates = [pick for used, pick in options if used == fewest]
        if previous is not None:  # among the least used, not the shot just shown (a jump cut), nor a copy of it
            candidates = [p for p in candidates
                          if not (self._same_stretch(p, previous) or near_duplicates(p.shot, previous.shot))] or candidates
        choice = candidates[0]
        # Among near-equal candidates, avoid two cuts in a row from the same clip.
        for pick in candidates:
            if pick.score < choice.score - 0.05:
                break
            if previous is None or pick.shot.clip != previous.shot.clip:
                choice = pick
                break
        used, offset = self._used(choice.shot)
        used.append((choice.source_in + offset, choice.source_in + need + offset))
        return choice

    @staticmethod
    def _same_stretch(a: Pick, b: Pick) -> bool:
        return a.shot.clip == b.shot.clip and a.shot.index == b.shot.index


#: mean difference of the 4×4 layout cells (luma 0..1) below which two pictures look the same
NEAR_DUPLICATE_LAYOUT = 0.03


def near_duplicates(a: Shot, b: Shot) -> bool:
    """Whether two shots from different files show near-identical pictures (a copy, a re-encode, the
    same scene shot twice): their 4×4 layouts (the ``layout`` analyzer's perceptual signature) and
    brightness match. Without layouts nothing is a duplicate."""
    if a.clip == b.clip:
        return False
    cells = [f"layout_{k}" for k in range(16)]
    if not all(c in a.features and c in b.features for c in cells):
        return False
    difference = sum(abs(a.features[c] - b.features[c]) for c in cells) / len(cells)
    return difference < NEAR_DUPLICATE_LAYOUT


def same_footage(shots: Sequence[Shot], fps: float) -> dict[tuple[str, int], tuple[tuple[str, int], float]]:
    """Detected shots that are copies of another file's (a re-encode, a rescaled or trimmed copy),
    each mapped to ``((clip, index) of the original, offset from the copy's time to the original's)``.

    Two offered shots (or windows in the same place of their shots) are the same footage when they
    are :func:`near_duplicates`, equally long to a frame, and so is the rest of their shots: then
    what the copy shows is what the original shows, ``offset`` seconds later. Copies of copies map
    to one original (the first by clip name), so reuse is counted once for all of them."""
    tolerance = 1.5 / fps
    buckets: dict[tuple[int, int, int], list[Shot]] = {}
    for shot in shots:
        if all(f"layout_{k}" in shot.features for k in range(16)):
            key = (shot.window, round((shot.end - shot.start) * fps), round((shot.shot_end - shot.start) * fps))
            buckets.setdefault(key, []).append(shot)
    parent: dict[tuple[str, int], tuple[tuple[str, int], float]] = {}

    def root(key: tuple[str, int]) -> tuple[tuple[str, int], float]:
        offset = 0.0
        while key in parent:
            key, step = parent[key]
            offset += step
        return key, offset

    # Keys (window, length in frames, rest of the shot in frames) can differ by a rounding step
    # between a file and its copy, so each bucket is also compared with its neighbours.
    for (window, length, rest), group in sorted(buckets.items()):
        neighbours = [s for dl in (-1, 0, 1) for dr in (-1, 0, 1)
                      for s in buckets.get((window, length + dl, rest + dr), ())]
        for a in group:
            for b in neighbours:
                if (b.clip <= a.clip or abs((a.end - a.start) - (b.end - b.start)) > tolerance
                        or abs((a.shot_end - a.start) - (b.shot_end - b.start)) > tolerance
                        or not near_duplicates(a, b)):
                    continue
                (ra, oa), (rb, ob) = root((a.clip, a.index)), root((b.clip, b.index))
                if ra == rb:
                    continue
                # b's time + (a.start - b.start) is a's time; a's time + oa is ra's time
                first, second = sorted([ra, rb])
                if second == rb:
                    parent[rb] = (ra, (a.start - b.start) + oa - ob)
                else:
                    parent[ra] = (rb, (b.start - a.start) + ob - oa)

    # A trimmed copy starts or ends inside a shot of its original: its first (or last) shot is
    # shorter, ends (or starts) on the same cut, and is aligned there instead.
    first = {clip: min(s.start for s in shots if s.clip == clip) for clip in {s.clip for s in shots}}
    last = {clip: max(s.shot_end for s in shots if s.clip == clip) for clip in first}
    whole = [s for group in buckets.values() for s in group if s.window == 0]
    for a in whole:
        head, tail = a.start <= first[a.clip] + tolerance, a.shot_end >= last[a.clip] - tolerance
        if not (head or tail):
            continue
        for b in whole:
            if b.clip == a.clip or b.end - b.start < a.end - a.start - tolerance or not near_duplicates(a, b):
                continue
            (ra, oa), (rb, ob) = root((a.clip, a.index)), root((b.clip, b.index))
            if ra != rb:
                # a's time + (b.end - a.end) is b's time for a head piece, + (b.start - a.start) for a tail
                step = (b.end - a.end) if head else (b.start - a.start)
                parent[ra] = (rb, step + ob - oa)
    return {key: root(key) for key in parent}


@hookimpl
def montage_register_planners(register: Callable[[Any], None]) -> None:
    register(StoryArcPlanner())
