"""Plugin manager: built-ins, then the ``montage`` entry-point group, one plugin at a time."""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Callable, Iterator
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
        if builtins:
            for module_name in DEFAULT_PLUGINS:
                short = module_name.rsplit(".", 1)[1]
                if short in disabled:
                    continue
                self.register(importlib.import_module(module_name), short, __version__, builtin=True)
        if load_entrypoints:
            self._load_entrypoints(disabled, _env_list("MONTAGE_LOAD_PLUGINS"))

    # -- loading ------------------------------------------------------------------------
    def register(self, plugin: object, name: str, version: str = "", *, builtin: bool = False) -> None:
        """Register a module or object holding ``@hookimpl`` functions."""
        if name in self.records and not self.records[name].error:
            raise PluginError(f"a plugin named {name!r} is already registered")
        self.pm.register(plugin, name=name)
        hooks = sorted(impl.name for impl in self.pm.get_hookcallers(plugin) or [])
        module = getattr(plugin, "__name__", type(plugin).__name__)
        self.records[name] = PluginRecord(name, version or __version__, builtin, module, hooks)
        self._registries.clear()

    def _load_entrypoints(self, disabled: set[str], only: set[str] | None) -> None:
        from importlib.metadata import entry_points

        for ep in entry_points(group="montage"):
            if ep.name in disabled or (only is not None and ep.name not in only):
                continue
            dist = getattr(ep, "dist", None)
            version = getattr(dist, "version", "") or ""
            dist_name = getattr(dist, "name", ep.value)
            try:
                self.register(ep.load(), ep.name, version)
            except Exception as exc:  # a broken plugin must never take montage down
                message = f"{type(exc).__name__}: {exc}".splitlines()[0]
                log.warning("plugin %r (%s %s) failed to load and was skipped: %s", ep.name, dist_name, version, message)
                self.records[ep.name] = PluginRecord(ep.name, version, False, ep.value, error=message)

    # -- registries ---------------------------------------------------------------------
    def registry(self, kind: str) -> Registry[Any]:
        """The registry of ``kind``, filled by calling its hook once per plugin."""
        if kind not in KINDS:
            raise UnknownChoiceError("registry kind", kind, KINDS)
        if kind not in self._registries:
            registry: Registry[Any] = Registry(kind)
            hook = getattr(self.pm.hook, KINDS[kind])
            # Call each implementation ourselves so every object is tied to its plugin.
            for impl in reversed(hook.get_hookimpls()):
                plugin_name = self.pm.get_name(impl.plugin) or "?"
                register: Callable[[Any], None] = lambda obj, _p=plugin_name: registry.add(obj, _p)  # noqa: E731
                impl.function(register=register)
            for name in registry.names():
                record = self.records[registry.origin(name)]
                record.registered.setdefault(kind, []).append(name)
            self._registries[kind] = registry
        return self._registries[kind]

    def add_commands(self, cli: Any) -> None:
        self.pm.hook.montage_register_commands(cli=cli)

    def describe(self) -> list[PluginRecord]:
        """Every plugin with what it registered (fills all registries)."""
        for kind in KINDS:
            try:
                self.registry(kind)
            except PluginError as exc:
                log.error("%s", exc)
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

    @property
    def preflight_checks(self) -> Registry[Any]:
        return self.registry("preflight_checks")

    @property
    def embedders(self) -> Registry[Any]:
        return self.registry("embedders")


_manager: MontageManager | None = None


def get_manager() -> MontageManager:
    """The process-wide manager (built-ins + installed plugins)."""
    global _manager
    if _manager is None:
        _manager = MontageManager()
    return _manager
