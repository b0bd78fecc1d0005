"""The plugins this project publishes: what each adds, so a name one of them provides is one command away.

``montage install NAME`` installs a plugin with pip into montage's own environment (the
environment ``sys.executable`` belongs to), like ``llm install``; an unknown ``--style``,
``--backend``, ``--accel`` or ``--embedder`` that a plugin here provides says which one to install.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from .errors import UsageError


@dataclass(frozen=True)
class CataloguePlugin:
    """One published plugin: its distribution, its folder in the repository, what it registers."""

    distribution: str
    folder: str
    summary: str
    provides: dict[str, tuple[str, ...]] = field(default_factory=dict)


CATALOGUE: tuple[CataloguePlugin, ...] = (
    CataloguePlugin("montage-style-wes-anderson", "style_wes_anderson",
                    "the wes_anderson style: symmetric, balanced compositions (symmetry and balance analyzers)",
                    {"style": ("wes_anderson",), "analyzer": ("symmetry", "balance")}),
    CataloguePlugin("montage-backend-dask", "backend_dask", "the dask backend: shards on a Dask cluster",
                    {"backend": ("dask",)}),
    CataloguePlugin("montage-backend-k8s", "backend_k8s",
                    "the k8s backend: shards as Kubernetes Indexed Jobs, with pre-flight and pod logs",
                    {"backend": ("k8s",)}),
    CataloguePlugin("montage-hwaccel-nvenc", "hwaccel_nvenc", "NVIDIA NVENC encoding and CUDA decoding",
                    {"accelerator": ("nvenc",)}),
    CataloguePlugin("montage-hwaccel-vaapi", "hwaccel_vaapi", "VA-API encoding and decoding (Intel, AMD)",
                    {"accelerator": ("vaapi",)}),
    CataloguePlugin("montage-hwaccel-qsv", "hwaccel_qsv", "Intel Quick Sync encoding", {"accelerator": ("qsv",)}),
    CataloguePlugin("montage-embedder-minilm", "embedder_minilm",
                    "the minilm embedder: text-semantic search and B-roll (brings PyTorch)",
                    {"embedder": ("minilm",)}),
)


def provider(kind: str, name: str) -> CataloguePlugin | None:
    """The published plugin that registers ``name`` as a ``kind`` (style, backend, …), if any."""
    return next((p for p in CATALOGUE if name in p.provides.get(kind, ())), None)


def install_hint(kind: str, name: str) -> str:
    """``; the plugin montage-x provides it: montage install montage-x`` or ""."""
    found = provider(kind, name)
    return f"; {kind} {name!r} comes with the plugin {found.distribution}: montage install {found.distribution}" \
        if found else ""


def resolve(name: str) -> tuple[str, CataloguePlugin | None]:
    """What pip should install for ``name``: a catalogue plugin (by distribution, folder or a name it
    provides) from a checkout's ``plugins/`` folder when there is one, else by name."""
    wanted = name.replace("_", "-").lower()
    found = next((p for p in CATALOGUE if wanted in (p.distribution, p.distribution.removeprefix("montage-"),
                                                     p.folder.replace("_", "-"))
                  or name in {n for names in p.provides.values() for n in names}), None)
    if found is None:
        return name, None
    # This project's checkout: the one montage runs from (an editable install), or the current
    # folder (a checkout installed with `pip install .`, as the README does); else the index.
    for checkout in (Path(__file__).resolve().parent.parent, Path.cwd()):
        source = checkout / "plugins" / found.folder
        if (source / "pyproject.toml").is_file():
            return str(source), found
    return found.distribution, found


def pip(action: str, names: list[str]) -> int:
    """``pip install``/``uninstall`` in montage's own environment; returns pip's exit status."""
    if action not in ("install", "uninstall"):
        raise UsageError(f"unknown pip action {action!r} (known: install, uninstall)")
    targets = [resolve(n)[0] if action == "install" else (resolve(n)[1].distribution if resolve(n)[1] else n)
               for n in names]
    command = [sys.executable, "-m", "pip", action, *(["-y"] if action == "uninstall" else []), *targets]
    return subprocess.run(command).returncode
