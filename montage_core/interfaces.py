"""Base classes for the objects plugins register. Subclass them; override what you need."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from .models import Transition

if TYPE_CHECKING:  # pragma: no cover - typing only
    import numpy as np

    from .models import MusicAnalysis, Shot, Timeline


# --------------------------------------------------------------------------- accelerators
@dataclass
class AcceleratorProbe:
    """Availability of an accelerator on this host: data, never an exception."""

    name: str
    available: bool
    reason: str = ""
    encoders: dict[str, str] = field(default_factory=dict)  # codec -> ffmpeg encoder
    decode: bool = False
    devices: list[dict[str, Any]] = field(default_factory=list)
    #: the device encodes and decodes go to (a render node, a GPU index)
    device: str = ""


@dataclass
class DevicePlacement:
    """What a cluster scheduler needs to put work on a machine with one vendor's device."""

    #: countable device resources one worker takes, e.g. ``{"nvidia.com/gpu": 1}``
    resources: dict[str, int] = field(default_factory=dict)
    #: labels carried by the machines that have the device, e.g. ``{"nvidia.com/gpu.present": "true"}``
    node_labels: dict[str, str] = field(default_factory=dict)


class Accelerator:
    """An encoder (and optionally decoder) provider. ``software`` is the core's reference one."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    priority: ClassVar[int] = 0
    #: per device vendor (``nvidia``, ``amd``, ``intel``): what a cluster scheduler needs to put work
    #: on a machine with that vendor's device; empty when the accelerator needs no device (software)
    placement: ClassVar[dict[str, DevicePlacement]] = {}

    def probe(self, ffmpeg: str) -> AcceleratorProbe:
        """Check this host: devices, driver, a real test encode. Never raise."""
        raise NotImplementedError

    def encode_args(self, codec: str, quality: str, probe: AcceleratorProbe) -> list[str]:
        """ffmpeg output arguments for ``codec`` at ``quality`` (preview, standard, high)."""
        raise NotImplementedError

    def input_args(self, probe: AcceleratorProbe) -> list[str]:
        """ffmpeg input arguments (hardware decode / device init) placed before ``-i``."""
        return []

    def filter_suffix(self, probe: AcceleratorProbe) -> str:
        """Filter appended after the software filter chain (e.g. ``format=nv12,hwupload``)."""
        return ""

    def analysis_input_args(self, probe: AcceleratorProbe) -> list[str]:
        """ffmpeg input arguments that hardware-decode clips for the analysis pass ([]: decode in software)."""
        return []

    def diagnose(self, output: str) -> str | None:
        """Why an ffmpeg command of this accelerator failed, in words a user can act on; None if not recognised.

        :func:`montage_core.hwaccel.diagnose` asks every installed accelerator (the renderer passes
        only ffmpeg's output), so recognise only failures that are this accelerator's own.
        """
        return None


# --------------------------------------------------------------------------- analyzers
class Analyzer:
    """Per-frame features computed in the single decode pass."""

    name: ClassVar[str] = ""
    version: ClassVar[str] = "1"
    outputs: ClassVar[tuple[str, ...]] = ()
    #: how frames are reduced to one number per shot: "mean", "median" or "trimmed_mean"
    aggregate: ClassVar[str] = "median"

    def compute(self, frames: np.ndarray, previous: np.ndarray | None) -> dict[str, np.ndarray]:
        """Return ``{output: float64[n]}`` for a batch ``frames`` (uint8, shape (n, h, w))."""
        raise NotImplementedError


# --------------------------------------------------------------------------- styles
@dataclass
class StyleParam:
    """A user-settable style parameter (``--set name=value``)."""

    default: float
    help: str
    minimum: float = 0.0
    maximum: float = 1.0


class Style:
    """Pacing, transition, colour grade, and a select/rank step over shots."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    #: beats per cut (min, max) for each story phase
    pacing: ClassVar[dict[str, tuple[int, int]]] = {}
    transition: ClassVar[Transition] = Transition()
    #: ffmpeg filter applied to every frame of the output ("" for none)
    grade: ClassVar[str] = ""
    params: ClassVar[dict[str, StyleParam]] = {}
    #: analyzers (by name) whose outputs rank() needs
    requires: ClassVar[tuple[str, ...]] = ()

    def rank(
        self, shots: Sequence[Shot], params: dict[str, float], warn: Callable[[str], None]
    ) -> list[tuple[Shot, float]]:
        """Filter and order ``shots`` best first, each with its score in 0..1."""
        raise NotImplementedError


# --------------------------------------------------------------------------- planners
@dataclass
class PlanRequest:
    """Everything a planner needs."""

    ranked: list[tuple[Shot, float]]
    music: MusicAnalysis
    style: Style
    fps: float
    width: int
    height: int
    seed: int
    duration: float | None = None
    #: what the command line passed through for this planner (``script``, ``embedder``)
    options: dict[str, Any] = field(default_factory=dict)
    #: the job's plugin manager (its embedders, for a planner that matches text to shots)
    manager: Any = None
    #: the job's backend, where a planner may fan work out; ``None`` plans in this process
    backend: Any = None


class Planner:
    """Turns ranked shots and music into a :class:`Timeline`."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""

    def plan(self, request: PlanRequest) -> Timeline:
        raise NotImplementedError


# --------------------------------------------------------------------------- backends
@dataclass(kw_only=True)
class ProgressEvent:
    """What a worker is doing now. ``position``/``total`` are media seconds.

    Built with keywords only, most often through :meth:`of`; the backend fills in ``worker`` and
    ``host`` where the shard runs.
    """

    stage: str
    shard: str
    clip: str
    #: queued | started | running | done | failed | retrying; a backend sends ``retrying`` (with
    #: ``message`` saying why, ``worker`` the one lost) when it reruns a shard by itself, and the
    #: engine counts that as an attempt
    state: str
    position: float = 0.0
    total: float = 0.0
    message: str = ""
    worker: str = ""
    host: str = ""

    @classmethod
    def of(cls, task: "ShardTask", state: str, position: float = 0.0, total: float | None = None,
           message: str = "", *, clip: str | None = None, worker: str = "") -> "ProgressEvent":
        """An event about ``task``; ``total`` defaults to the task's own (media seconds)."""
        return cls(stage=task.stage, shard=task.id, clip=task.clip if clip is None else clip, state=state,
                   position=position, total=task.total if total is None else total, message=message,
                   worker=worker)


@dataclass
class ShardTask:
    """One unit of distributed work: a clip to analyze or a segment to render."""

    id: str
    stage: str
    clip: str
    payload: dict[str, Any]
    total: float = 0.0


@dataclass
class ShardOutcome:
    """A shard's result, or its error and whether the failure was transient."""

    task: ShardTask
    ok: bool
    result: Any = None
    error: str = ""
    transient: bool = False
    worker: str = ""
    #: the signal a worker process crashed from (SIGSEGV, …) while running it; 0 when none
    crash_signal: int = 0


def outcome_from_exception(task: ShardTask, exc: BaseException, *, worker: str = "",
                           transient: tuple[type[BaseException], ...] = ()) -> ShardOutcome:
    """The outcome of a shard whose function raised ``exc`` (every backend reports failures alike).

    A :class:`~montage_core.errors.ShardError` says itself whether a retry may help; other montage
    errors (bad input) are final; ``transient`` names the backend's own retryable exceptions (a
    lost connection, a dead worker); anything else is final, reported with its type.
    """
    from .errors import MontageError, ShardError

    if isinstance(exc, ShardError):
        return ShardOutcome(task, False, error=str(exc), transient=exc.transient, worker=worker)
    if isinstance(exc, MontageError):
        return ShardOutcome(task, False, error=str(exc), worker=worker)
    return ShardOutcome(task, False, error=f"{type(exc).__name__}: {exc}", transient=isinstance(exc, transient),
                        worker=worker)


ShardFunction = Callable[[ShardTask, Callable[[ProgressEvent], None]], Any]


@dataclass(frozen=True)
class StagePreview:
    """A stage a job would submit, for ``--dry-run`` (:meth:`Backend.dry_run`)."""

    stage: str  # "analysis", "plan", "render"
    #: how many shards; None when only the stages before it can tell (a montage's cuts, before analysis)
    shards: int | None
    #: the ``--accel`` choice of a render stage (where its shards may be placed)
    accel: str | None = None


class Backend:
    """Runs shards somewhere: here, on a Dask cluster, on Kubernetes.

    Each job gets a backend of its own (:meth:`MontageManager.new_backend`): the registered
    backend's class is called with no arguments, then :meth:`configure` and :meth:`bind_job`, so
    a client, its workers and the job binding live on that instance for that job only. The
    registered instance itself only describes the backend (``montage plugins``, the web UI).
    What is costly to start may outlive the job for the next one in the process, never its
    binding: the Dask backend keeps its cluster (see ``montage_backend_dask.clusters``).
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    #: shards run on other machines whose hardware this host cannot see: the encoder chain and
    #: the analysis decoder are resolved on each node, not checked against this host's devices.
    #: A class attribute when it is always so (Kubernetes), a property when it depends on the
    #: configuration (Dask: a remote scheduler's workers, not a LocalCluster here).
    remote_nodes: bool = False
    #: ``--dry-run`` shows what this backend would submit (:meth:`dry_run`) instead of running
    supports_dry_run: ClassVar[bool] = False
    #: render shards may each carry several consecutive segments (one ffmpeg process and one
    #: encoder for them, ``RenderBatchSpec``); False: one segment per shard, for a backend whose
    #: placement or retries are organised per segment
    render_batches: ClassVar[bool] = True
    #: the music track's analysis may run as a shard here (``MusicSpec``), beside the clips'; False
    #: when the workers cannot be handed the track (it is then analysed on this machine)
    music_shards: ClassVar[bool] = True

    def availability(self) -> str | None:
        """``None`` when usable, else the reason it is not."""
        return None

    def configure(self, scheduler: str | None = None, workers: int | None = None) -> None:
        """Options from the command line: a scheduler/cluster address and a worker count."""

    def run(
        self,
        fn: ShardFunction,
        tasks: Sequence[ShardTask],
        on_event: Callable[[ProgressEvent], None],
    ) -> Iterator[ShardOutcome]:
        """Run ``fn`` on every task and yield each outcome as it finishes (any order)."""
        raise NotImplementedError

    def bind_job(self, job_id: str, store: Any = None) -> None:
        """The job the next stages belong to, and its job store (for labels, logs, diagnoses)."""

    def warm(self, shards: int | None = None) -> None:
        """Start workers now (enough for ``shards``), so their start-up overlaps the coordinator's work."""

    def close(self) -> None:
        """Release workers."""

    def abort(self) -> None:
        """Stop now (an interrupt or a failure): running shards are abandoned, workers and
        anything they started are stopped. Finished shards stay in the caches."""
        self.close()

    def dry_run(self, stages: Sequence[StagePreview]) -> str:
        """What running ``stages`` would submit, as text for standard output (a cluster's
        manifests); nothing is created. Only for backends with ``supports_dry_run``."""
        raise NotImplementedError

    def cancel_job(self, job_id: str) -> list[str]:
        """Stop what this backend runs for ``job_id`` outside the coordinator process (``montage
        cancel``), whether or not its coordinator is still alive: one line per thing stopped.
        Backends whose work ends with the coordinator have nothing to do."""
        return []


# --------------------------------------------------------------------------- preflight
class PreflightCheck:
    """A check run before a job is submitted."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""

    def applies_to(self, backend: str) -> bool:
        return True

    def run(self, context: dict[str, Any]) -> list[str]:
        """Return problems, one line each; an empty list means the check passed.

        ``context`` has ``backend`` (the configured backend object), and for a job ``options``
        (:class:`montage_core.pipeline.JobOptions`) and ``clips``; ``montage preflight`` passes
        only ``backend``.
        """
        raise NotImplementedError


# --------------------------------------------------------------------------- embedders
class Embedder:
    """Turns analysed shots (and words) and text queries into vectors of one space."""

    name: ClassVar[str] = ""
    version: ClassVar[str] = "1"
    dim: ClassVar[int] = 0
    description: ClassVar[str] = ""

    def embed_shots(self, analysis: Any, words: str) -> np.ndarray:
        """float32[len(analysis.shots), dim], rows L2-normalised."""
        raise NotImplementedError

    def embed_text(self, text: str) -> np.ndarray:
        """float32[dim], L2-normalised."""
        raise NotImplementedError
