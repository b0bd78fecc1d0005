"""Vendor-neutral support for hardware accelerators; the VA-API, NVENC and QSV plugins build on it.

A vendor plugin supplies only what differs: how to enumerate its devices, its PCI vendor ids and
driver names, the ffmpeg device arguments, the encoder arguments per quality and the failure
messages it knows. This module does the rest the same way for all of them: access checks that
name the missing group, the ffmpeg build check (``-encoders``/``-hwaccels``), a real short test
encode and decode per codec, VA render-node support shared by the libva-based plugins, and
:func:`diagnose`, which turns a failed ffmpeg run into a reason a user can act on by asking the
installed accelerators first.

Everything reaches the system through :class:`SystemProbe` (commands, files, device nodes), the
one boundary tests replace with outputs captured from real machines.
"""

from __future__ import annotations

import grp
import os
import re
import stat
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import ClassVar

from .accel import CODECS, describe_probe  # noqa: F401 - their home was here; plugins import CODECS from here
from .interfaces import Accelerator, AcceleratorProbe
from .procs import child_options

TEST_SOURCE = ["-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25:duration=0.4"]


class SystemProbe:
    """Runs commands and reads the filesystem for probes. Tests swap in recorded answers."""

    def run(self, args: Sequence[str], timeout: float = 20.0) -> tuple[int, str]:
        """Exit status and stdout+stderr of ``args``; 127 when the program is not installed."""
        try:
            proc = subprocess.run(list(args), capture_output=True, text=True, errors="replace", timeout=timeout,
                                  **child_options())
        except FileNotFoundError:
            return 127, f"{args[0]}: command not found"
        except subprocess.TimeoutExpired:
            return 124, f"{args[0]}: timed out after {timeout:g} s"
        return proc.returncode, proc.stdout + proc.stderr

    def glob(self, pattern: str) -> list[str]:
        root, _, rest = pattern.rpartition("/")
        return sorted(str(p) for p in Path(root).glob(rest))

    def read(self, path: str) -> str:
        try:
            return Path(path).read_text().strip()
        except OSError:
            return ""

    def stat(self, path: str) -> os.stat_result | None:
        try:
            return os.stat(path)
        except OSError:
            return None

    def identity(self) -> tuple[int, set[int]]:
        """This process's uid and every group id it holds."""
        return os.getuid(), {os.getgid(), *os.getgroups()}


def group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return f"gid {gid}"


def access_problem(node: str, st: os.stat_result | None, uid: int, gids: set[int]) -> str:
    """Why this user cannot open ``node`` read-write ('' when it can), naming the group to join."""
    if st is None:
        return f"{node} does not exist (no driver loaded, or the device is not passed into the container)"
    if not stat.S_ISCHR(st.st_mode):
        return f"{node} is not a character device"
    if uid == 0:
        return ""
    mode = st.st_mode
    if st.st_uid == uid and mode & 0o600 == 0o600:
        return ""
    if st.st_gid in gids and mode & 0o060 == 0o060:
        return ""
    if mode & 0o006 == 0o006:
        return ""
    group = group_name(st.st_gid)
    return (f"permission denied on {node} (owner group '{group}', mode {stat.S_IMODE(mode):04o}): add this user "
            f"to the '{group}' group (usermod -aG {group} $USER, then log in again) or, in a container, "
            f"pass the device with --device {node} --group-add {st.st_gid}")


#: failures any ffmpeg hardware command can show, whatever the device (asked after the accelerators' own)
GENERIC_DIAGNOSES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"Unknown encoder '([\w-]+)'|Encoder ([\w-]+) not found"),
     "this ffmpeg build has no {0} encoder"),
    (re.compile(r"Failed setup for format \w+: hwaccel initialisation returned error|"
                r"No support for codec \w+ profile|Failed to create decode configuration"),
     "the driver cannot decode this codec on this GPU"),
]

#: libva could not start the device's driver; a plugin may name the drivers its GPUs need
VA_INIT_FAILED = re.compile(r"Failed to initialise VAAPI connection: (-?\d+) \(([^)]*)\)")

#: failures of the VA-API layer (render nodes, libva) that every VA device shows alike, whoever made the GPU
VA_DIAGNOSES: list[tuple[re.Pattern[str], str]] = [
    (VA_INIT_FAILED, "VA-API initialisation failed ({1}): the VA driver for this GPU is missing or wrong "
                     "(set LIBVA_DRIVER_NAME to this GPU's driver)"),
    (re.compile(r"Cannot open DRM render node|Cannot open a VA display from DRM device|Permission denied"),
     "could not open the render node (permission denied, or not passed into the container): check the "
     "user's render/video group membership"),
    (re.compile(r"No VA display found for device|Failed to open (?:device|/dev/dri)"),
     "could not open the VA-API display on this device"),
    (re.compile(r"No usable encoding profile found|No usable encoding entrypoint found"),
     "the driver cannot encode this codec on this GPU"),
]


def match_diagnosis(table: list[tuple[re.Pattern[str], str]], output: str) -> str | None:
    """The meaning of the first pattern in ``table`` that ``output`` matches, its groups filled in."""
    for pattern, meaning in table:
        match = pattern.search(output)
        if match:
            return meaning.format(*match.groups())
    return None


def registered_accelerators() -> list[Accelerator]:
    """The installed accelerators, highest priority first ([] when the plugins cannot be loaded)."""
    from .plugins import get_manager

    try:
        accelerators = list(get_manager().accelerators)
    except Exception:  # explaining a failure must never fail in turn (the renderer falls back on it)
        return []
    return sorted(accelerators, key=lambda a: (-a.priority, a.name))


def diagnose(output: str, first: Accelerator | None = None) -> str:
    """One line saying why an ffmpeg hardware command failed.

    ``first`` (the accelerator whose command it was, when known) is asked first, then every
    installed accelerator (the renderer's worker knows only the output), then the VA-API layer's
    and the generic patterns; what none recognises is told by ffmpeg's last line.
    """
    reason = first.diagnose(output) if first is not None else None
    if not reason:  # loads the plugins only when needed: inside a render worker, on a failed encode
        reason = next(filter(None, (a.diagnose(output) for a in registered_accelerators())), None)
    reason = reason or match_diagnosis(VA_DIAGNOSES, output) or match_diagnosis(GENERIC_DIAGNOSES, output)
    if reason:
        return reason
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    return lines[-1] if lines else "failed without a message"


@dataclass
class Device:
    """One hardware device as the probe found it."""

    node: str
    vendor: str
    product: str = ""
    driver: str = ""
    driver_version: str = ""
    problem: str = ""  # non-empty: the device is skipped for this reason
    encode: dict[str, str] = field(default_factory=dict)  # codec -> "" (works) or the reason it does not
    decode: dict[str, str] = field(default_factory=dict)
    #: extra encoder options a codec needs on this device (e.g. VA-API low-power-only encoders)
    encoder_options: dict[str, list[str]] = field(default_factory=dict)

    @property
    def encoders_ok(self) -> list[str]:
        return [c for c, why in self.encode.items() if not why]


class HardwareAccelerator(Accelerator):
    """Base for hardware accelerators; a plugin fills in the vendor-specific parts."""

    #: codec -> ffmpeg encoder name
    encoders: ClassVar[dict[str, str]] = {}
    #: ffmpeg ``-hwaccel`` name used for decoding
    hwaccel: ClassVar[str] = ""
    #: (pattern, meaning) per known failure of this vendor's encoders; ``{0}``… take the pattern's groups
    diagnoses: ClassVar[list[tuple[re.Pattern[str], str]]] = []
    system: SystemProbe

    def __init__(self, system: SystemProbe | None = None):
        self.system = system or SystemProbe()

    # -- vendor parts -------------------------------------------------------------------
    def enumerate_devices(self) -> list[Device]:
        """Every device of this vendor, with driver name/version and access problems filled in."""
        raise NotImplementedError

    def device_args(self, device: Device) -> list[str]:
        """ffmpeg input arguments that open ``device`` for encoding."""
        raise NotImplementedError

    def upload_filter(self) -> str:
        """Filter moving software frames to the device ('' when the encoder takes system memory)."""
        return ""

    def quality_args(self, codec: str, quality: str) -> list[str]:
        """Encoder arguments for ``quality`` (preview, standard, high)."""
        raise NotImplementedError

    def encoder_device_args(self, device: Device, codec: str) -> list[str]:
        """Encoder options for ``device`` (NVENC's ``-gpu N``, a low-power mode), after the quality ones."""
        return device.encoder_options.get(codec, [])

    def decode_args(self, device: Device) -> list[str]:
        """ffmpeg input arguments for hardware decoding on ``device``."""
        return ["-hwaccel", self.hwaccel, "-hwaccel_device", device.node]

    def diagnose(self, output: str) -> str | None:
        """The meaning of the first of :attr:`diagnoses` that ``output`` matches."""
        return match_diagnosis(self.diagnoses, output)

    # -- shared probe -------------------------------------------------------------------
    def ffmpeg_features(self, ffmpeg: str) -> tuple[set[str], set[str]]:
        """Encoder names and hwaccel names this ffmpeg build has."""
        _, encoders = self.system.run([ffmpeg, "-hide_banner", "-encoders"])
        _, hwaccels = self.system.run([ffmpeg, "-hide_banner", "-hwaccels"])
        names = {m.group(1) for m in re.finditer(r"^\s*[VAS][F.][S.][X.][B.][D.]\s+(\S+)", encoders, re.M)}
        accels = {line.strip() for line in hwaccels.splitlines()[1:] if line.strip()}
        return names, accels

    def test_encode(self, ffmpeg: str, device: Device, codec: str) -> str:
        """'' if a real short encode of ``codec`` on ``device`` works, else the reason."""
        upload = self.upload_filter()
        args = [ffmpeg, "-hide_banner", "-nostdin", "-v", "error", *self.device_args(device), *TEST_SOURCE,
                *(["-vf", upload] if upload else []), "-frames:v", "5", *self.quality_args(codec, "preview"),
                *self.encoder_device_args(device, codec), "-f", "null", "-"]
        status, output = self.system.run(args)
        return "" if status == 0 else diagnose(output, self)

    def test_decode(self, ffmpeg: str, device: Device, sample: str | None) -> str:
        """'' if hardware-decoding an H.264 sample on ``device`` works, else the reason."""
        if sample is None:
            return "no sample to test-decode (libx264 missing)"
        args = [ffmpeg, "-hide_banner", "-nostdin", "-v", "error", *self.decode_args(device), "-i", sample,
                "-f", "null", "-"]
        status, output = self.system.run(args)
        return "" if status == 0 else diagnose(output, self)

    def probe(self, ffmpeg: str) -> AcceleratorProbe:
        encoders, hwaccels = self.ffmpeg_features(ffmpeg)
        devices = self.enumerate_devices()
        if not devices:
            return AcceleratorProbe(self.name, False, self.no_device_reason())
        sample = self._h264_sample(ffmpeg)
        for device in devices:
            if device.problem:
                continue
            for codec, encoder in self.encoders.items():
                if codec in device.encode:  # already ruled out (e.g. the driver lists no encode entrypoint)
                    continue
                device.encode[codec] = (self.test_encode(ffmpeg, device, codec) if encoder in encoders
                                        else f"this ffmpeg build has no {encoder} encoder")
            device.decode["h264"] = (self.test_decode(ffmpeg, device, sample) if self.hwaccel in hwaccels
                                     else f"this ffmpeg build has no {self.hwaccel} hwaccel")
        usable = [d for d in devices if "h264" in d.encoders_ok]
        rows = [asdict(d) for d in devices]
        if not usable:
            reasons = "; ".join(f"{d.node}: {d.problem or d.encode.get('h264', 'not tested')}" for d in devices)
            decoders = [d for d in devices if not d.problem and not d.decode.get("h264", "x")]
            probe = AcceleratorProbe(self.name, False, reasons, devices=rows, decode=bool(decoders))
            if decoders:  # decode-only GPUs still speed up the analysis pass
                probe.device = decoders[0].node
            return probe
        best = usable[0]
        summary = f"{best.node}: {best.product or best.vendor} ({best.driver} {best.driver_version})".strip()
        return AcceleratorProbe(
            self.name, True, summary, encoders={c: self.encoders[c] for c in best.encoders_ok},
            decode=not best.decode.get("h264", "x"), devices=rows, device=best.node)

    def no_device_reason(self) -> str:
        return f"no {self.name} device found"

    def _h264_sample(self, ffmpeg: str) -> str | None:
        path = Path(tempfile.gettempdir()) / "montage-hw-sample.mp4"
        if not path.exists():
            status, _ = self.system.run([ffmpeg, "-hide_banner", "-v", "error", "-y", *TEST_SOURCE, "-c:v", "libx264",
                                         "-pix_fmt", "yuv420p", str(path)])
            if status != 0:
                return None
        return str(path)

    # -- what the renderer uses -----------------------------------------------------------
    def _device(self, probe: AcceleratorProbe) -> Device:
        for row in probe.devices:
            if row["node"] == probe.device:
                return Device(**row)
        raise KeyError(probe.device)

    def encode_args(self, codec: str, quality: str, probe: AcceleratorProbe) -> list[str]:
        return [*self.quality_args(codec, quality), *self.encoder_device_args(self._device(probe), codec)]

    def input_args(self, probe: AcceleratorProbe) -> list[str]:
        return self.device_args(self._device(probe))

    def filter_suffix(self, probe: AcceleratorProbe) -> str:
        return self.upload_filter()

    def analysis_input_args(self, probe: AcceleratorProbe) -> list[str]:
        """Hardware-decode arguments for the analysis pass ([] when decoding does not work)."""
        return self.decode_args(self._device(probe)) if probe.decode and probe.device else []


# -- VA devices: DRM render nodes opened through libva (the VA-API plugin; QSV on Linux) -------------
_VAINFO_DRIVER = re.compile(r"Driver version:\s*(.+?)\s*$", re.M)
_FFMPEG_VA_DRIVER = re.compile(r"VAAPI driver:\s*(.+?)\.?\s*$", re.M)
_VA_ENTRY = re.compile(r"^\s*VAProfile(\w+?)\s*:\s*VAEntrypoint(\w+)", re.M)
#: libva drivers describe themselves as "<vendor> <name> driver for <GPU> - <version>"
_VA_DRIVER_NAME = re.compile(r"\s*\S+\s+(\S+)\s+driver\b")
_VA_DRIVER_VERSION = re.compile(r"(?:- |driver |version )v?(\d+\.\d+(?:\.\d+)?)")
VA_PROFILES = {"h264": ("H264Main", "H264High", "H264ConstrainedBaseline"), "hevc": ("HEVCMain",),
               "av1": ("AV1Profile0",)}


def drm_render_nodes(system: SystemProbe, pci_vendors: dict[str, str]) -> list[tuple[str, str, str]]:
    """(node, vendor, PCI device id) for every /dev/dri/renderD* whose PCI vendor id is in ``pci_vendors``."""
    nodes = []
    for node in system.glob("/dev/dri/renderD*"):
        name = node.rsplit("/", 1)[1]
        vendor = pci_vendors.get(system.read(f"/sys/class/drm/{name}/device/vendor"))
        if vendor:
            nodes.append((node, vendor, system.read(f"/sys/class/drm/{name}/device/device")))
    return nodes


class VaDeviceAccelerator(HardwareAccelerator):
    """Base for accelerators whose devices are DRM render nodes opened through libva; the plugin names its GPUs."""

    #: PCI vendor id as sysfs reads it (``0x8086``) -> the vendor name of the GPUs this accelerator drives
    pci_vendors: ClassVar[dict[str, str]] = {}

    def driver_name(self, description: str) -> str:
        """Short name of the VA driver from its description of itself (a plugin names drivers that say it otherwise)."""
        named = _VA_DRIVER_NAME.match(description)
        return named.group(1) if named else description.split(" driver")[0].strip() or "unknown"

    def va_devices(self) -> list[tuple[Device, set[str]]]:
        """Each render node of this accelerator's vendors (access checked, VA driver read) with its encodable codecs."""
        from .ffmpeg import ffmpeg_binary

        uid, gids = self.system.identity()
        found = []
        for node, vendor, device_id in drm_render_nodes(self.system, self.pci_vendors):
            device = Device(node, vendor, product=f"PCI {device_id}" if device_id else "")
            device.problem = access_problem(node, self.system.stat(node), uid, gids)
            can_encode = set() if device.problem else self.read_va_driver(ffmpeg_binary(), device)
            found.append((device, can_encode))
        return found

    def read_va_driver(self, ffmpeg: str, device: Device) -> set[str]:
        """Fill ``device``'s VA driver from vainfo (else ffmpeg's verbose init); return codecs it can encode.

        An empty set with ``device.problem`` set means the display could not be initialised.
        """
        status, output = self.system.run(["vainfo", "--display", "drm", "--device", device.node])
        if status == 127:  # no vainfo: ask ffmpeg, which prints the driver string at -v verbose
            status, output = self.system.run([ffmpeg, "-hide_banner", "-v", "verbose", "-init_hw_device",
                                              f"vaapi=va:{device.node}", "-f", "lavfi", "-i", "nullsrc=d=0.04",
                                              "-f", "null", "-"])
            match = _FFMPEG_VA_DRIVER.search(output)
            if status != 0 or not match:
                device.problem = diagnose(output, self)
                return set()
            self._set_driver(device, match.group(1))
            return set(CODECS)  # unknown entrypoints: the test encode decides
        match = _VAINFO_DRIVER.search(output)
        if status != 0 or not match:
            device.problem = f"vainfo failed on {device.node}: {diagnose(output, self)}"
            return set()
        self._set_driver(device, match.group(1))
        product = re.search(r" for (.+?)(?: \(| - |$)", match.group(1))
        if product:
            device.product = product.group(1).strip()
        entries = _VA_ENTRY.findall(output)
        can_encode = set()
        for codec, profiles in VA_PROFILES.items():
            kinds = {e for p, e in entries if p in profiles and e.startswith("EncSlice")}
            if kinds:
                can_encode.add(codec)
            if kinds == {"EncSliceLP"}:  # drivers listing only low-power encode (newer Intel GPUs) need that mode
                device.encoder_options[codec] = ["-low_power", "1"]
        return can_encode

    def _set_driver(self, device: Device, description: str) -> None:
        version = _VA_DRIVER_VERSION.search(description)
        device.driver, device.driver_version = self.driver_name(description), version.group(1) if version else ""
