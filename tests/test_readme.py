"""The README's two commands, in the README's order, in a new virtual environment."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from montage_core.testing import MediaFactory, child_venv, probe_frames

pytestmark = pytest.mark.slow

REPOSITORY = Path(__file__).resolve().parent.parent


def _checkout(target: Path) -> Path:
    """The repository's tracked and new files, as a fresh clone would have them (no build leftovers)."""
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=REPOSITORY,
                           capture_output=True, text=True, check=True).stdout.splitlines()
    for name in files:
        source = REPOSITORY / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    return target


def test_the_readme_order_holds_in_a_new_environment(media: MediaFactory, tmp_path: Path) -> None:
    checkout = _checkout(tmp_path / "montage checkout")
    python = child_venv(tmp_path / "venv")
    bin_dir = str(Path(python).parent)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "MONTAGE_WORKERS": "2"}
    env.pop("PYTHONPATH", None)

    def step(*command: str, timeout: float = 900, cwd: Path = checkout) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(list(command), cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
        assert proc.returncode == 0, f"{command}: {proc.stdout[-2000:]}{proc.stderr[-4000:]}"
        return proc

    # 1. `pip install . && montage demo`
    step(python, "-m", "pip", "install", "-q", "--no-build-isolation", ".")
    where = step(python, "-c", "import montage_core; print(montage_core.__file__)", cwd=tmp_path).stdout
    assert str(tmp_path / "venv") in where  # the installed copy, not the repository's
    step(f"{bin_dir}/montage", "demo", "-o", str(tmp_path / "demo"), "--quality", "preview", cwd=tmp_path)
    frames, _ = probe_frames(tmp_path / "demo" / "montage.mp4")
    assert frames == 24 * 30
    # the README's Plugins section: a plugin by what it provides, from the checkout, into this environment
    step(f"{bin_dir}/montage", "install", "wes_anderson", timeout=600)
    where = step(python, "-c", "import montage_style_wes_anderson as m; print(m.__file__)", cwd=tmp_path).stdout
    assert str(tmp_path / "venv") in where
    assert "wes_anderson" in step(f"{bin_dir}/montage", "styles", cwd=tmp_path).stdout
    # 2. the test command's set-up step (editable installs over the installed package)
    step("bash", "scripts/test.sh", "--install-only", timeout=1800)
    assert step(f"{bin_dir}/montage", "--version").stdout.strip()
    where = step(python, "-c", "import montage_core; print(montage_core.__file__)", cwd=tmp_path).stdout
    assert str(checkout) in where  # now the editable checkout: nothing left behind shadows it
    clip, _ = media.clip([(0, 2.0), (1, 2.0)])
    music, _ = media.music(seconds=4)
    out = tmp_path / "short run.mp4"
    step(f"{bin_dir}/montage", "run", str(clip), "--music", str(music), "-o", str(out), "--resolution", "320x180",
         "--fps", "25", "--quality", "preview")
    assert probe_frames(out)[0] == 4 * 25
