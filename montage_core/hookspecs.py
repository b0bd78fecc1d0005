"""Hook specifications: the public contract for montage plugins.

Every hook receives a ``register`` callback (or the CLI group) and registers objects with it.
The registry remembers which plugin gave each object; when two plugins register objects of one
kind with the same ``name``, the one loaded later is refused and listed as broken with an error
naming both. A hook that raises switches off only its own plugin (see docs/hooks.md, "When your
hook raises"). Plugins must keep module import cheap: import
numba, cv2, dask, kubernetes inside the methods that need them, because these hooks run on
every ``montage`` invocation, ``--help`` included. A plugin whose implementation is large (a
cluster backend, a hardware accelerator) registers a :class:`Deferred` instead: listings read
what it declares, and its module is imported only when something else is asked of it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

import pluggy

hookspec = pluggy.HookspecMarker("montage")
hookimpl = pluggy.HookimplMarker("montage")


class Deferred:
    """A registered object whose implementation is imported the first time it is needed.

    ``Deferred("pkg.module:Class", name=..., description=..., ...)`` answers the attributes given
    as keywords itself (a callable is called as a method without ``self``); asking for anything
    else imports ``pkg.module``, creates ``Class()`` and hands the question to it from then on.
    ``montage plugins``, ``styles`` and ``check-hw`` (from its cache) read only ``name``,
    ``description``, ``priority``, ``availability()`` and the implementation's module, so declaring
    those keeps the implementation unimported there. Declared values must agree with the class.
    """

    def __init__(self, target: str, **declared: Any):
        module, _, qualname = target.partition(":")
        if not module or not qualname or not isinstance(declared.get("name"), str):
            raise ValueError(f"Deferred needs 'module:Class' and a name, not {target!r} {declared!r}")
        vars(self).update(_module=module, _qualname=qualname, _declared=declared, _object=None)

    @property
    def implementation_module(self) -> str:
        """The module the implementation lives in, without importing it."""
        return str(vars(self)["_module"])

    def implementation_class(self) -> type:
        """The implementation's class (imports its module)."""
        cls: Any = importlib.import_module(self.implementation_module)
        for part in vars(self)["_qualname"].split("."):
            cls = getattr(cls, part)
        return cls  # type: ignore[no-any-return]

    def resolve(self) -> Any:
        """The implementation object, created on first use."""
        if vars(self)["_object"] is None:
            vars(self)["_object"] = self.implementation_class()()
        return vars(self)["_object"]

    def __getattr__(self, attr: str) -> Any:  # only reached for what the instance itself lacks
        if attr.startswith("__") or attr in ("_module", "_qualname", "_declared", "_object"):
            raise AttributeError(attr)  # copy, pickle and hasattr probes must not import anything
        declared = vars(self)["_declared"]
        if attr in declared:
            return declared[attr]
        return getattr(self.resolve(), attr)

    def __setattr__(self, attr: str, value: Any) -> None:
        setattr(self.resolve(), attr, value)

    def __repr__(self) -> str:
        return f"<Deferred {vars(self)['_declared']['name']!r}: {self.implementation_module}:{vars(self)['_qualname']}>"


def lazy_exports(module: str, names: tuple[str, ...]) -> Callable[[str], Any]:
    """A package's ``__getattr__`` (PEP 562) answering ``names`` from ``module`` (``pkg.sub``),
    imported on first use: a plugin that registers :class:`Deferred` keeps its public names
    importable from the package without importing them on every start."""

    def __getattr__(name: str) -> Any:
        if name in names:
            return getattr(importlib.import_module(module), name)
        raise AttributeError(f"module {module.rpartition('.')[0]!r} has no attribute {name!r}")

    return __getattr__


def resolved(obj: Any) -> Any:
    """The object itself, or a :class:`Deferred`'s implementation."""
    return obj.resolve() if isinstance(obj, Deferred) else obj


def implementation_module(obj: Any) -> str:
    """Where ``obj``'s code lives (a :class:`Deferred`'s without importing it)."""
    return obj.implementation_module if isinstance(obj, Deferred) else type(obj).__module__


@hookspec
def montage_register_accelerators(register: Callable[[Any], None]) -> None:
    """Register encoder/decoder providers (:class:`montage_core.interfaces.Accelerator`).

    Called once per process, the first time the accelerator registry is needed (``montage run``,
    ``render``, ``check-hw``, ``plugins``). Must not probe hardware here: registration is cheap;
    the probe runs later through ``Accelerator.probe()``, is cached per host, and returns
    availability as data (a reason string), never by raising. The chain used for rendering is
    sorted by ``priority`` (highest first); the core's ``software`` accelerator is always last.
    """


@hookspec
def montage_register_analyzers(register: Callable[[Any], None]) -> None:
    """Register per-frame analyzers (:class:`montage_core.interfaces.Analyzer`).

    Called once per process before the first analysis. Every registered analyzer runs inside the
    single decode pass of every clip: ``compute(frames, previous)`` receives batches of
    downscaled luma frames (uint8, shape ``(n, h, w)``) in order and must return one float per
    frame for each name in ``outputs``. It must be deterministic and side-effect free; its
    ``version`` is part of the analysis cache key, so bump it whenever results would change.
    """


@hookspec
def montage_register_styles(register: Callable[[Any], None]) -> None:
    """Register styles (:class:`montage_core.interfaces.Style`).

    Called once per process, when styles are listed or a run resolves ``--style``. A style
    declares pacing (beats per cut for each story phase), the transition, a colour grade (an
    ffmpeg filter) and parameters settable with ``--set key=value``; its ``rank(shots, params)``
    filters and orders shots, best first. It must never return an empty list when shots exist:
    relax its own criteria and say so through ``warn`` instead.
    """


@hookspec
def montage_register_planners(register: Callable[[Any], None]) -> None:
    """Register timeline planners (:class:`montage_core.interfaces.Planner`).

    Called once per process when a run resolves ``--planner``. ``plan(request)`` turns ranked
    shots, the music analysis and the style into a :class:`montage_core.models.Timeline`. It must
    be deterministic for a given seed, put every cut boundary on a beat, and cover the whole
    output duration.
    """


@hookspec
def montage_register_backends(register: Callable[[Any], None]) -> None:
    """Register execution backends (:class:`montage_core.interfaces.Backend`).

    Called once per process when a run resolves ``--backend``. A backend maps shard functions
    over shards, reports progress events, and reports each shard's outcome; the core engine does
    retries and persistence, so a backend only has to say whether a failure was transient (the
    worker died) or permanent (the shard's own error).

    Register an instance whose class takes no arguments: it describes the backend in listings,
    and each job gets a new instance of its class (``MontageManager.new_backend``), configured
    with ``configure(scheduler=, workers=)`` and told its job with ``bind_job(job_id, store)``
    (for labels, logs and diagnoses kept in the job store), so no state is shared between jobs.

    A backend whose workers run on other machines has ``remote_nodes`` true (a class attribute,
    or a property when it depends on the configuration): the job then checks only the
    accelerator's name, marks each shard spec ``resolve_on_node``, and the worker resolves its
    own encoder chain and analysis decoder (``montage_core.worker.for_this_node``).

    Optional: ``cancel_job(job_id)`` stops what the backend runs for a job outside its coordinator
    (``montage cancel``); ``supports_dry_run`` and ``dry_run(stages)`` print what a job would
    submit without creating anything (``--dry-run``).
    """


@hookspec
def montage_register_preflight_checks(register: Callable[[Any], None]) -> None:
    """Register checks (:class:`montage_core.interfaces.PreflightCheck`) run before a job starts.

    Called once per process. Each check's ``applies_to(backend_name)`` decides whether it runs
    for a job; ``run(context)`` returns a list of problems, each one line saying what is missing
    and how to fix it. Any problem stops the job before work is submitted. ``context`` holds the
    configured ``backend`` object, and for a job also ``options`` and ``clips``;
    ``montage preflight --backend NAME`` runs the same checks on their own.
    """


@hookspec
def montage_register_embedders(register: Callable[[Any], None]) -> None:
    """Register shot embedders (:class:`montage_core.interfaces.Embedder`) for search and B-roll.

    Called once per process when an index is built or searched. ``embed_shots(analysis, words)``
    turns one clip's analysed shots (plus the words of its sidecar metadata) into one vector per
    shot; ``embed_text(text)`` turns a query into a vector of the same space. Vectors are compared
    by inner product, so return them L2-normalised. ``name``, ``version`` and ``dim`` select the
    index folder: bump ``version`` whenever vectors would change.
    """


@hookspec
def montage_register_commands(cli: Any) -> None:
    """Add click commands to the ``montage`` CLI group ``cli``.

    Called once when the CLI starts, before argument parsing, so keep it to ``cli.add_command``
    with commands whose bodies import what they need lazily.
    """
