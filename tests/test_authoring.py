"""Third-party authoring: scaffolds that pass their own tests, and the tutorial followed to the letter."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from montage_core import hookspecs
from montage_core.testing import MediaFactory, child_venv, run_cli

ROOT = Path(__file__).resolve().parent.parent
KINDS = ["style", "analyzer", "accelerator", "planner", "backend"]


@pytest.mark.parametrize("kind", KINDS)
def test_new_plugin_scaffold_passes_its_own_test(kind: str, tmp_path: Path) -> None:
    proc = run_cli("new-plugin", kind, f"my_{kind}", "--dir", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    root = tmp_path / f"montage-my-{kind}"
    assert (root / "pyproject.toml").read_text().count(f'my_{kind} = "montage_my_{kind}"') == 1
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(root / "tests")],
                            capture_output=True, text=True, cwd=root,
                            env={**os.environ, "PYTHONPATH": str(root)})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout


def test_new_plugin_refuses_bad_kinds_and_names(tmp_path: Path) -> None:
    bad_kind = run_cli("new-plugin", "widget", "x", "--dir", str(tmp_path))
    assert bad_kind.returncode == 2
    assert "unknown plugin kind 'widget' (known: accelerator, analyzer, backend, planner, style)" in bad_kind.stderr
    assert "lower-case letters" in run_cli("new-plugin", "style", "Bad-Name", "--dir", str(tmp_path)).stderr


def test_every_hook_has_a_reference_page_and_a_test() -> None:
    tests = "\n".join(p.read_text() for p in [*ROOT.glob("tests/*.py"), *ROOT.glob("plugins/*/tests/*.py")])
    for name in (n for n in dir(hookspecs) if n.startswith("montage_register_")):
        kind = name.removeprefix("montage_register_")
        page = ROOT / "docs" / "hooks" / f"{kind}.md"
        assert page.exists() and f"`{name}" in page.read_text(), f"docs/hooks/{kind}.md must document {name}"
        assert name in tests, f"no test exercises {name}"


def _tutorial_files() -> dict[str, str]:
    """The files the tutorial tells a reader to create, taken from its code blocks."""
    text = (ROOT / "docs" / "plugin-authoring.md").read_text()
    files = {}
    for filename, body in re.findall(r"`([\w./-]+\.(?:py|toml))`:\n\n```\w*\n(.*?)```", text, re.S):
        files[filename] = body
    return files


@pytest.mark.slow
def test_tutorial_plugin_installs_outside_the_repository_and_changes_the_cut(media: MediaFactory,
                                                                               tmp_path: Path) -> None:
    files = _tutorial_files()
    assert set(files) == {"pyproject.toml", "montage_slowmo_sunset.py"}
    package = tmp_path / "montage-slowmo-sunset"
    package.mkdir()
    for filename, body in files.items():
        (package / filename).write_text(body)
    # A reader's own environment: sees the installed montage-core, gets the plugin with `pip install -e`.
    python = child_venv(tmp_path / "venv")
    install = subprocess.run([python, "-m", "pip", "install", "-q", "--no-deps", "-e", str(package)],
                             capture_output=True, text=True)
    assert install.returncode == 0, install.stderr

    def venv_cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([python, "-m", "montage_core", *args], capture_output=True, text=True, timeout=300)

    listed = venv_cli("plugins")
    assert '"slowmo_sunset"' in listed.stdout, listed.stderr
    clips = []
    for k, shots in enumerate([[(0, 3.0), (1, 3.0)], [(3, 3.0), (6, 3.0)], [(2, 3.0), (7, 3.0)]]):
        clip, _ = media.clip(shots)
        clips.append(str(clip))
    music, _ = media.music(seconds=12)
    plans = {}
    for style in ("dynamic", "slowmo_sunset"):
        out = tmp_path / f"{style}.json"
        proc = venv_cli("plan", *clips, "--music", str(music), "-o", str(out), "--style", style, "--fps", "25")
        assert proc.returncode == 0, proc.stderr
        plans[style] = out.read_text()
    assert plans["dynamic"] != plans["slowmo_sunset"]
    assert '"style": "slowmo_sunset"' in plans["slowmo_sunset"]
