"""Plugin manager: built-ins are plugins, entry points load one at a time, duplicates are named."""

from __future__ import annotations

import ast
import json
import sys
import textwrap
from pathlib import Path

import pytest

from montage_core import hookspecs
from montage_core.errors import PluginError, UnknownChoiceError
from montage_core.plugins import DEFAULT_PLUGINS, KINDS, MontageManager

from montage_core.testing import run_cli


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


def test_duplicate_name_names_both_plugins(pm: MontageManager) -> None:
    from montage_core.builtin.styles import DynamicStyle
    from montage_core.hookspecs import hookimpl

    class Copycat:
        @hookimpl
        def montage_register_styles(self, register):  # type: ignore[no-untyped-def]
            register(DynamicStyle())

    pm.register(Copycat(), "copycat")
    with pytest.raises(PluginError) as err:
        pm.styles
    assert "'styles'" in str(err.value) and "'copycat'" in str(err.value) and "'dynamic'" in str(err.value)


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
    for mod in ("montage_broken", "montage_tiny_style", "montage_greeter"):
        sys.modules.pop(mod, None)


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


def test_help_imports_no_heavy_modules() -> None:
    code = ("import sys; sys.argv = ['montage', '--help']\n"
            "from montage_core.cli import main\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "heavy = [m for m in ('numba', 'cv2', 'dask', 'kubernetes', 'numpy', 'librosa') if m in sys.modules]\n"
            "print('HEAVY=' + ','.join(heavy))")
    import subprocess

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "HEAVY=\n" in out or out.rstrip().endswith("HEAVY="), out


def test_builtin_modules_import_nothing_heavy_at_top_level() -> None:
    heavy = {"numba", "cv2", "dask", "kubernetes", "numpy", "librosa", "opentimelineio"}
    root = Path(__file__).parent.parent / "montage_core"
    for module in ["plugins.py", "hookspecs.py", "interfaces.py", "models.py", "cli.py", "errors.py",
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


def test_unavailable_accelerator_is_one_line() -> None:
    names = [r["name"] for r in json.loads(run_cli("check-hw", "--json").stdout)["accelerators"]]
    if "nvenc" not in names or Path("/dev/nvidia0").exists():
        pytest.skip("needs the nvenc plugin and no NVIDIA GPU")
    proc = run_cli("run", "x.mp4", "--music", "y.wav", "--accel", "nvenc")
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode == 1 and errors == [
        "error: accelerator 'nvenc' is not available: nvidia-smi not found: no NVIDIA driver on this host"]


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
