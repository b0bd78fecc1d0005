"""Numba kernels over batches of downscaled luma frames (uint8, shape (n, h, w)).

Each kernel takes the batch and the frame before it (``previous``; an empty (0, 0) array for
the first batch of a clip) and writes one value per frame into ``out``. They run with
``nogil=True`` so the decode reader thread keeps filling the next batch meanwhile, and
``parallel=True`` over the frames of a batch. ``reference.py`` holds a plain NumPy twin of
each, used by the tests and ``bench/`` only.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

HIST_BINS = 64
#: a hard cut moves at least this share of the luma histogram (or of mean luma, / 0.25)
_OPTS = dict(parallel=True, cache=True, nogil=True, fastmath=False)


@njit(**_OPTS)
def brightness(frames: np.ndarray, previous: np.ndarray, out: np.ndarray) -> None:
    """Mean luma in 0..1."""
    n, h, w = frames.shape
    for i in prange(n):
        total = 0
        for y in range(h):
            for x in range(w):
                total += frames[i, y, x]
        out[i] = total / (h * w * 255.0)


@njit(**_OPTS)
def sharpness(frames: np.ndarray, previous: np.ndarray, out: np.ndarray) -> None:
    """Variance of the 4-neighbour Laplacian over the interior, scaled to roughly 0..1."""
    n, h, w = frames.shape
    count = (h - 2) * (w - 2)
    for i in prange(n):
        s = 0.0
        s2 = 0.0
        for y in range(1, h - 1):
            for x in range(1, w - 1):
                lap = (4.0 * frames[i, y, x] - frames[i, y - 1, x] - frames[i, y + 1, x]
                       - frames[i, y, x - 1] - frames[i, y, x + 1])
                s += lap
                s2 += lap * lap
        mean = s / count
        out[i] = (s2 / count - mean * mean) / (255.0 * 255.0)


@njit(cache=True, nogil=True)
def _mean_abs_difference(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute luma difference of two frames, 0..1."""
    h, w = a.shape
    total = 0
    for y in range(h):
        for x in range(w):
            total += abs(np.int32(a[y, x]) - np.int32(b[y, x]))
    return total / (h * w * 255.0)


@njit(**_OPTS)
def motion(frames: np.ndarray, previous: np.ndarray, out: np.ndarray) -> None:
    """Mean absolute luma difference to the previous frame, 0..1 (0 for a clip's first frame)."""
    n, h, w = frames.shape
    has_previous = previous.shape[0] == h and previous.shape[1] == w
    for i in prange(n):
        if i == 0 and not has_previous:
            out[i] = 0.0
        else:
            out[i] = _mean_abs_difference(frames[i], previous if i == 0 else frames[i - 1])


@njit(cache=True, nogil=True)
def _histogram(frame: np.ndarray, out: np.ndarray) -> None:
    """HIST_BINS-bin luma histogram of one frame (counts) into ``out``."""
    shift = 8 - int(np.log2(HIST_BINS))
    out[:] = 0
    h, w = frame.shape
    for y in range(h):
        for x in range(w):
            out[frame[y, x] >> shift] += 1


@njit(**_OPTS)
def cut_score(frames: np.ndarray, previous: np.ndarray, out: np.ndarray) -> None:
    """Shot-boundary score 0..1: geometric mean of histogram change and pixel change.

    A cut changes both what is in the picture (pixels) and its tonal make-up (histogram);
    fast motion moves pixels but keeps the histogram, a flash shifts the histogram but
    keeps the layout of edges less often. Needing both suppresses either false alarm.
    One parallel section per batch: each frame's task histograms its predecessor itself.
    """
    n, h, w = frames.shape
    has_previous = previous.shape[0] == h and previous.shape[1] == w
    for i in prange(n):
        if i == 0 and not has_previous:
            out[i] = 0.0
            continue
        before = previous if i == 0 else frames[i - 1]
        hist_now = np.empty(HIST_BINS, np.int64)
        hist_before = np.empty(HIST_BINS, np.int64)
        _histogram(frames[i], hist_now)
        _histogram(before, hist_before)
        d = 0
        for b in range(HIST_BINS):
            d += abs(hist_now[b] - hist_before[b])
        hist_change = 0.5 * d / (h * w)
        pixel_change = min(1.0, _mean_abs_difference(frames[i], before) / 0.25)
        out[i] = np.sqrt(hist_change * pixel_change)


@njit(**_OPTS)
def centre_of_gravity(frames: np.ndarray, previous: np.ndarray, out: np.ndarray) -> None:
    """Luma-weighted centroid as offsets from the frame centre; out[:, 0]=x, out[:, 1]=y in -0.5..0.5."""
    n, h, w = frames.shape
    for i in prange(n):
        # Integer sums are exact and let the inner loop vectorise.
        total = 0
        sx = 0
        sy = 0
        for y in range(h):
            row = 0
            for x in range(w):
                v = np.int64(frames[i, y, x])
                row += v
                sx += x * v
            total += row
            sy += y * row
        if total == 0:
            out[i, 0] = 0.0
            out[i, 1] = 0.0
        else:
            out[i, 0] = (sx / total - (w - 1) / 2.0) / w
            out[i, 1] = (sy / total - (h - 1) / 2.0) / h


@njit(**_OPTS)
def subject(frames: np.ndarray, previous: np.ndarray, out: np.ndarray) -> None:
    """Where the subject is: the centroid of what stands out (luma beyond the frame's mean plus one
    standard deviation, squared) and of what moves (the change from the frame before, squared), as
    offsets from the frame centre like :func:`centre_of_gravity`; the centre when nothing does.

    The plain luma centroid is pulled to the middle by the background (a small bright subject
    moves it a tenth of its own offset); the squared excess follows the subject itself.
    """
    n, h, w = frames.shape
    has_previous = previous.shape[0] == h and previous.shape[1] == w
    for i in prange(n):
        s1 = 0.0
        s2 = 0.0
        for y in range(h):
            for x in range(w):
                v = np.float64(frames[i, y, x])
                s1 += v
                s2 += v * v
        mean = s1 / (h * w)
        # A textured background sits within about a standard deviation of the mean; a subject
        # stands out beyond it.
        level = mean + np.sqrt(max(0.0, s2 / (h * w) - mean * mean))
        total = 0.0
        sx = 0.0
        sy = 0.0
        for y in range(h):
            for x in range(w):
                v = np.float64(frames[i, y, x])
                e = v - level if v > level else 0.0
                weight = e * e
                if i > 0 or has_previous:
                    before = np.float64(frames[i - 1, y, x]) if i > 0 else np.float64(previous[y, x])
                    d = v - before
                    weight += d * d
                total += weight
                sx += x * weight
                sy += y * weight
        if total <= 0.0:
            out[i, 0] = 0.0
            out[i, 1] = 0.0
        else:
            out[i, 0] = (sx / total - (w - 1) / 2.0) / w
            out[i, 1] = (sy / total - (h - 1) / 2.0) / h


@njit(**_OPTS)
def layout(frames: np.ndarray, previous: np.ndarray, out: np.ndarray) -> None:
    """Mean luma (0..1) of each cell of a 4×4 grid: a tiny picture of the composition, out[:, 16]."""
    n, h, w = frames.shape
    for i in prange(n):
        for gy in range(4):
            for gx in range(4):
                y0, y1 = gy * h // 4, (gy + 1) * h // 4
                x0, x1 = gx * w // 4, (gx + 1) * w // 4
                total = 0
                for y in range(y0, y1):
                    for x in range(x0, x1):
                        total += frames[i, y, x]
                out[i, gy * 4 + gx] = total / ((y1 - y0) * (x1 - x0) * 255.0)
