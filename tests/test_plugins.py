"""Plugin manager: built-ins are plugins, entry points load one at a time, duplicates are named, faults are contained."""

from __future__ import annotations

import ast
import json
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from montage_core import hookspecs
from montage_core.errors import UnknownChoiceError
from montage_core.plugins import DEFAULT_PLUGINS, KINDS, MontageManager
from montage_core.testing import MediaFactory, probe_frames, run_cli


def test_every_hookspec_is_documented() -> None:
    specs = [name for name in dir(hookspecs) if name.startswith("montage_register_")]
    assert set(KINDS.values()) <= set(specs)
    for name in specs:
        doc = getattr(hookspecs, name).__doc__ or ""
        assert "Called" in doc and len(doc.split()) > 25, f"{name} needs a reference docstring (when, how often, what)"


def test_builtins_register_through_the_same_hooks(pm: MontageManager) -> None:
    assert set(pm.styles.names()) >= {"dynamic", "mtv", "documentary", "minimalist"}
    assert pm.planners.names() == ["broll", "story_arc"]
    assert pm.embedders.names() == ["descriptor"]
    assert "local" in pm.backends and "software" in pm.accelerators
    assert set(pm.analyzers.names()) >= {"cuts", "motion", "sharpness", "brightness", "centre_of_gravity"}
    assert pm.styles.origin("dynamic") == "styles"
    assert len([r for r in pm.records.values() if r.builtin]) == len(DEFAULT_PLUGINS)


def test_duplicate_name_names_both_plugins(pm: MontageManager, caplog: pytest.LogCaptureFixture) -> None:
    """The plugin loaded later is refused and listed as broken; the name keeps working for the first."""
    from montage_core.builtin.styles import DynamicStyle
    from montage_core.hookspecs import hookimpl

    class Copycat:
        @hookimpl
        def montage_register_styles(self, register):  # type: ignore[no-untyped-def]
            register(DynamicStyle())

    pm.register(Copycat(), "copycat")
    assert pm.styles.origin("dynamic") == "styles" and "mtv" in pm.styles
    error = pm.records["copycat"].error
    assert error.startswith("PluginError: ") and "'styles'" in error and "'copycat'" in error and "'dynamic'" in error
    assert pm.records["copycat"].registered == {} and pm.records["copycat"].failed_in == "montage_register_styles"
    assert [r.levelname for r in caplog.records if "'copycat'" in r.getMessage()] == ["WARNING"]


def test_unknown_name_lists_the_choices(pm: MontageManager) -> None:
    with pytest.raises(UnknownChoiceError) as err:
        pm.styles.get("wes")
    assert str(err.value) == "unknown style 'wes' (known: documentary, dynamic, minimalist, mtv)"


def _install_fake_distribution(site: Path, name: str, module_source: str, version: str = "9.9") -> None:
    """A real installed distribution (dist-info + entry point) on a path importlib.metadata scans."""
    (site / f"montage_{name}.py").write_text(textwrap.dedent(module_source))
    info = site / f"montage_{name}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: montage-{name}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(f"[montage]\n{name} = montage_{name}\n")


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("PYTHONPATH", str(site))
    _install_fake_distribution(site, "broken", "raise RuntimeError('missing dependency frobnicate')\n", "1.2.3")
    _install_fake_distribution(site, "tiny_style", """
        from montage_core.hookspecs import hookimpl
        from montage_core.builtin.styles import DynamicStyle

        class Tiny(DynamicStyle):
            name = "tiny"
            description = "a test style"

        @hookimpl
        def montage_register_styles(register):
            register(Tiny())
    """)
    yield site
    for module in site.glob("montage_*.py"):
        sys.modules.pop(module.stem, None)


def test_entry_points_are_read_again_whenever_a_distribution_changes(site: Path) -> None:
    """The cached ``montage`` group is what importlib.metadata says, after every install, edit and removal."""
    import os
    import shutil
    from importlib.metadata import entry_points

    from montage_core.config import cache_dir
    from montage_core.entrypoints import plugin_entry_points

    cache_dir().rmdir()
    assert plugin_entry_points() and not cache_dir(create=False).exists()  # it creates no cache folder
    cache_dir()

    def metadata() -> list[tuple[str, str, str]]:
        return [(ep.name, ep.value, ep.dist.version) for ep in entry_points(group="montage")]  # type: ignore[union-attr]

    def cached() -> list[tuple[str, str, str]]:
        return [(ep.name, ep.value, ep.version) for ep in plugin_entry_points()]

    assert cached() == metadata() and ("tiny_style", "montage_tiny_style", "9.9") in cached()
    assert cached() == metadata() and list(cache_dir().glob("entry-points-*.json"))  # now from the cache
    _install_fake_distribution(site, "extra", "")
    assert ("extra", "montage_extra", "9.9") in cached() and cached() == metadata()
    points = site / "montage_extra-9.9.dist-info" / "entry_points.txt"
    points.write_text("[montage]\nrenamed = montage_extra\n")
    os.utime(points, ns=(1, 1))  # an edit in the same second must count too: any stat change does
    assert ("renamed", "montage_extra", "9.9") in cached() and cached() == metadata()
    shutil.rmtree(site / "montage_extra-9.9.dist-info")
    assert "renamed" not in [name for name, _, _ in cached()] and cached() == metadata()


def test_broken_plugin_is_skipped_with_name_and_version(site: Path, caplog: pytest.LogCaptureFixture) -> None:
    manager = MontageManager()
    assert "tiny" in manager.styles
    assert manager.records["broken"].error == "RuntimeError: missing dependency frobnicate"
    assert any("'broken'" in r.message and "1.2.3" in r.message for r in caplog.records)


def test_disable_and_load_plugins_env(site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MONTAGE_DISABLE_PLUGINS", "tiny_style")
    assert "tiny" not in MontageManager().styles
    monkeypatch.delenv("MONTAGE_DISABLE_PLUGINS")
    monkeypatch.setenv("MONTAGE_LOAD_PLUGINS", "tiny_style")
    manager = MontageManager()
    assert "tiny" in manager.styles and "broken" not in manager.records


def test_plugins_command_json_and_table(site: Path) -> None:
    proc = run_cli("plugins", "--all")
    assert proc.returncode == 0, proc.stderr
    rows = {r["name"]: r for r in json.loads(proc.stdout)}
    assert rows["tiny_style"]["registered"] == {"styles": ["tiny"]}
    assert rows["tiny_style"]["version"] == "9.9" and rows["tiny_style"]["available"]
    assert rows["broken"]["available"] is False and "frobnicate" in rows["broken"]["reason"]
    assert rows["styles"]["builtin"] and "montage_register_styles" in rows["styles"]["hooks"]
    local = [o for o in rows["backend_local"]["objects"] if o["name"] == "local"][0]
    assert local["available"]
    assert "Traceback" not in proc.stderr and "'broken'" in proc.stderr
    without_all = {r["name"] for r in json.loads(run_cli("plugins").stdout)}
    assert {"broken", "tiny_style"} <= without_all and not without_all & {"styles", "analyzers", "backend_local"}
    table = run_cli("plugins", "--format", "table", "--all").stdout
    assert "tiny_style" in table and "unavailable: RuntimeError: missing dependency frobnicate" in table


#: third-party libraries no listing may import: each costs more than the whole listing
HEAVY_LIBRARIES = ("numba", "cv2", "dask", "distributed", "kubernetes", "numpy", "librosa", "scipy", "torch",
                   "sklearn", "sentence_transformers", "opentimelineio")
#: montage's own modules that only running work needs: the job machinery, the hardware layer and
#: the implementations plugins register as ``Deferred``
WORK_MODULES = ("montage_core.job", "montage_core.jobstore", "montage_core.engine", "montage_core.hwaccel",
                "montage_backend_k8s.backend", "montage_backend_k8s.preflight", "montage_hwaccel_nvenc.accelerator",
                "montage_hwaccel_qsv.accelerator", "montage_hwaccel_vaapi.accelerator", "ctypes")


@pytest.mark.parametrize("args", [("--help",), ("plugins",), ("plugins", "--all", "--format", "table"), ("styles",),
                                  ("check-hw",)], ids=" ".join)
def test_listing_commands_import_nothing_heavy(args: tuple[str, ...]) -> None:
    """``--help`` and the listings (``plugins`` and ``check-hw`` answering from the probe cache) start
    fast: they import no heavy library and none of the code only running work needs."""
    import subprocess

    if args[0] in ("plugins", "check-hw"):
        assert run_cli("check-hw").returncode == 0  # fills this test's probe cache; the run below reads it
    code = (f"import sys; sys.argv = ['montage', *{list(args)!r}]\n"
            "from montage_core.cli import main\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            f"loaded = [m for m in {HEAVY_LIBRARIES + WORK_MODULES!r} if m in sys.modules]\n"
            "print('LOADED=' + ','.join(loaded))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.rstrip().endswith("LOADED="), proc.stdout[-2000:]


def test_a_deferred_registration_is_imported_only_when_used(pm: MontageManager, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Listings read what a ``Deferred`` declares; a job's backend (and anything undeclared) imports it."""
    from montage_core.hookspecs import Deferred, hookimpl, implementation_module
    from montage_core.plugininfo import plugin_rows

    (tmp_path / "slow_backend_impl.py").write_text(textwrap.dedent("""
        from montage_core.interfaces import Backend

        class SlowBackend(Backend):
            name = "slow"
            description = "imported only when a job needs it"
            workers = None

            def configure(self, scheduler=None, workers=None):
                self.workers = workers
    """))
    monkeypatch.syspath_prepend(str(tmp_path))

    class Plugin:
        @hookimpl
        def montage_register_backends(self, register: Any) -> None:
            register(Deferred("slow_backend_impl:SlowBackend", name="slow", description="imported only when a job "
                              "needs it", availability=lambda: None))

    assert pm.register(Plugin(), "slow").error == ""
    rows = {r["name"]: r for r in plugin_rows(show_all=True, manager=pm)}
    assert rows["slow"]["objects"] == [{"kind": "backend", "name": "slow", "available": True, "reason": ""}]
    registered = pm.backends.get("slow")
    assert implementation_module(registered) == "slow_backend_impl" and "slow_backend_impl" not in sys.modules
    backend = pm.new_backend("slow", workers=3)
    assert type(backend).__name__ == "SlowBackend" and backend.workers == 3
    assert registered.workers is None  # undeclared: answered by the implementation, created apart from the job's
    with pytest.raises(ValueError, match="module:Class"):
        Deferred("no_class_given", name="x")


def test_builtin_modules_import_nothing_heavy_at_top_level() -> None:
    heavy = {"numba", "cv2", "dask", "kubernetes", "numpy", "librosa", "opentimelineio"}
    root = Path(__file__).parent.parent / "montage_core"
    cli = ["cli.py"] if (root / "cli.py").exists() else [f"cli/{p.name}" for p in (root / "cli").glob("*.py")]
    for module in ["plugins.py", "hookspecs.py", "interfaces.py", "models.py", "errors.py", *cli,
                   *(f"builtin/{p.name}" for p in (root / "builtin").glob("*.py"))]:
        tree = ast.parse((root / module).read_text())
        for node in tree.body:
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not {n.split(".")[0] for n in names} & heavy, f"{module} imports {names} at module level"


def test_check_hw_on_this_machine_chooses_software() -> None:
    """No GPU here: every hardware plugin installed is listed as unavailable with its reason."""
    proc = run_cli("check-hw", "--json", "--refresh")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["chain"][-1] == "software"
    hardware = [a for a in report["accelerators"] if a["name"] != "software"]
    if Path("/dev/dri").exists() or Path("/dev/nvidia0").exists():
        pytest.skip("this machine has GPU device nodes")
    assert report["chain"] == ["software"] and report["analysis_decoder"] == "software"
    for accel in hardware:
        assert not accel["available"] and accel["reason"], accel
    table = run_cli("check-hw").stdout
    assert "encoder chain: software" in table


def test_unavailable_accelerator_is_one_line(media, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    names = [r["name"] for r in json.loads(run_cli("check-hw", "--json").stdout)["accelerators"]]
    if "nvenc" not in names or Path("/dev/nvidia0").exists():
        pytest.skip("needs the nvenc plugin and no NVIDIA GPU")
    clip, _ = media.clip([(0, 1.0)])
    music, _ = media.music(seconds=3)
    proc = run_cli("run", str(clip), "--music", str(music), "-o", str(tmp_path / "o.mp4"), "--accel", "nvenc")
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode == 2 and errors == [
        "error: accelerator 'nvenc' is not available: nvidia-smi not found: no NVIDIA driver on this host"]
    # with other problems, it is listed beside them: all at once
    proc = run_cli("run", "x.mp4", "--music", "y.wav", "--accel", "nvenc")
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 3 and "error: accelerator 'nvenc' is not available" in errors[0]


HOOK_OBJECTS = {
    "montage_register_accelerators": ("accelerators", "montage_core.interfaces.Accelerator"),
    "montage_register_analyzers": ("analyzers", "montage_core.interfaces.Analyzer"),
    "montage_register_styles": ("styles", "montage_core.interfaces.Style"),
    "montage_register_planners": ("planners", "montage_core.interfaces.Planner"),
    "montage_register_backends": ("backends", "montage_core.interfaces.Backend"),
    "montage_register_preflight_checks": ("preflight_checks", "montage_core.interfaces.PreflightCheck"),
    "montage_register_embedders": ("embedders", "montage_core.interfaces.Embedder"),
}


@pytest.mark.parametrize("hook", sorted(HOOK_OBJECTS))
def test_each_hook_fills_its_registry_and_remembers_the_plugin(hook: str, pm: MontageManager) -> None:
    import importlib

    from montage_core.hookspecs import hookimpl

    kind, base_path = HOOK_OBJECTS[hook]
    module, _, cls_name = base_path.rpartition(".")
    base = getattr(importlib.import_module(module), cls_name)
    obj = type("Thing", (base,), {"name": "thing"})()

    class Plugin:
        pass

    setattr(Plugin, hook, staticmethod(hookimpl(specname=hook)(lambda register: register(obj))))
    pm.register(Plugin(), "third_party")
    registry = pm.registry(kind)
    assert registry.get("thing") is obj and registry.origin("thing") == "third_party"
    assert pm.records["third_party"].hooks == [hook]


def test_montage_register_commands_adds_a_command(site: Path) -> None:
    _install_fake_distribution(site, "greeter", """
        import click
        from montage_core.hookspecs import hookimpl

        @click.command()
        def hello():
            "Say hello."
            click.echo("hello from a plugin")

        @hookimpl
        def montage_register_commands(cli):
            cli.add_command(hello)
    """)
    assert "hello" in run_cli("--help").stdout
    assert run_cli("hello").stdout.strip() == "hello from a plugin"


# -- plugin faults are contained ---------------------------------------------------------------

def _thing(hook: str, name: str) -> object:
    """An instance of the interface ``hook`` registers, named ``name``."""
    import importlib

    module, _, cls_name = HOOK_OBJECTS[hook][1].rpartition(".")
    return type("Thing", (getattr(importlib.import_module(module), cls_name),), {"name": name})()


def _builtins_intact(manager: MontageManager) -> None:
    assert manager.backends.get("local").name == "local" and "software" in manager.accelerators
    assert {"dynamic", "mtv", "documentary", "minimalist"} <= set(manager.styles.names())
    assert "story_arc" in manager.planners and "descriptor" in manager.embedders and "cuts" in manager.analyzers
    assert not [r.name for r in manager.records.values() if r.error and r.builtin]


@pytest.mark.parametrize("hook", sorted(HOOK_OBJECTS))
def test_a_hook_that_raises_switches_off_only_its_plugin(hook: str, pm: MontageManager,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    from montage_core.hookspecs import hookimpl

    kind = HOOK_OBJECTS[hook][0]

    def faulty(register):  # type: ignore[no-untyped-def]
        register(_thing(hook, "half_done"))  # registered before the crash: must not stay
        raise RuntimeError("boom\nsecond line")

    class Faulty:
        @hookimpl
        def montage_register_styles(self, register):  # type: ignore[no-untyped-def]
            register(_thing("montage_register_styles", "faulty_style"))

    setattr(Faulty, hook, staticmethod(hookimpl(specname=hook)(faulty)))
    healthy = type("Healthy", (), {hook: staticmethod(hookimpl(specname=hook)(
        lambda register: register(_thing(hook, "healthy_thing"))))})
    pm.register(Faulty(), "faulty", "1.2")
    pm.register(healthy(), "healthy")
    if kind != "styles":
        assert "faulty_style" in pm.styles  # filled before the faulty hook ran: dropped when it does
    assert pm.registry(kind).origin("healthy_thing") == "healthy" and "half_done" not in pm.registry(kind)
    records = {r.name: r for r in pm.describe()}
    assert records["faulty"].error == "RuntimeError: boom" and records["faulty"].failed_in == hook
    assert records["faulty"].registered == {} and "faulty_style" not in pm.styles
    assert not records["healthy"].error and records["healthy"].registered == {kind: ["healthy_thing"]}
    _builtins_intact(pm)
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING" and "'faulty'" in r.getMessage()]
    assert len(warnings) == 1 and "1.2" in warnings[0] and "RuntimeError: boom" in warnings[0], warnings
    assert all(r.name.startswith("montage") for r in caplog.records)


def test_a_commands_hook_that_raises_loses_its_commands(pm: MontageManager) -> None:
    import click

    from montage_core.hookspecs import hookimpl

    class Faulty:
        @hookimpl
        def montage_register_commands(self, cli):  # type: ignore[no-untyped-def]
            cli.add_command(click.Command("half-done"))
            raise ValueError("no such option")

    class Healthy:
        @hookimpl
        def montage_register_commands(self, cli):  # type: ignore[no-untyped-def]
            cli.add_command(click.Command("hello"))

    pm.register(Faulty(), "faulty")
    pm.register(Healthy(), "healthy")
    group = click.Group("montage")
    pm.add_commands(group)
    assert set(group.commands) == {"hello"}
    assert pm.records["faulty"].error == "ValueError: no such option"
    assert pm.records["faulty"].failed_in == "montage_register_commands"


def test_a_misspelled_hook_is_caught_at_load_with_a_hint(pm: MontageManager,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    from montage_core.hookspecs import hookimpl

    class Typo:
        @hookimpl
        def montage_register_style(self, register):  # type: ignore[no-untyped-def]
            raise AssertionError("never called")

        @hookimpl
        def montage_register_backends(self, register):  # type: ignore[no-untyped-def]
            register(_thing("montage_register_backends", "typo_backend"))

    record = pm.register(Typo(), "typo")
    assert record.error.startswith("PluginValidationError: unknown hook 'montage_register_style' "
                                   "(did you mean montage_register_styles?)")
    assert "montage_register_embedders" in record.error and record.failed_in == "registration"
    assert "typo_backend" not in pm.backends  # a broken plugin contributes nothing
    _builtins_intact(pm)
    assert any("'typo'" in r.getMessage() and "did you mean" in r.getMessage() for r in caplog.records)


def test_a_hook_with_wrong_arguments_is_broken_not_half_registered(pm: MontageManager) -> None:
    from montage_core.hookspecs import hookimpl

    class WrongArgs:
        @hookimpl
        def montage_register_analyzers(self, register):  # type: ignore[no-untyped-def]
            register(_thing("montage_register_analyzers", "wrong_args_analyzer"))

        @hookimpl
        def montage_register_styles(self, callback):  # type: ignore[no-untyped-def]
            raise AssertionError("never called")

    record = pm.register(WrongArgs(), "wrong_args")
    assert record.error.startswith("PluginValidationError: ") and "'montage_register_styles'" in record.error
    assert "{'callback'} are declared in the hookimpl" in record.error
    assert "wrong_args_analyzer" not in pm.analyzers
    _builtins_intact(pm)


def test_a_nameless_object_breaks_only_its_plugin(pm: MontageManager) -> None:
    from montage_core.hookspecs import hookimpl

    class Nameless:
        @hookimpl
        def montage_register_planners(self, register):  # type: ignore[no-untyped-def]
            register(object())

    pm.register(Nameless(), "nameless")
    assert pm.planners.names() == ["broll", "story_arc"]
    assert "a planner without a name" in pm.records["nameless"].error


def test_essential_plugins_cannot_be_disabled(site: Path, monkeypatch: pytest.MonkeyPatch,
                                              caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("MONTAGE_DISABLE_PLUGINS", "backend_local,accel_software,styles")
    manager = MontageManager()
    assert "local" in manager.backends and "software" in manager.accelerators
    assert "dynamic" not in manager.styles and "tiny" in manager.styles  # others are still disabled
    said = [r.getMessage() for r in caplog.records if r.levelname == "WARNING" and "essential" in r.getMessage()]
    assert len(said) == 2 and any("'backend_local'" in m for m in said) and any("'accel_software'" in m for m in said)
    monkeypatch.delenv("MONTAGE_DISABLE_PLUGINS")
    monkeypatch.setenv("MONTAGE_LOAD_PLUGINS", "tiny_style")  # selects entry points, never drops built-ins
    manager = MontageManager()
    assert "local" in manager.backends and "software" in manager.accelerators and "tiny" in manager.styles
    proc = run_cli("plugins", "--all", env={"MONTAGE_DISABLE_PLUGINS": "backend_local,accel_software"})
    rows = {r["name"]: r for r in json.loads(proc.stdout)}
    assert rows["backend_local"]["registered"] == {"backends": ["local"]}
    assert rows["accel_software"]["registered"] == {"accelerators": ["software"]}


FAULTY_PLUGINS = {
    # registers a style fine, then crashes registering its backend
    "raiser": """
        from montage_core.hookspecs import hookimpl
        from montage_core.builtin.styles import DynamicStyle
        from montage_core.interfaces import Backend

        class Fine(DynamicStyle):
            name = "raiser_style"

        @hookimpl
        def montage_register_styles(register):
            register(Fine())

        @hookimpl
        def montage_register_backends(register):
            raise KeyError("RAISER_ENDPOINT")
    """,
    # a typo in the hook name: pluggy would silently never call it
    "typo": """
        from montage_core.hookspecs import hookimpl

        @hookimpl
        def montage_register_style(register):
            pass
    """,
    # claims the core's backend name
    "usurper": """
        from montage_core.hookspecs import hookimpl
        from montage_core.interfaces import Backend

        class Local(Backend):
            name = "local"

        @hookimpl
        def montage_register_backends(register):
            register(Local())
    """,
}


@pytest.fixture
def faulty_site(site: Path) -> Path:
    for name, source in FAULTY_PLUGINS.items():
        _install_fake_distribution(site, name, source, "0.3")
    return site


def test_faulty_entry_points_are_listed_by_montage_plugins(faulty_site: Path) -> None:
    proc = run_cli("plugins", "--all")
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    rows = {r["name"]: r for r in json.loads(proc.stdout)}
    assert rows["raiser"]["available"] is False and rows["raiser"]["reason"] == "KeyError: 'RAISER_ENDPOINT'"
    assert rows["raiser"]["failed_in"] == "montage_register_backends" and rows["raiser"]["registered"] == {}
    assert "did you mean montage_register_styles?" in rows["typo"]["reason"]
    assert "'local'" in rows["usurper"]["reason"] and "'backend_local'" in rows["usurper"]["reason"]
    assert rows["tiny_style"]["available"] and rows["tiny_style"]["registered"] == {"styles": ["tiny"]}
    local = [o for o in rows["backend_local"]["objects"] if o["name"] == "local"]
    assert local and local[0]["available"] and rows["backend_local"]["registered"] == {"backends": ["local"]}
    warned = [line for line in proc.stderr.splitlines() if "'raiser'" in line]
    assert warned == [("warning: plugin 'raiser' (montage-raiser 0.3) is broken and was switched off "
                       "(montage_register_backends): KeyError: 'RAISER_ENDPOINT'")], proc.stderr
    assert len([line for line in proc.stderr.splitlines() if "'typo'" in line]) == 1, proc.stderr

    listed = {r["name"]: r for r in json.loads(run_cli("plugins").stdout)}
    assert {"raiser", "typo", "usurper", "broken"} <= set(listed) and not listed["raiser"]["available"]
    for args in (("plugins", "--format", "table"), ("plugins", "--format", "table", "--all")):
        table = run_cli(*args)
        assert table.returncode == 0, table.stderr
        assert "unavailable: KeyError: 'RAISER_ENDPOINT'" in table.stdout
        assert "did you mean montage_register_styles?" in table.stdout
    styles = run_cli("styles")
    assert styles.returncode == 0 and "tiny" in styles.stdout, styles.stderr


@pytest.mark.slow
def test_montage_run_works_beside_faulty_plugins(faulty_site: Path, media: MediaFactory, tmp_path: Path) -> None:
    clip, _ = media.clip([(0, 2.0), (1, 2.0)])
    music, _ = media.music(seconds=4)
    out = tmp_path / "out.mp4"
    proc = run_cli("run", str(clip), "--music", str(music), "-o", str(out), "--resolution", "320x180", "--fps",
                   "25", "--quality", "preview", "--style", "tiny", env={"MONTAGE_WORKERS": "2"})
    assert proc.returncode == 0, proc.stderr
    assert out.exists() and probe_frames(out)[0] == 4 * 25
    # Workers load the same plugins; only the process the user started names each broken one.
    for name in ("raiser", "typo", "broken"):
        assert len([line for line in proc.stderr.splitlines() if f"'{name}'" in line]) == 1, proc.stderr
