"""Typed shard specs: what one shard of a stage needs, as it crosses a process or machine boundary.

Each stage has one spec class; the stage is chosen by the spec's type (its ``kind`` in the JSON
form), never by which keys a dict happens to hold. The JSON form is versioned
(``{"kind": ..., "version": 1, ...}``): it is what cluster workers read from shared storage, and a
worker refuses a spec of a version it does not know instead of guessing.

``placement`` says what a shard needs from the machine it runs on (an accelerator's device, abstract
resources such as ``accel-nvenc``); every backend honours it or refuses the shard.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from collections.abc import Callable
from typing import Any, ClassVar

from .errors import MontageError
from .models import MediaInfo

SPEC_VERSION = 1

#: the shard function of each stage, by kind (``module:function``): workers run these, by name
STAGE_FUNCTIONS = {
    "analysis": "montage_core.stages.analyze:analyze_shard",
    "music": "montage_core.stages.music:analyze_music_shard",
    "render": "montage_core.stages.render:render_segment",
    "render-batch": "montage_core.stages.render:render_batch",
    "index": "montage_core.search:embed_shard",
    "search": "montage_core.search:search_shard",
    "score": "montage_core.builtin.planner_broll:score_lines",
}


@dataclass(kw_only=True)
class Placement:
    """What a shard needs from its machine. ``accelerator``: the accelerator whose device it
    should use ("" for none); ``resources``: abstract resources a worker must advertise, such as
    ``{"accel-nvenc": 1}`` (``dask worker --resources accel-nvenc=1``)."""

    accelerator: str = ""
    resources: dict[str, float] = field(default_factory=dict)


@dataclass(kw_only=True)
class ShardSpec:
    """Base of the per-stage specs."""

    kind: ClassVar[str] = ""
    placement: Placement = field(default_factory=Placement)
    #: the node running it resolves its own encoders / decoder (a cluster of unlike machines)
    resolve_on_node: bool = False

    def to_json(self) -> dict[str, Any]:
        """The versioned plain-data form."""
        return {"kind": self.kind, "version": SPEC_VERSION, **asdict(self)}

    @staticmethod
    def from_json(data: dict[str, Any]) -> ShardSpec:
        """The spec a :meth:`to_json` form describes; an unknown kind or version is an error."""
        kind, version = data.get("kind"), data.get("version")
        cls = _KINDS.get(str(kind))
        if cls is None:
            raise MontageError(f"unknown shard kind {kind!r} (known: {', '.join(sorted(_KINDS))})")
        if version != SPEC_VERSION:
            raise MontageError(f"{kind} shard spec version {version!r} is not supported (this montage reads "
                               f"version {SPEC_VERSION}); run the same montage release on every worker")
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["placement"] = Placement(**values.get("placement", {}))
        return cls(**cls._decode(values))

    @classmethod
    def _decode(cls, values: dict[str, Any]) -> dict[str, Any]:
        """Nested dataclasses back from their plain form (overridden where a spec has them)."""
        return values

    def sources(self) -> list[str]:
        """Media files this shard reads."""
        return []

    def function(self) -> str:
        """The shard function of this spec's stage (``module:function``)."""
        return STAGE_FUNCTIONS[self.kind]

    def stage_function(self) -> Callable[..., Any]:
        """That function itself, imported by montage's own name for it (never a name from a file)."""
        import importlib

        module, _, name = self.function().partition(":")
        return getattr(importlib.import_module(module), name)

    def with_changes(self, **changes: Any) -> ShardSpec:
        return replace(self, **changes)


@dataclass(kw_only=True)
class AnalysisSpec(ShardSpec):
    """Analyze one clip, or ``frame_count`` frames of it from ``start_frame`` (a time range of a
    long clip, whose per-frame series the coordinator joins)."""

    kind: ClassVar[str] = "analysis"
    media: MediaInfo
    digest: str
    analyzers: dict[str, str]
    input_args: list[str] = field(default_factory=list)
    use_cache: bool = True
    ranged: bool = False
    start_frame: int = 0
    frame_count: int | None = None

    @classmethod
    def _decode(cls, values: dict[str, Any]) -> dict[str, Any]:
        return {**values, "media": MediaInfo.from_dict(values["media"])}

    def sources(self) -> list[str]:
        return [self.media.path]


@dataclass(kw_only=True)
class MusicSpec(ShardSpec):
    """Analyse the music track (its first ``duration`` seconds when given): beats, accents, sections."""

    kind: ClassVar[str] = "music"
    path: str
    duration: float | None = None

    def sources(self) -> list[str]:
        return [self.path]


@dataclass(kw_only=True)
class SegmentSource:
    """Where a segment's picture comes from: ``source`` from ``start`` seconds (``frames`` for a blend)."""

    source: str
    start: float
    frames: int = 0
    #: the reframing box's keyframes, times from ``start`` (see :attr:`montage_core.models.Cut.crop`);
    #: ``None``: the whole frame, letterboxed
    crop: list[list[float]] | None = None


@dataclass(kw_only=True)
class RenderSpec(ShardSpec):
    """Render one segment: ``frames`` frames of ``main``, dissolving into ``blend`` at its end.

    ``accel`` and ``quality`` travel with it so that a cluster node can resolve its own encoder
    chain; ``encoders`` is the chain the coordinator resolved (plain data any host can use).
    """

    kind: ClassVar[str] = "render"
    index: int
    frames: int
    fps: float
    width: int
    height: int
    grade: str
    encoders: list[dict[str, Any]]
    accel: str
    quality: str
    main: SegmentSource
    blend: SegmentSource | None = None
    #: the last ``fade_out`` frames fade to black (the montage's end, with the music's fade)
    fade_out: int = 0

    @classmethod
    def _decode(cls, values: dict[str, Any]) -> dict[str, Any]:
        blend = values.get("blend")
        return {**values, "main": SegmentSource(**values["main"]), "blend": SegmentSource(**blend) if blend else None}

    def sources(self) -> list[str]:
        return [self.main.source] + ([self.blend.source] if self.blend else [])


@dataclass(kw_only=True)
class RenderBatchSpec(ShardSpec):
    """Render consecutive segments in one go: one ffmpeg process and one encoder for all of them,
    its output split at their boundaries into one file per segment, each checked and cached as a
    lone segment is (and rendered alone when that fails)."""

    kind: ClassVar[str] = "render-batch"
    segments: list[RenderSpec]

    @classmethod
    def _decode(cls, values: dict[str, Any]) -> dict[str, Any]:
        segments = [RenderSpec(**RenderSpec._decode({**s, "placement": Placement(**s.get("placement", {}))}))
                    for s in values["segments"]]
        return {**values, "segments": segments}

    def sources(self) -> list[str]:
        return sorted({source for segment in self.segments for source in segment.sources()})


@dataclass(kw_only=True)
class IndexSpec(ShardSpec):
    """Embed the shots of some analysed clips into one search-index shard folder."""

    kind: ClassVar[str] = "index"
    embedder: str
    folder: str
    analyses: list[dict[str, Any]]


@dataclass(kw_only=True)
class SearchSpec(ShardSpec):
    """The top ``k`` shots of one index shard for a query vector."""

    kind: ClassVar[str] = "search"
    shard: str
    query: list[float]
    k: int


@dataclass(kw_only=True)
class ScoreSpec(ShardSpec):
    """Score every shot against some script lines (B-roll planning)."""

    kind: ClassVar[str] = "score"
    embedder: str
    shot_vectors: list[list[float]]
    lines: list[str]


_KINDS: dict[str, type[ShardSpec]] = {cls.kind: cls for cls in (AnalysisSpec, MusicSpec, RenderSpec, RenderBatchSpec,
                                                                   IndexSpec, SearchSpec, ScoreSpec)}
