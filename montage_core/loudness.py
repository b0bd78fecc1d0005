"""The montage's sound: the music cut to the montage's length, faded, and normalised to a loudness target.

Every platform normalises what it plays (YouTube, Spotify and TikTok to about −14 LUFS), so a
louder master only gets turned down and a quieter one sounds weak next to others. The music is
measured first (EBU R128 with ffmpeg's ``loudnorm``, over exactly the stretch and fades the montage
uses), then the second pass applies one linear gain with those measurements, keeping the music's
dynamics; only a track whose peaks would pass the true-peak ceiling is limited as well.
"""

from __future__ import annotations

import json
import logging
import math
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .errors import MontageError, UsageError

log = logging.getLogger("montage.render")

#: integrated loudness of every montage unless ``--loudness`` says otherwise (the streaming platforms' level)
DEFAULT_LOUDNESS = -14.0
#: the true-peak ceiling asked of loudnorm: 0.5 dB below the −1 dBTP delivery limit, for the AAC encoder's overshoot
TRUE_PEAK = -1.5
#: loudness range kept (loudnorm's default): wide enough that linear gain is used for music
LOUDNESS_RANGE = 11.0
#: the audio fade-in at the very start: a few frames, so the first sample never clicks
FADE_IN_SECONDS = 0.05
#: below this integrated level a track is silence: nothing to normalise
SILENCE_LUFS = -60.0


def parse_loudness(value: str | float | None) -> float | None:
    """``--loudness``: a target in LUFS (−40 … −5) or ``off``."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("off", "none", "")):
        return None
    try:
        target = float(value)
    except ValueError:
        raise UsageError(f"--loudness {value!r} is not a number of LUFS or 'off' (e.g. -14)") from None
    if not -40.0 <= target <= -5.0:
        raise UsageError(f"--loudness {target:g} is out of range (-40..-5 LUFS, or off)")
    return target


@dataclass(frozen=True)
class Fades:
    """The music's fades on the montage's timeline, in seconds."""

    duration: float
    fade_out: float

    def filters(self) -> list[str]:
        chain = [f"afade=t=in:st=0:d={min(FADE_IN_SECONDS, self.duration / 4):.3f}"]
        if self.fade_out > 0:
            chain.append(f"afade=t=out:st={self.duration - self.fade_out:.6f}:d={self.fade_out:.6f}")
        return chain


def measure(music: str | Path, fades: Fades, target: float) -> dict[str, float]:
    """loudnorm's first pass over the stretch of ``music`` the montage uses, fades included."""
    from .ffmpeg import ffmpeg_binary
    from .procs import child_options

    graph = ",".join([*fades.filters(), f"loudnorm=I={target:g}:TP={TRUE_PEAK:g}:LRA={LOUDNESS_RANGE:g}"
                                        ":print_format=json"])
    cmd = [ffmpeg_binary(), "-hide_banner", "-nostdin", "-loglevel", "info", "-t", f"{fades.duration:.6f}",
           "-i", str(music), "-map", "0:a:0", "-af", graph, "-f", "null", "-"]
    proc = subprocess.run(cmd, capture_output=True, text=True, errors="replace", **child_options())
    found = re.findall(r"\{[^{}]*\"input_i\"[^{}]*\}", proc.stderr)
    if proc.returncode != 0 or not found:
        raise MontageError(f"{music}: measuring its loudness failed: {proc.stderr.strip().splitlines()[-1:]}")
    raw = json.loads(found[-1])
    return {key: float(raw[key]) for key in ("input_i", "input_tp", "input_lra", "input_thresh", "target_offset")}


def music_filter(fades: Fades, target: float | None, measured: dict[str, float] | None, *, gain: float = 0.0,
                 ceiling: float = TRUE_PEAK) -> str:
    """The ``-af`` chain for the montage's music: fades, then (with a ``target`` and the music's
    :func:`measure` result) two-pass loudness normalisation, resampled back to 48 kHz (loudnorm
    works at 192 kHz). ``gain`` (dB) is added before the true-peak limiter at ``ceiling`` dBTP: a
    correction that raises the loudness while the limiter still holds the peaks."""
    chain = fades.filters()
    if target is None or measured is None or is_silent(measured):
        return ",".join(chain)
    chain.append(
        f"loudnorm=I={target:g}:TP={TRUE_PEAK:g}:LRA={LOUDNESS_RANGE:g}:measured_I={measured['input_i']:.2f}"
        f":measured_TP={measured['input_tp']:.2f}:measured_LRA={measured['input_lra']:.2f}"
        f":measured_thresh={measured['input_thresh']:.2f}:offset={measured['target_offset']:.2f}:linear=true")
    if gain:
        chain.append(f"volume={gain:.2f}dB")
    # loudnorm's own limiter lets true peaks through on dense masters: limit at its 192 kHz rate,
    # where sample peaks are true peaks, before going back to 48 kHz
    chain.append(f"alimiter=limit={10 ** (ceiling / 20):.4f}:attack=1:release=50:level=disabled")
    chain.append("aformat=sample_rates=48000:channel_layouts=stereo|mono")  # an unnamed layout (a mono WAV) too
    return ",".join(chain)


def is_silent(measured: dict[str, float]) -> bool:
    """Whether :func:`measure` found silence: nothing to normalise."""
    return not math.isfinite(measured["input_i"]) or measured["input_i"] < SILENCE_LUFS


@dataclass(frozen=True)
class Loudness:
    """EBU R128 figures of a finished file's sound."""

    integrated: float
    true_peak: float


def measure_file(path: str | Path) -> Loudness:
    """Integrated loudness (LUFS) and true peak (dBTP) of ``path``'s first audio stream."""
    from .ffmpeg import ffmpeg_binary
    from .procs import child_options

    cmd = [ffmpeg_binary(), "-hide_banner", "-nostdin", "-nostats", "-i", str(path), "-map", "0:a:0",
           "-af", "ebur128=peak=true", "-f", "null", "-"]
    proc = subprocess.run(cmd, capture_output=True, text=True, errors="replace", **child_options())
    summary = proc.stderr[proc.stderr.rfind("Summary:"):]
    integrated = re.search(r"I:\s+(-?[\d.]+|-inf) LUFS", summary)
    peak = re.search(r"True peak:\s+Peak:\s+(-?[\d.]+|-inf) dBFS", summary)
    if proc.returncode != 0 or not integrated or not peak:
        raise MontageError(f"{path}: measuring its loudness failed: {proc.stderr.strip().splitlines()[-1:]}")
    return Loudness(float(integrated.group(1)), float(peak.group(1)))


#: the delivery limit for true peaks (streaming platforms ask for −1 dBTP)
DELIVERY_PEAK = -1.0


def master_music(music: str | Path, fades: Fades, target: float | None, out: Path, bitrate: str) -> Loudness:
    """Encode the montage's music to ``out`` (AAC): faded, at ``target`` LUFS, its true peak checked
    on the encoded result and turned down when the encoder's overshoot passed the delivery limit."""
    from .ffmpeg import run_ffmpeg

    import os

    measured_music = None if target is None else measure(music, fades, target)
    if target is not None and measured_music is not None:
        if is_silent(measured_music):
            log.info("%s: silent (%.1f LUFS); left as it is", music, measured_music["input_i"])
        else:
            log.info("music loudness %.1f LUFS, true peak %.1f dBTP → %g LUFS", measured_music["input_i"],
                     measured_music["input_tp"], target)
    gain, ceiling, tries = 0.0, TRUE_PEAK, []
    for attempt in range(4):
        chain = music_filter(fades, target, measured_music, gain=gain, ceiling=ceiling)
        encoded = out.with_name(f"{out.stem}.{attempt}{out.suffix}")
        run_ffmpeg(["-t", f"{fades.duration:.6f}", "-i", str(music), "-map", "0:a:0",
                    "-af", chain, "-c:a", "aac", "-b:a", bitrate, "-f", "mp4", str(encoded)],
                   what=f"encoding the music {music}")
        measured = measure_file(encoded)
        tries.append((measured, encoded))
        if target is None or not math.isfinite(measured.integrated) or "loudnorm" not in chain:
            break
        # What the encoded sound needs: the limiter lower when the encoder's overshoot passed the
        # delivery limit; more gain into the limiter while the loudness falls short (a dense track
        # whose linear gain loudnorm had to cap at its peaks), less when it overshoots. The
        # encoder's peaks do not follow exactly, so the best of the tries is kept.
        short = target - measured.integrated
        if measured.true_peak <= DELIVERY_PEAK and abs(short) < 0.3:
            break
        if measured.true_peak > DELIVERY_PEAK:
            ceiling -= measured.true_peak - DELIVERY_PEAK + 0.1
        if abs(short) >= 0.3:
            gain += short
    within = [t for t in tries if t[0].true_peak <= DELIVERY_PEAK]
    measured, best = (min(within, key=lambda t: abs(t[0].integrated - (target or 0.0))) if within
                      else min(tries, key=lambda t: t[0].true_peak))
    os.replace(best, out)
    for _, encoded in tries:
        encoded.unlink(missing_ok=True)
    log.info("montage sound: %.1f LUFS, true peak %.1f dBTP", measured.integrated, measured.true_peak)
    return measured
