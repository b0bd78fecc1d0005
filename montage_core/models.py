"""The data model: one type per pipeline stage, each with a stable JSON form.

probe → ``MediaInfo``; analyze → ``ClipAnalysis`` (``Shot`` s); music → ``MusicAnalysis``;
select → ranked ``Shot`` s; plan → ``Timeline`` (``Cut`` s); render → ``RenderResult``.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

TIMELINE_SCHEMA = "montage.timeline"
TIMELINE_VERSION = 2
#: versions this release still reads (1: no ``crop`` on the cuts, every cut letterboxed)
TIMELINE_READABLE = (1, 2)
PHASES = ("intro", "build", "climax", "outro")
Phase = Literal["intro", "build", "climax", "outro"]
#: the output format of every montage unless told otherwise: CLI, demo and web UI alike (here, not
#: in ``job``, so the CLI can show them as option defaults without importing the job machinery)
DEFAULT_WIDTH, DEFAULT_HEIGHT, DEFAULT_FPS = 1920, 1080, 30.0


@dataclass(frozen=True)
class MediaInfo:
    """What probing a media file found."""

    path: str
    size: int
    duration: float
    has_video: bool
    has_audio: bool
    width: int = 0
    height: int = 0
    fps: float = 0.0
    video_codec: str = ""
    rotation: int = 0

    @property
    def frame_count(self) -> int:
        return int(round(self.duration * self.fps)) if self.fps else 0

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MediaInfo:
        return cls(**data)


@dataclass
class Shot:
    """A continuous stretch of one clip between two detected cuts, with aggregated features.

    A long shot is also offered as *windows*: consecutive stretches of it, each a ``Shot`` with
    the same ``index``, ``window`` ≥ 1, its own features, and ``extends_to`` the end of the shot
    it belongs to (a cut that starts in a window may run on past the window, never past a cut).
    """

    clip: str
    index: int
    start: float
    end: float
    features: dict[str, float] = field(default_factory=dict)
    #: 0 for a whole detected shot; k ≥ 1 for the k-th window of shot ``index``
    window: int = 0
    #: the end of the detected shot this window belongs to (0: ``end``)
    extends_to: float = 0.0

    @property
    def duration(self) -> float:
        return self.end - self.start

    @property
    def shot_end(self) -> float:
        """Where the detected shot ends: as far as a cut taken from here may run."""
        return self.extends_to or self.end

    @property
    def id(self) -> str:
        return f"{Path(self.clip).name}#{self.index}" + (f"w{self.window}" if self.window else "")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Shot:
        return cls(**data)


@dataclass
class ClipAnalysis:
    """Result of the single decode pass over one clip."""

    media: MediaInfo
    digest: str
    analyzers: dict[str, str]
    analysis_fps: float
    shots: list[Shot]
    frame_count: int = 0
    #: the long shots' windows (see :class:`Shot`), in time order
    windows: list[Shot] = field(default_factory=list)
    #: a few per-frame series kept compactly over the whole clip: ``{"fps": samples per second,
    #: NAME: [mean of each sample's frames, ...]}`` (the subject's position, motion), for reframing
    track: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ClipAnalysis:
        return cls(
            media=MediaInfo.from_dict(data["media"]),
            digest=data["digest"],
            analyzers=dict(data["analyzers"]),
            analysis_fps=data["analysis_fps"],
            shots=[Shot.from_dict(s) for s in data["shots"]],
            frame_count=data.get("frame_count", 0),
            windows=[Shot.from_dict(w) for w in data.get("windows", [])],
            track=dict(data.get("track", {})),
        )

    def with_clip_path(self, path: str) -> ClipAnalysis:
        """The same analysis for identical bytes found under another name."""
        media = MediaInfo.from_dict({**asdict(self.media), "path": path})
        shots = [replace(s, clip=path, features=dict(s.features)) for s in self.shots]
        windows = [replace(w, clip=path, features=dict(w.features)) for w in self.windows]
        return ClipAnalysis(media, self.digest, self.analyzers, self.analysis_fps, shots, self.frame_count, windows,
                            self.track)


@dataclass
class MusicAnalysis:
    """Beats, downbeats, tempo and a normalised energy curve of the music track."""

    path: str
    duration: float
    tempo: float
    beats: list[float]
    downbeats: list[float]
    energy_times: list[float]
    energy: list[float]
    #: each beat's accent: the percentile (0..1) of its onset strength among all the beats
    beat_strength: list[float] = field(default_factory=list)
    #: the beats where the music changes section (a chorus, a drop, a breakdown); 0 not counted
    sections: list[float] = field(default_factory=list)

    def accent(self, t: float) -> float:
        """The accent (0..1) of the beat nearest ``t``; 0.5 when the analysis has none."""
        import bisect

        if not self.beat_strength or len(self.beat_strength) != len(self.beats):
            return 0.5
        i = bisect.bisect_left(self.beats, t)
        nearest = min((j for j in (i - 1, i) if 0 <= j < len(self.beats)), key=lambda j: abs(self.beats[j] - t))
        return self.beat_strength[nearest]

    def energy_at(self, t: float) -> float:
        """Energy (0..1) at time ``t``, linearly interpolated."""
        import bisect

        times, values = self.energy_times, self.energy
        if not times:
            return 0.5
        i = bisect.bisect_left(times, t)
        if i <= 0:
            return values[0]
        if i >= len(times):
            return values[-1]
        t0, t1 = times[i - 1], times[i]
        w = (t - t0) / (t1 - t0) if t1 > t0 else 0.0
        return values[i - 1] * (1 - w) + values[i] * w

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MusicAnalysis:
        return cls(**data)


@dataclass(frozen=True)
class Transition:
    """How a cut is entered: a hard ``cut`` or a ``crossfade`` of ``duration`` seconds."""

    kind: Literal["cut", "crossfade"] = "cut"
    duration: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in ("cut", "crossfade"):
            raise ValueError(f"unknown transition {self.kind!r} (known: crossfade, cut)")


@dataclass
class Cut:
    """One shot placed on the timeline: source range, timeline range (on beats), transition in."""

    index: int
    source: str
    source_in: float
    source_out: float
    start: float
    end: float
    phase: str
    shot: str
    score: float = 0.0
    transition: Transition = field(default_factory=Transition)
    #: what the cut is for (the script line, for B-roll)
    note: str = ""
    #: the part of the source frame shown, when it is reframed rather than letterboxed: keyframes
    #: ``[t, x, y, w, h]``, ``t`` seconds after ``source_in``, the box normalised to the source
    #: frame (0..1), linearly interpolated between keyframes and held before the first / after
    #: the last; ``None``: the whole frame, letterboxed
    crop: list[list[float]] | None = None

    @property
    def duration(self) -> float:
        return self.end - self.start

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Cut:
        data = dict(data)
        data["transition"] = Transition(**data.get("transition", {}))
        return cls(**data)


@dataclass
class Timeline:
    """The plan: ordered cuts over the music. Its JSON form is versioned and public."""

    music: str
    duration: float
    fps: float
    width: int
    height: int
    style: str
    grade: str
    seed: int
    cuts: list[Cut]
    tempo: float = 0.0
    beats: list[float] = field(default_factory=list)
    audio_fade_out: float = 2.0
    planner: str = "story_arc"

    def frame(self, t: float) -> int:
        """Index of the output frame at which time ``t`` starts (cuts snap to these)."""
        return int(round(t * self.fps))

    @property
    def frame_count(self) -> int:
        return self.frame(self.duration)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        return {"schema": TIMELINE_SCHEMA, "version": TIMELINE_VERSION, **data}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Timeline:
        if data.get("schema") != TIMELINE_SCHEMA:
            raise ValueError(f"not a montage timeline (schema {data.get('schema')!r})")
        if data.get("version") not in TIMELINE_READABLE:
            raise ValueError(f"timeline version {data.get('version')!r} is not supported "
                             f"(supported: {', '.join(map(str, TIMELINE_READABLE))})")
        fields = {k: v for k, v in data.items() if k not in ("schema", "version")}
        if not isinstance(fields.get("cuts"), list) or not all(isinstance(c, dict) for c in fields["cuts"]):
            raise ValueError("'cuts' must be a list of cuts")
        fields["cuts"] = [Cut.from_dict(c) for c in fields["cuts"]]
        timeline = cls(**fields)
        timeline.check()
        return timeline

    def check(self) -> None:
        """Raise ``ValueError`` naming the first field that is not what the renderer can trust:
        types, ranges, cuts in order and covering the duration, and a grade of colour filters only
        (a timeline may come from someone else; see :mod:`montage_core.grades`)."""
        import math

        from .errors import UsageError
        from .grades import check_grade

        def number(name: str, value: Any, low: float, high: float) -> None:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                    or not low <= value <= high:
                raise ValueError(f"{name} {value!r} must be a number in {low:g}..{high:g}")

        def path(name: str, value: Any) -> None:
            if not isinstance(value, str) or not value or "\0" in value:
                raise ValueError(f"{name} {value!r} must be a file path")

        path("music", self.music)
        number("duration", self.duration, 1e-3, 86400)
        number("fps", self.fps, 1e-3, 240)
        for name in ("width", "height"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or not 2 <= value <= 16384 or value % 2:
                raise ValueError(f"{name} {value!r} must be an even whole number in 2..16384")
        if not isinstance(self.grade, str):
            raise ValueError("grade must be a string of ffmpeg colour filters")
        try:
            check_grade(self.grade)
        except UsageError as exc:
            raise ValueError(str(exc)) from None
        if not self.cuts:
            raise ValueError("the timeline has no cuts")
        slack = 1.0 / self.fps
        position = 0.0
        for cut in self.cuts:
            what = f"cut {cut.index}"
            path(f"{what}: source", cut.source)
            for name in ("source_in", "source_out", "start", "end"):
                number(f"{what}: {name}", getattr(cut, name), 0, 86400)
            if cut.source_out <= cut.source_in or cut.end <= cut.start:
                raise ValueError(f"{what}: ends before it starts")
            if abs(cut.start - position) > slack:
                raise ValueError(f"{what}: starts at {cut.start:g} s, not where the cut before ends ({position:g} s)")
            if cut.transition.kind not in ("cut", "crossfade"):
                raise ValueError(f"{what}: unknown transition {cut.transition.kind!r} (known: crossfade, cut)")
            number(f"{what}: transition duration", cut.transition.duration, 0, cut.end - cut.start + slack)
            if cut.crop is not None:
                check_crop(what, cut.crop, number)
            position = cut.end
        if abs(position - self.duration) > slack:
            raise ValueError(f"the cuts end at {position:g} s, not at the duration {self.duration:g} s")

    @classmethod
    def load(cls, path: str | Path) -> Timeline:
        from .errors import InputError

        try:
            return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
        except FileNotFoundError:
            raise InputError(path, "no such file") from None
        except (ValueError, KeyError, TypeError) as exc:
            raise InputError(path, f"not a valid timeline: {exc}") from None


def check_crop(what: str, crop: Any, number: Any) -> None:
    """A cut's crop keyframes are what the renderer can trust: ``[t, x, y, w, h]`` lists, times
    rising from 0, each box inside the frame (they become ffmpeg expressions)."""
    if not isinstance(crop, list) or not crop:
        raise ValueError(f"{what}: crop must be a non-empty list of [t, x, y, w, h] keyframes")
    before = -1.0
    for k, key in enumerate(crop):
        if not isinstance(key, list) or len(key) != 5:
            raise ValueError(f"{what}: crop keyframe {k} must be [t, x, y, w, h]")
        t, x, y, w, h = key
        number(f"{what}: crop keyframe {k} time", t, 0, 86400)
        for name, value in (("x", x), ("y", y)):
            number(f"{what}: crop keyframe {k} {name}", value, 0, 1)
        for name, value in (("w", w), ("h", h)):
            number(f"{what}: crop keyframe {k} {name}", value, 1e-3, 1)
        if x + w > 1 + 1e-6 or y + h > 1 + 1e-6:
            raise ValueError(f"{what}: crop keyframe {k} reaches outside the frame")
        if t <= before:
            raise ValueError(f"{what}: crop keyframe {k} is not after the one before")
        before = t
    if any(key[3:] != crop[0][3:] for key in crop):
        raise ValueError(f"{what}: every crop keyframe must have the same size (a crop pans, it does not zoom)")


@dataclass
class SegmentResult:
    """One rendered segment and the encoder that made it."""

    index: int
    path: str
    frames: int
    encoder: str
    attempts: list[str] = field(default_factory=list)


@dataclass
class RenderResult:
    """The finished montage and its exports."""

    video: str
    timeline_json: str
    otio: str
    edl: str
    segments: list[SegmentResult]
    duration: float


def publish(tmp: str | Path, path: str | Path) -> None:
    """Give a finished temporary file the usual permissions and rename it into place."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    os.replace(tmp, path)


def write_atomic(path: str | Path, data: str | bytes) -> None:
    """Write ``data`` to ``path`` via a temporary name in the same folder, then rename."""
    path = Path(path)
    mode = "wb" if isinstance(data, bytes) else "w"
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, mode, **({} if mode == "wb" else {"encoding": "utf-8"})) as fh:
            fh.write(data)
        publish(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
