"""Plugin manager: built-ins, then the ``montage`` entry-point group, one plugin at a time.

A plugin that fails (at import, at registration, in any ``montage_register_*`` hook, or by
implementing a hook montage does not have) is recorded as broken, named once in a warning and
switched off; every other plugin keeps working.
"""

from __future__ import annotations

import importlib
import logging
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import pluggy

from . import __version__, hookspecs
from .errors import PluginError, UnknownChoiceError

log = logging.getLogger("montage.plugins")

#: Built-in features are plugins too; they load first, in this order.
DEFAULT_PLUGINS: tuple[str, ...] = (
    "montage_core.builtin.accel_software",
    "montage_core.builtin.analyzers",
    "montage_core.builtin.styles",
    "montage_core.builtin.planners",
    "montage_core.builtin.planner_broll",
    "montage_core.builtin.backend_local",
    "montage_core.builtin.embedders",
)

#: Without these montage has no encoder and no backend at all, so the environment cannot switch them off.
ESSENTIAL_PLUGINS: frozenset[str] = frozenset({"accel_software", "backend_local"})

#: registry kind -> hook that fills it
KINDS: dict[str, str] = {
    "accelerators": "montage_register_accelerators",
    "analyzers": "montage_register_analyzers",
    "styles": "montage_register_styles",
    "planners": "montage_register_planners",
    "backends": "montage_register_backends",
    "preflight_checks": "montage_register_preflight_checks",
    "embedders": "montage_register_embedders",
}
SINGULAR = {
    "accelerators": "accelerator",
    "analyzers": "analyzer",
    "styles": "style",
    "planners": "planner",
    "backends": "backend",
    "preflight_checks": "preflight check",
    "embedders": "embedder",
}

T = TypeVar("T")


def _env_list(name: str) -> set[str] | None:
    value = os.environ.get(name)
    if value is None:
        return None
    return {item.strip() for item in value.split(",") if item.strip()}


def _one_line(exc: BaseException) -> str:
    """``ExceptionType: first line of its message``."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    if isinstance(exc, pluggy.PluginValidationError):
        lines = ["; ".join(lines)]  # pluggy says what is wrong (e.g. which argument) on later lines
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


def _fault_level() -> int:
    """WARNING where the user started montage; DEBUG in its worker processes.

    Local workers load the same plugins again and forward their log lines to the coordinator,
    which has already named each broken plugin once.
    """
    import multiprocessing

    return logging.DEBUG if multiprocessing.parent_process() is not None else logging.WARNING


def _call(impl: pluggy.HookImpl, **kwargs: Any) -> Any:
    """Call one hook implementation with the arguments it declares (pluggy allows a subset)."""
    return impl.function(**{name: kwargs[name] for name in impl.argnames if name in kwargs})


@dataclass
class PluginRecord:
    """What ``montage plugins`` reports for one plugin."""

    name: str
    version: str
    builtin: bool
    module: str = ""
    hooks: list[str] = field(default_factory=list)
    registered: dict[str, list[str]] = field(default_factory=dict)
    error: str = ""
    #: where it failed: "import", "registration" or the hook that raised
    failed_in: str = ""
    distribution: str = ""


class Registry(Generic[T]):
    """Objects of one kind by name, each remembered with the plugin that registered it."""

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, tuple[T, str]] = {}

    def add(self, obj: T, plugin: str) -> None:
        name = getattr(obj, "name", "")
        if not isinstance(name, str) or not name:
            raise PluginError(f"plugin {plugin!r} registered a {SINGULAR[self.kind]} without a name: {obj!r}")
        if name in self._items:
            other = self._items[name][1]
            raise PluginError(
                f"{SINGULAR[self.kind]} {name!r} is registered by both plugin {other!r} and plugin {plugin!r}; "
                f"disable one with MONTAGE_DISABLE_PLUGINS"
            )
        self._items[name] = (obj, plugin)

    def get(self, name: str) -> T:
        try:
            return self._items[name][0]
        except KeyError:
            raise UnknownChoiceError(SINGULAR[self.kind], name, self._items) from None

    def origin(self, name: str) -> str:
        return self._items[name][1]

    def discard(self, plugin: str) -> None:
        """Forget every object ``plugin`` registered (it turned out broken)."""
        self._items = {name: item for name, item in self._items.items() if item[1] != plugin}

    def names(self) -> list[str]:
        return sorted(self._items)

    def __iter__(self) -> Iterator[T]:
        return (obj for obj, _ in self._items.values())

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items


class MontageManager:
    """A pluggy manager plus lazily filled, origin-tracking registries."""

    def __init__(self, *, load_entrypoints: bool = True, builtins: bool = True):
        self.pm = pluggy.PluginManager("montage")
        self.pm.add_hookspecs(hookspecs)
        self.records: dict[str, PluginRecord] = {}
        self._registries: dict[str, Registry[Any]] = {}
        disabled = _env_list("MONTAGE_DISABLE_PLUGINS") or set()
        for name in sorted(disabled & ESSENTIAL_PLUGINS):
            log.log(_fault_level(), "plugin %r is essential (montage needs an encoder and a backend) and stays "
                    "enabled despite MONTAGE_DISABLE_PLUGINS", name)
        disabled -= ESSENTIAL_PLUGINS
        if builtins:
            # MONTAGE_LOAD_PLUGINS selects entry points only: the built-ins always load.
            for module_name in DEFAULT_PLUGINS:
                short = module_name.rsplit(".", 1)[1]
                if short in disabled:
                    continue
                self.register(importlib.import_module(module_name), short, __version__, builtin=True)
        if load_entrypoints:
            self._load_entrypoints(disabled, _env_list("MONTAGE_LOAD_PLUGINS"))

    # -- loading ------------------------------------------------------------------------
    def register(self, plugin: object, name: str, version: str = "", *, builtin: bool = False,
                 distribution: str = "") -> PluginRecord:
        """Register a module or object holding ``@hookimpl`` functions; a faulty one is recorded as broken."""
        if name in self.records and not self.records[name].error:
            raise PluginError(f"a plugin named {name!r} is already registered")
        module = getattr(plugin, "__name__", type(plugin).__name__)
        record = PluginRecord(name, version or __version__, builtin, module, distribution=distribution)
        self.records[name] = record
        self._registries.clear()
        try:
            self.pm.register(plugin, name=name)
        except Exception as exc:  # e.g. a hookimpl whose arguments do not match its spec
            self.pm.unregister(name=name)  # pluggy may have kept the hooks it added before failing
            self._broken(name, _one_line(exc), "registration")
            return record
        record.hooks = sorted(impl.name for impl in self.pm.get_hookcallers(plugin) or [])
        self._check_pending()
        return record

    def _check_pending(self) -> None:
        """Switch off plugins implementing a hook montage lacks (a typo would otherwise be silently ignored)."""
        known = sorted(name for name, caller in vars(self.pm.hook).items()
                       if not name.startswith("_") and caller.has_spec())
        for _ in range(len(self.records) + 1):  # each round disables one plugin
            try:
                self.pm.check_pending()
                return
            except pluggy.PluginValidationError as exc:
                name = self.pm.get_name(exc.plugin)
                if name is None:
                    raise
                unknown = [c.name for c in self.pm.get_hookcallers(exc.plugin) or [] if not c.has_spec()]
                import difflib  # only for a plugin with an unknown hook: not on every start

                hints = []
                for hook in unknown:
                    close = difflib.get_close_matches(hook, known, n=1)
                    hints.append(f"{hook!r}" + (f" (did you mean {close[0]}?)" if close else ""))
                self._broken(name, f"PluginValidationError: unknown hook {', '.join(hints)}; "
                                   f"montage's hooks are: {', '.join(known)}", "registration")

    def _load_entrypoints(self, disabled: set[str], only: set[str] | None) -> None:
        from .entrypoints import plugin_entry_points

        for ep in plugin_entry_points():
            if ep.name in disabled or (only is not None and ep.name not in only):
                continue
            version, dist_name = ep.version, ep.distribution
            if ep.name in self.records and not self.records[ep.name].error:
                # Keep the record of the plugin that holds the name; this one is only named.
                log.log(_fault_level(), "plugin %r (%s %s) was skipped: a plugin of that name is already loaded "
                        "(%s)", ep.name, dist_name, version, self.records[ep.name].module)
                continue
            try:
                plugin = ep.load()
            except Exception as exc:  # a broken plugin must never take montage down
                self.records[ep.name] = PluginRecord(ep.name, version, False, ep.value, distribution=dist_name)
                self._broken(ep.name, _one_line(exc), "import")
                continue
            self.register(plugin, ep.name, version, distribution=dist_name)

    def _broken(self, name: str, error: str, failed_in: str) -> None:
        """Record ``name`` as broken, say so once, and drop everything it registered."""
        record = self.records[name]
        if record.error:
            return
        record.error, record.failed_in, record.registered = error, failed_in, {}
        self.pm.unregister(name=name)
        for registry in self._registries.values():
            registry.discard(name)
        origin = " ".join(part for part in (record.distribution, record.version) if part)
        log.log(_fault_level(), "plugin %r%s is broken and was switched off (%s): %s", name,
                f" ({origin})" if origin and not record.builtin else "", failed_in, error)

    def _load_order(self, name: str) -> int:
        return list(self.records).index(name)

    # -- registries ---------------------------------------------------------------------
    def registry(self, kind: str) -> Registry[Any]:
        """The registry of ``kind``, filled by calling its hook once per plugin."""
        if kind not in KINDS:
            raise UnknownChoiceError("registry kind", kind, KINDS)
        if kind not in self._registries:
            registry = self._fill(kind)
            for record in self.records.values():
                record.registered.pop(kind, None)
            for name in registry.names():
                self.records[registry.origin(name)].registered.setdefault(kind, []).append(name)
            self._registries[kind] = registry
        return self._registries[kind]

    def _fill(self, kind: str) -> Registry[Any]:
        """Call each plugin's hook on its own, so one that raises or clashes costs only itself."""
        hook_name = KINDS[kind]
        batches: dict[str, list[Any]] = {}
        # pluggy's own call order (last registered first): it decides the order objects iterate in.
        for impl in reversed(getattr(self.pm.hook, hook_name).get_hookimpls()):
            if impl.wrapper or impl.hookwrapper:
                continue
            batch: list[Any] = []
            try:
                _call(impl, register=batch.append)
            except Exception as exc:  # a plugin's bug must not take the others down
                self._broken(impl.plugin_name, _one_line(exc), hook_name)
                continue
            batches[impl.plugin_name] = batch
        # Clashes are settled in load order, so the plugin loaded first (a built-in) keeps its name.
        owners: dict[str, str] = {}
        for plugin in sorted(batches, key=self._load_order):
            problem = self._batch_problem(kind, plugin, batches[plugin], owners)
            if problem:
                self._broken(plugin, f"PluginError: {problem}", hook_name)
            else:
                owners.update((obj.name, plugin) for obj in batches[plugin])
        registry: Registry[Any] = Registry(kind)
        for plugin, batch in batches.items():
            if not self.records[plugin].error:
                for obj in batch:
                    registry.add(obj, plugin)
        return registry

    @staticmethod
    def _batch_problem(kind: str, plugin: str, batch: list[Any], owners: dict[str, str]) -> str:
        """Why ``plugin``'s objects of ``kind`` cannot be registered, or ``""``."""
        seen: set[str] = set()
        for obj in batch:
            name = getattr(obj, "name", "")
            if not isinstance(name, str) or not name:
                return f"plugin {plugin!r} registered a {SINGULAR[kind]} without a name: {obj!r}"
            if name in owners or name in seen:
                other = owners.get(name, plugin)
                return (f"{SINGULAR[kind]} {name!r} is registered by both plugin {other!r} and plugin {plugin!r} "
                        f"(the one loaded later is refused; disable one with MONTAGE_DISABLE_PLUGINS)")
            seen.add(name)
        return ""

    def add_commands(self, cli: Any) -> None:
        """Let each plugin add its CLI commands; one that raises loses the commands it added."""
        for impl in reversed(self.pm.hook.montage_register_commands.get_hookimpls()):
            commands = getattr(cli, "commands", {})
            before = set(commands)
            try:
                _call(impl, cli=cli)
            except Exception as exc:
                for added in set(commands) - before:
                    commands.pop(added, None)
                self._broken(impl.plugin_name, _one_line(exc), "montage_register_commands")

    def describe(self) -> list[PluginRecord]:
        """Every plugin with what it registered (fills all registries)."""
        for kind in KINDS:
            self.registry(kind)
        return list(self.records.values())

    @property
    def accelerators(self) -> Registry[Any]:
        return self.registry("accelerators")

    @property
    def analyzers(self) -> Registry[Any]:
        return self.registry("analyzers")

    @property
    def styles(self) -> Registry[Any]:
        return self.registry("styles")

    @property
    def planners(self) -> Registry[Any]:
        return self.registry("planners")

    @property
    def backends(self) -> Registry[Any]:
        return self.registry("backends")

    def new_backend(self, name: str, *, scheduler: str | None = None, workers: int | None = None) -> Any:
        """A backend of its own for one job, configured: the registered backend's class called with
        no arguments (the registered object describes the backend in listings; a job's binding and
        its running shards live on the new one, so two jobs in one process never mix them up). What
        is costly to start may still be shared by the backend itself: the Dask backend keeps one
        cluster per process for every job run in it."""
        registered = self.backends.get(name)
        try:
            # a Deferred registration's class is imported here, where a job first needs it
            factory = registered.implementation_class() if isinstance(registered, hookspecs.Deferred) else (
                registered if isinstance(registered, type) else type(registered))
            backend = factory()
        except Exception as exc:
            origin = self.backends.origin(name)
            raise PluginError(f"backend {name!r} (plugin {origin!r}) could not be created: {_one_line(exc)}") from exc
        backend.configure(scheduler=scheduler, workers=workers)
        return backend

    @property
    def preflight_checks(self) -> Registry[Any]:
        return self.registry("preflight_checks")

    @property
    def embedders(self) -> Registry[Any]:
        return self.registry("embedders")


_manager: MontageManager | None = None
_manager_guard = threading.Lock()


def get_manager() -> MontageManager:
    """The process-wide manager (built-ins + installed plugins); one even when threads ask at once
    (a worker's first shard and its kernel warm-up do)."""
    global _manager
    if _manager is None:
        with _manager_guard:
            if _manager is None:
                _manager = MontageManager()
    return _manager
