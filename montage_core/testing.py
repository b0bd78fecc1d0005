"""pytest plugin for montage and its plugins: fresh plugin managers, isolated state, test media.

Installed with montage-core (entry point ``pytest11``), so plugin authors get these fixtures too:

- ``pm``: a fresh :class:`~montage_core.plugins.MontageManager` with the built-ins only (no
  installed plugins); register yours with ``pm.register(module, "name")``.
- ``montage_home``: every montage state and cache folder redirected into a temporary directory.
- ``media``: a :class:`MediaFactory` that makes clips with cuts at known frames and music with a
  known beat (cached per test session).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest


class MediaFactory:
    """Makes (and caches per session) synthesized clips and music with known answers."""

    def __init__(self, folder: Path):
        self.folder = folder

    def _path(self, kind: str, spec: Any, suffix: str) -> Path:
        key = hashlib.blake2b(json.dumps(spec, sort_keys=True).encode(), digest_size=8).hexdigest()
        return self.folder / f"{kind}-{key}{suffix}"

    def clip(self, shots: list[tuple[int, float]], *, size: tuple[int, int] = (320, 180), fps: int = 25,
             audio: bool = False, name: str | None = None) -> tuple[Path, list[int]]:
        """A clip of ``shots`` (lavfi source index, seconds); returns its path and the cut frames."""
        from .synth import make_clip

        spec = {"shots": shots, "size": size, "fps": fps, "audio": audio}
        path = self._path("clip", spec, ".mp4")
        cuts_file = path.with_suffix(".cuts.json")
        if not path.exists():
            cuts_file.write_text(json.dumps(make_clip(path, shots, size=size, fps=fps, audio=audio)))
        cuts = json.loads(cuts_file.read_text())
        if name:
            target = self.folder / name
            target.parent.mkdir(parents=True, exist_ok=True)
            if not target.exists():
                target.write_bytes(path.read_bytes())
            return target, cuts
        return path, cuts

    def music(self, *, bpm: float = 120.0, seconds: float = 12.0, arc: bool = True,
              accents: tuple[int, ...] = (), sections: tuple[int, ...] = ()) -> tuple[Path, list[float]]:
        """A WAV with a kick on every beat (a crash on the beats numbered in ``accents``); returns its
        path and the beat times."""
        from .synth import make_music

        spec = {"bpm": bpm, "seconds": seconds, "arc": arc, **({"accents": list(accents)} if accents else {}),
                **({"sections": list(sections)} if sections else {})}
        path = self._path("music", spec, ".wav")
        beats_file = path.with_suffix(".beats.json")
        if not path.exists():
            beats_file.write_text(json.dumps(make_music(path, bpm=bpm, seconds=seconds, arc=arc, accents=accents,
                                                        sections=sections)))
        return path, json.loads(beats_file.read_text())


def child_venv(path: Path) -> str:
    """A new virtual environment at ``path`` that sees every package this interpreter sees (montage
    and its dependencies), also when this interpreter runs in a virtualenv itself, where
    ``--system-site-packages`` would only reach the base interpreter's. Returns its python."""
    import site
    import subprocess
    import sys

    # no pip of its own: this interpreter's pip (and its setuptools) work there, with no download
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(path)], check=True)
    python = str(path / "bin" / "python")
    child_site = subprocess.run([python, "-c", "import site; print(site.getsitepackages()[0])"],
                                capture_output=True, text=True, check=True).stdout.strip()
    # A .pth file's lines are added to sys.path after the venv's own site-packages: the venv's own
    # installs win, and everything installed here is still importable there.
    Path(child_site, "_montage_parent_env.pth").write_text(
        "\n".join([*site.getsitepackages(), site.getusersitepackages()]) + "\n", encoding="utf-8")
    return python


def pytest_configure(config: pytest.Config) -> None:
    """Share compiled kernels across tests: each test has its own ``MONTAGE_CACHE_DIR``, and a
    JIT cache per test would compile every kernel again. A ``NUMBA_CACHE_DIR`` set by the user
    is kept; the JIT lock makes sharing safe for parallel test runs too."""
    import tempfile

    from .jit import OWNED_MARK

    current = os.environ.get("NUMBA_CACHE_DIR")
    if not current or current == os.environ.get(OWNED_MARK):
        os.environ["NUMBA_CACHE_DIR"] = str(Path(tempfile.gettempdir()) / f"montage-test-jit-{os.getuid()}")
        os.environ.pop(OWNED_MARK, None)


@pytest.fixture(scope="session")
def media(tmp_path_factory: pytest.TempPathFactory) -> MediaFactory:
    return MediaFactory(tmp_path_factory.mktemp("media"))


@pytest.fixture
def montage_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Isolated cache and job store for one test."""
    home = tmp_path / "montage-home"
    monkeypatch.setenv("MONTAGE_CACHE_DIR", str(home / "cache"))
    monkeypatch.setenv("MONTAGE_HOME", str(home / "state"))
    return home


@pytest.fixture
def pm(monkeypatch: pytest.MonkeyPatch) -> Any:
    """A fresh plugin manager with the built-in plugins and no installed (entry-point) plugins."""
    from . import plugins

    manager = plugins.MontageManager(load_entrypoints=False)
    monkeypatch.setattr(plugins, "_manager", manager)
    return manager


def run_cli(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None,
            timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run the real ``montage`` command (a fresh process, entry points and all)."""
    return subprocess.run([sys.executable, "-m", "montage_core", *args], capture_output=True, text=True,
                          cwd=cwd, env={**os.environ, **(env or {})}, timeout=timeout)


def probe_frames(path: Path) -> tuple[int, float]:
    """Decode every frame (errors fail the test) and return (frames, duration)."""
    proc = subprocess.run(["ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0", "-show_entries",
                           "stream=nb_read_frames:format=duration", "-of", "json", str(path)],
                          capture_output=True, text=True, check=True)
    data = json.loads(proc.stdout)
    return int(data["streams"][0]["nb_read_frames"]), float(data["format"]["duration"])


class RecordedSystem:
    """A :class:`montage_core.hwaccel.SystemProbe` that replays what a real machine answered.

    ``commands`` maps a tuple of leading arguments (matched after the program's base name, so
    ``("vainfo", "--display", "drm")`` or ``("ffmpeg", "-encoders")``; an argument may also match
    anywhere later in the command when written as ``"*ARG"``) to ``(exit status, output)``. The
    first match wins; an unmatched command fails the test, naming it. ``files`` answers reads
    (sysfs), ``nodes`` answers stats of device nodes: ``{path: (mode, uid, gid)}``.
    """

    def __init__(self, commands: list[tuple[tuple[str, ...], tuple[int, str]]], *,
                 files: dict[str, str] | None = None, nodes: dict[str, tuple[int, int, int]] | None = None,
                 uid: int = 0, gids: set[int] | None = None):
        self.commands, self.files, self.nodes = commands, files or {}, nodes or {}
        self.uid, self.gids = uid, gids or {0}
        self.calls: list[list[str]] = []

    @staticmethod
    def _matches(pattern: tuple[str, ...], args: list[str]) -> bool:
        words = [os.path.basename(args[0]), *args[1:]]
        position = 0
        for part in pattern:
            if part.startswith("*"):
                if part[1:] not in words[position:]:
                    return False
                position = words.index(part[1:], position) + 1
            elif position >= len(words) or words[position] != part:
                return False
            else:
                position += 1
        return True

    def run(self, args: Any, timeout: float = 20.0) -> tuple[int, str]:
        args = list(args)
        self.calls.append(args)
        for pattern, answer in self.commands:
            if self._matches(pattern, args):
                return answer
        raise AssertionError(f"unexpected command in a recorded system: {args}")

    def glob(self, pattern: str) -> list[str]:
        import fnmatch

        return sorted(p for p in self.nodes if fnmatch.fnmatch(p, pattern))

    def read(self, path: str) -> str:
        return self.files.get(path, "")

    def stat(self, path: str) -> os.stat_result | None:
        import stat as stat_module

        if path not in self.nodes:
            return None
        mode, uid, gid = self.nodes[path]
        return os.stat_result((stat_module.S_IFCHR | mode, 0, 0, 1, uid, gid, 0, 0, 0, 0))

    def identity(self) -> tuple[int, set[int]]:
        return self.uid, set(self.gids)


def fixture_text(path: str | Path) -> str:
    """A recorded output file, read as text."""
    return Path(path).read_text(encoding="utf-8")
