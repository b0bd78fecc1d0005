"""Accelerator probing (cached per host) and the encoder chain a render uses."""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from .config import cache_dir
from .errors import UnavailableError, UnknownChoiceError
from .ffmpeg import ffmpeg_binary
from .hookspecs import implementation_module
from .interfaces import Accelerator, AcceleratorProbe
from .models import write_atomic

log = logging.getLogger("montage.accel")

PROBE_TTL_SECONDS = 3600.0
QUALITIES = ("preview", "standard", "high")
#: the codecs montage encodes, in the order probes test and report them
CODECS = ("h264", "hevc", "av1")


def _cache_path() -> Any:
    return cache_dir() / f"probe-{socket.gethostname()}.json"


def check_quality(quality: str) -> None:
    """Refuse a quality preset no encoder knows, naming the ones they do."""
    from .errors import UsageError

    if quality not in QUALITIES:
        raise UsageError(f"unknown quality {quality!r} (known: {', '.join(QUALITIES)})")


def host_fingerprint() -> dict[str, Any]:
    """What invalidates cached probes: the device list and the loaded GPU driver versions."""
    import glob

    drivers = {}
    for module in ("nvidia", "i915", "xe", "amdgpu"):
        try:
            drivers[module] = Path(f"/sys/module/{module}/version").read_text().strip()
        except OSError:
            if Path(f"/sys/module/{module}").exists():
                drivers[module] = "loaded"
    return {"devices": sorted(glob.glob("/dev/dri/renderD*") + glob.glob("/dev/nvidia[0-9]*")), "drivers": drivers}


def ffmpeg_identity(binary: str) -> dict[str, Any]:
    """What identifies the ffmpeg a probe ran: the file behind the path (links followed), its
    size and modification time. Reading it costs a ``stat``; asking ``ffmpeg -version`` would
    cost a process start, as much as all of ``montage check-hw`` otherwise does from the cache.
    An ffmpeg replaced or upgraded in place gets a new mtime and so a new probe."""
    real = os.path.realpath(binary)
    try:
        st = os.stat(real)
    except OSError:
        return {"path": real, "missing": True}
    return {"path": real, "size": st.st_size, "mtime_ns": st.st_mtime_ns, "inode": st.st_ino}


def _code_stamp(module: str) -> int:
    """When the accelerator's code file last changed (an upgraded or edited plugin probes again);
    found without importing it."""
    import importlib.util

    try:
        spec = importlib.util.find_spec(module)
        return os.stat(spec.origin).st_mtime_ns if spec is not None and spec.origin else 0
    except (ImportError, ValueError, OSError):
        return 0


def probe_all(accelerators: list[Accelerator], *, refresh: bool = False) -> dict[str, AcceleratorProbe]:
    """Probe every accelerator, reusing this host's cached results while fresh and the hardware is unchanged."""
    binary = ffmpeg_binary()  # a PATH search: once, for the key and every probe
    modules = {a.name: implementation_module(a) for a in accelerators}
    key = {"ffmpeg": binary, "binary": ffmpeg_identity(binary), "host": host_fingerprint(),
           "accelerators": sorted(f"{name}:{module}:{_code_stamp(module)}" for name, module in modules.items())}
    path = _cache_path()
    if not refresh:
        try:
            cached = json.loads(path.read_text())
            if cached["key"] == key and time.time() - cached["time"] < PROBE_TTL_SECONDS:
                return {name: AcceleratorProbe(**p) for name, p in cached["probes"].items()}
        except (OSError, ValueError, KeyError, TypeError):
            pass
    probes: dict[str, AcceleratorProbe] = {}
    for accel in accelerators:
        try:
            probes[accel.name] = accel.probe(binary)
        except Exception as exc:  # a probe must never take a job down
            probes[accel.name] = AcceleratorProbe(accel.name, False, f"probe crashed: {type(exc).__name__}: {exc}")
    write_atomic(path, json.dumps({"key": key, "time": time.time(),
                                   "probes": {n: asdict(p) for n, p in probes.items()}}))
    return probes


def log_devices(probes: dict[str, AcceleratorProbe]) -> None:
    """One line per device: its driver and version when it works, why it is skipped when not."""
    for probe in probes.values():
        for row in probe.devices:
            driver = f"{row.get('driver', '')} {row.get('driver_version', '')}".strip()
            if row.get("problem"):
                log.info("%s: skipping %s: %s", probe.name, row["node"], row["problem"])
            elif probe.name != "software":
                works = [c for c, why in row.get("encode", {}).items() if not why] or ["no encoder"]
                log.info("%s: %s %s (%s): %s", probe.name, row["node"], row.get("product", ""), driver, ", ".join(works))


def chosen_accelerator(accelerators: list[Accelerator], choice: str) -> Accelerator | None:
    """The accelerator ``--accel`` names (``None`` for ``auto``); an unknown name lists the known ones."""
    if choice == "auto":
        return None
    by_name = {a.name: a for a in accelerators}
    if choice not in by_name:
        raise UnknownChoiceError("accelerator", choice, ["auto", *by_name])
    return by_name[choice]


def encoder_chain(
    accelerators: list[Accelerator], choice: str = "auto", *, refresh: bool = False
) -> list[tuple[Accelerator, AcceleratorProbe]]:
    """Working accelerators, best first, software last; ``choice`` pins one (then software)."""
    pinned = chosen_accelerator(accelerators, choice)
    probes = probe_all(accelerators, refresh=refresh)
    working = sorted((a for a in accelerators if probes[a.name].available),
                     key=lambda a: (a.name == "software", -a.priority, a.name))
    if pinned is not None:
        if not probes[choice].available:
            raise UnavailableError(f"accelerator {choice!r} is not available: {probes[choice].reason}")
        working = [pinned, *(a for a in working if a.name == "software" and a.name != choice)]
    if not working:
        reasons = "; ".join(f"{n}: {p.reason}" for n, p in probes.items())
        raise UnavailableError(f"no working encoder ({reasons})")
    return [(a, probes[a.name]) for a in working]


def analysis_decoder(accelerators: list[Accelerator], probes: dict[str, AcceleratorProbe]) -> tuple[str, list[str]]:
    """(name, ffmpeg input args) of the best working hardware decoder, or ('software', []).

    Decode-only GPUs count: a GPU without an encoder (an H100, say) still decodes for analysis.
    """
    for accel in sorted(accelerators, key=lambda a: -a.priority):
        probe = probes.get(accel.name)
        if probe and probe.decode and probe.device:
            args = accel.analysis_input_args(probe)
            if args:  # an accelerator that decodes but gives no arguments leaves decoding to software
                return accel.name, args
    return "software", []


def describe_chain(chain: list[tuple[Accelerator, AcceleratorProbe]]) -> str:
    """``nvenc (0: NVIDIA L4 nvidia 550.54) → software`` for the job log."""
    return " → ".join(f"{a.name} ({p.reason})" if a.name != "software" else a.name for a, p in chain)


def describe_probe(probe: AcceleratorProbe) -> list[str]:
    """Table lines for ``montage check-hw``: one per device with per-codec results (here, not in
    :mod:`.hwaccel`, so that ``check-hw`` answering from the cache imports no hardware layer)."""
    lines = []
    for row in probe.devices:
        head = (f"  {row.get('node', '?'):22s} {row.get('vendor', ''):7s} {row.get('product', '')[:40]:40s} "
                f"{row.get('driver', '')} {row.get('driver_version', '')}").rstrip()
        lines.append(head)
        if row.get("problem"):
            lines.append(f"      skipped: {row['problem']}")
            continue
        for codec in CODECS:
            if codec in row.get("encode", {}):
                why = row["encode"][codec]
                lines.append(f"      {codec:5s} encode: {'ok' if not why else why}")
        for codec, why in row.get("decode", {}).items():
            lines.append(f"      {codec:5s} decode: {'ok' if not why else why}")
    return lines
