"""Reframing: each cut shows a box of the output's aspect from its source instead of the whole
frame letterboxed (a 16:9 clip in a 9:16 montage).

``centre`` crops the middle; ``auto`` follows the subject the analysis found (the ``subject``
analyzer's position, kept a few times a second in :attr:`ClipAnalysis.track`): a constant box
while the subject stays within a dead zone, otherwise a smoothed, speed-limited pan. The box is
stored on the cut (:attr:`Cut.crop`) and rendered in the segment's own ffmpeg pass.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from .models import Cut, MediaInfo, Timeline

log = logging.getLogger("montage.reframe")

MODES = ("auto", "centre", "letterbox")
#: aspects closer than this (relative) fit with bars too thin to matter: nothing is cropped
ASPECT_TOLERANCE = 0.05
#: a crop shorter than this share of the output's height, in source pixels, would be scaled up
#: more than 4×: that cut is letterboxed instead. (4:3 SD footage in a 1080x1920 frame is a 480-pixel
#: high crop scaled up 4×: soft, but a letterboxed strip of it would be as soft and a third the size.)
MIN_CROP_SHARE = 0.25
#: the box stays put while the subject wanders within this share of the box's width (or height)
DEAD_ZONE = 0.5
#: the subject's path is averaged over this long before the box follows it (no jitter)
SMOOTH_SECONDS = 1.0
#: the box moves at most this share of the source frame a second (an eased, watchable pan)
MAX_SPEED = 0.6
#: keyframes closer than this to the line through their neighbours are left out
SIMPLIFY = 0.002


def check_mode(mode: str) -> str:
    from .errors import UsageError

    if mode not in MODES:
        raise UsageError(f"unknown reframe mode {mode!r} (known: {', '.join(MODES)})")
    return mode


def needs_reframe(source: tuple[int, int], output: tuple[int, int]) -> bool:
    """Whether the source's aspect differs from the output's by more than ``ASPECT_TOLERANCE``."""
    (sw, sh), (ow, oh) = source, output
    if min(sw, sh, ow, oh) <= 0:
        return False
    ratio = (sw / sh) / (ow / oh)
    return max(ratio, 1 / ratio) - 1 > ASPECT_TOLERANCE


def crop_size(source: tuple[int, int], output: tuple[int, int]) -> tuple[float, float]:
    """The largest box of the output's aspect inside the source frame, normalised (w, h)."""
    (sw, sh), (ow, oh) = source, output
    ratio = (ow / oh) / (sw / sh)
    return (ratio, 1.0) if ratio < 1 else (1.0, 1 / ratio)


def centre_crop(source: tuple[int, int], output: tuple[int, int]) -> list[list[float]]:
    w, h = crop_size(source, output)
    return [[0.0, _r((1 - w) / 2), _r((1 - h) / 2), _r(w), _r(h)]]


def _r(v: float) -> float:
    return round(v, 5)


def _median3(values: list[float]) -> list[float]:
    """A 3-sample running median: a single-sample spike of the position estimate is dropped."""
    if len(values) < 3:
        return list(values)
    return [values[0], *(sorted(values[i - 1:i + 2])[1] for i in range(1, len(values) - 1)), values[-1]]


def _smooth(values: list[float], radius: int) -> list[float]:
    """Centred moving average; the ends are extended by point reflection, so a steady motion is
    followed without lag up to the last sample (plain edge padding would slow the ends)."""
    n = len(values)
    radius = min(radius, n - 1)
    if radius <= 0:
        return list(values)
    first, last = values[0], values[-1]
    ext = [2 * first - values[k] for k in range(radius, 0, -1)] + list(values) + \
        [2 * last - values[n - 1 - k] for k in range(1, radius + 1)]
    width = 2 * radius + 1
    return [sum(ext[i:i + width]) / width for i in range(n)]


def _limit_speed(offsets: list[float], times: list[float]) -> list[float]:
    """At most ``MAX_SPEED`` a second between neighbouring keyframes, forwards then backwards, so
    a jump the smoothing left is spread over the time around it."""
    out = list(offsets)
    for order in (range(1, len(out)), range(len(out) - 2, -1, -1)):
        for k in order:
            j = k - 1 if order.step == 1 else k + 1
            step = MAX_SPEED * abs(times[k] - times[j])
            out[k] = min(max(out[k], out[j] - step), out[j] + step)
    return out


def _simplify(keys: list[list[float]]) -> list[list[float]]:
    """Leave out keyframes that lie (within ``SIMPLIFY``) on the line between their neighbours."""
    kept = [keys[0]]
    for k in range(1, len(keys) - 1):
        a, b, c = kept[-1], keys[k], keys[k + 1]
        share = (b[0] - a[0]) / (c[0] - a[0])
        if any(abs(a[i] + (c[i] - a[i]) * share - b[i]) > SIMPLIFY for i in (1, 2)):
            kept.append(b)
    if len(keys) > 1:
        kept.append(keys[-1])
    if all(abs(k[1] - kept[0][1]) <= SIMPLIFY and abs(k[2] - kept[0][2]) <= SIMPLIFY for k in kept):
        return [[0.0, *kept[0][1:]]]
    return kept


def _axis_path(centres: list[float], size: float, radius: int, times: list[float]) -> list[float]:
    """The box's offset along one axis for each sample: constant while the subject stays within the
    dead zone, else the smoothed, speed-limited path; always inside the frame."""
    if size >= 1.0 - 1e-9:
        return [0.0] * len(centres)

    def inside(offset: float) -> float:
        return min(max(offset, 0.0), 1.0 - size)

    centres = _median3(centres)
    lo, hi = min(centres), max(centres)
    if hi - lo <= DEAD_ZONE * size:
        return [inside((lo + hi) / 2 - size / 2)] * len(centres)
    smoothed = _smooth(centres, radius)
    return _limit_speed([inside(c - size / 2) for c in smoothed], times)


def follow_subject(track: Mapping[str, Any], source_in: float, source_out: float,
                   source: tuple[int, int], output: tuple[int, int]) -> list[list[float]]:
    """Keyframes of a box of the output's aspect following the subject over ``source_in``..
    ``source_out`` of the clip (times from ``source_in``); the centre crop when the track has
    no subject position there."""
    w, h = crop_size(source, output)
    rate = float(track.get("fps") or 0)
    xs, ys = track.get("subject_x") or [], track.get("subject_y") or []
    if rate <= 0 or not xs or len(xs) != len(ys):
        return centre_crop(source, output)
    first = max(0, int(math.floor(source_in * rate)))
    last = min(len(xs), int(math.ceil(source_out * rate)))
    if last <= first:
        return centre_crop(source, output)
    duration = source_out - source_in
    # A sample averages 1/rate s of frames: it stands for the middle of that stretch.
    times = [min(max((k + 0.5) / rate - source_in, 0.0), duration) for k in range(first, last)]
    radius = max(1, int(round(SMOOTH_SECONDS * rate / 2)))
    px = _axis_path([0.5 + xs[k] for k in range(first, last)], w, radius, times)
    py = _axis_path([0.5 + ys[k] for k in range(first, last)], h, radius, times)
    keys: list[list[float]] = []
    for t, x, y in zip(times, px, py):
        if keys and t <= keys[-1][0]:
            keys[-1] = [keys[-1][0], _r(x), _r(y), _r(w), _r(h)]
        else:
            keys.append([_r(t), _r(x), _r(y), _r(w), _r(h)])
    keys[0][0] = 0.0
    return _simplify(keys)


def value_at(keys: list[list[float]], t: float) -> list[float]:
    """The box ``[x, y, w, h]`` at ``t`` seconds: linear between keyframes, held outside them."""
    if t <= keys[0][0]:
        return list(keys[0][1:])
    for a, b in zip(keys, keys[1:]):
        if t <= b[0]:
            share = (t - a[0]) / (b[0] - a[0])
            return [a[i] + (b[i] - a[i]) * share for i in range(1, 5)]
    return list(keys[-1][1:])


def shift_keys(keys: list[list[float]] | None, offset: float) -> list[list[float]] | None:
    """The keyframes as seen from ``offset`` seconds later (a segment that starts into its cut)."""
    if not keys or offset <= 0:
        return keys
    later = [[_r(k[0] - offset), *k[1:]] for k in keys if k[0] - offset > 0]
    return [[0.0, *(_r(v) for v in value_at(keys, offset))], *later]


def _piecewise(keys: list[list[float]], i: int) -> str:
    """An ffmpeg expression of ``t``: keyframe value ``i`` linearly interpolated, held at the ends.
    A flat sum of clipped ramps rather than nested ``if`` s: any number of keyframes stays shallow."""
    terms = [f"{keys[0][i]:.5f}"]
    for a, b in zip(keys, keys[1:]):
        if b[i] != a[i]:
            terms.append(f"({b[i] - a[i]:+.5f})*clip((t-{a[0]:.4f})/{b[0] - a[0]:.4f},0,1)")
    return "+".join(terms).replace("+(+", "+(").replace("+(-", "+(-")


def crop_filter(keys: list[list[float]]) -> str:
    """The crop filter showing the keyframed box (even size, so that 4:2:0 survives)."""
    w, h = keys[0][3], keys[0][4]
    return (f"crop=w='2*trunc(iw*{w:.5f}/2)':h='2*trunc(ih*{h:.5f}/2)'"
            f":x='iw*({_piecewise(keys, 1)})':y='ih*({_piecewise(keys, 2)})'")


def reframe_timeline(timeline: Timeline, mode: str, media: Mapping[str, MediaInfo],
                     tracks: Mapping[str, Mapping[str, Any]] | None = None) -> Timeline:
    """The timeline with each cut's ``crop`` set for ``mode``: ``letterbox`` clears them; ``centre``
    and ``auto`` crop the cuts whose source's aspect differs from the output's (``auto`` following
    the subject in ``tracks``, by source path). A cut whose crop would be smaller than
    ``MIN_CROP_SHARE`` of the output's height is letterboxed, with one warning per clip."""
    check_mode(mode)
    output = (timeline.width, timeline.height)
    warned: set[str] = set()
    cuts: list[Cut] = []
    for cut in timeline.cuts:
        info = media.get(cut.source)
        crop = None
        if mode != "letterbox" and info is not None and needs_reframe((info.width, info.height), output):
            source = (info.width, info.height)
            w, h = crop_size(source, output)
            if h * info.height < MIN_CROP_SHARE * timeline.height:
                if cut.source not in warned:
                    warned.add(cut.source)
                    log.warning("%s is %dx%d: a %dx%d crop of it would be scaled up too far to fill %dx%d; "
                                "letterboxing it instead", cut.source, info.width, info.height,
                                round(w * info.width), round(h * info.height), timeline.width, timeline.height)
            elif mode == "centre":
                crop = centre_crop(source, output)
            else:
                track = (tracks or {}).get(cut.source) or {}
                crop = follow_subject(track, cut.source_in, cut.source_out, source, output)
        cuts.append(replace(cut, crop=crop))
    return replace(timeline, cuts=cuts)
