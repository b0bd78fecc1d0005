"""Numba kernels: left–right mirror symmetry (luma and edges) and visual balance.

Symmetry is the Pearson correlation between the frame and its mirror image about a vertical
axis, taken on luma and on gradient magnitude (edges carry the composition; flat colour fields
alone would flatter a frame). The axis may sit up to ``max_shift`` pixels off centre — framing
is rarely pixel-exact — and the best axis wins. 1 is a perfect mirror, 0 no relation.
Balance is a Gaussian of the distance of montage's luma centre of gravity (the core kernel) from
the frame centre (Liu et al. 2010, "Optimizing photo composition"). ``reference.py`` holds the
NumPy twins.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

_OPTS = dict(parallel=True, cache=True, nogil=True)
#: standard deviation of the balance Gaussian, in frame widths/heights
BALANCE_SIGMA = 0.12


@njit(cache=True, nogil=True)
def _half(frame: np.ndarray) -> np.ndarray:
    """2×2 box downsample to float: composition lives at coarse scale, and it quarters the work."""
    h, w = frame.shape[0] // 2, frame.shape[1] // 2
    out = np.empty((h, w))
    for y in range(h):
        for x in range(w):
            out[y, x] = 0.25 * (float(frame[2 * y, 2 * x]) + float(frame[2 * y, 2 * x + 1])
                                + float(frame[2 * y + 1, 2 * x]) + float(frame[2 * y + 1, 2 * x + 1]))
    return out


@njit(cache=True, nogil=True)
def _edges(img: np.ndarray) -> np.ndarray:
    """|∂x| + |∂y| by central differences (0 on the border)."""
    h, w = img.shape
    out = np.zeros((h, w))
    for y in range(1, h - 1):
        for x in range(1, w - 1):
            out[y, x] = abs(img[y, x + 1] - img[y, x - 1]) + abs(img[y + 1, x] - img[y - 1, x])
    return out


@njit(cache=True, nogil=True)
def _mirror_correlation(img: np.ndarray, shift: int) -> float:
    """Correlation of ``img`` with its mirror about the axis at the centre + ``shift`` columns."""
    h, w = img.shape
    # Columns x and partner 2c - x with c = (w - 1) / 2 + shift; keep pairs inside the frame.
    axis2 = w - 1 + 2 * shift
    lo = max(0, axis2 - (w - 1))
    hi = min(w - 1, axis2)
    n = 0
    sa = 0.0
    sb = 0.0
    saa = 0.0
    sbb = 0.0
    sab = 0.0
    for y in range(h):
        for x in range(lo, hi + 1):
            a = img[y, x]
            b = img[y, axis2 - x]
            n += 1
            sa += a
            sb += b
            saa += a * a
            sbb += b * b
            sab += a * b
    if n == 0:
        return 0.0
    cov = sab / n - (sa / n) * (sb / n)
    va = saa / n - (sa / n) ** 2
    vb = sbb / n - (sb / n) ** 2
    if va <= 1e-9 or vb <= 1e-9:
        return 0.0
    return cov / np.sqrt(va * vb)


@njit(**_OPTS)
def symmetry(frames: np.ndarray, previous: np.ndarray, max_shift: int, out: np.ndarray) -> None:
    """out[i] = best over axis shifts of mean(luma correlation, edge correlation), clipped to 0..1.

    Works on the frame downsampled 2×; ``max_shift`` is in those half-resolution pixels.
    """
    n = frames.shape[0]
    for i in prange(n):
        luma = _half(frames[i])
        edges = _edges(luma)
        best = -1.0
        for shift in range(-max_shift, max_shift + 1):
            score = 0.5 * (_mirror_correlation(luma, shift) + _mirror_correlation(edges, shift))
            if score > best:
                best = score
        out[i] = min(1.0, max(0.0, best))


@njit(cache=True, nogil=True)
def balance_from_centre(cog: np.ndarray, out: np.ndarray) -> None:
    """out[i] = exp(-d² / 2σ²), d the distance of the core's centre of gravity (cog[i]) from the centre."""
    for i in range(cog.shape[0]):
        out[i] = np.exp(-(cog[i, 0] ** 2 + cog[i, 1] ** 2) / (2.0 * BALANCE_SIGMA * BALANCE_SIGMA))


def balance(frames: np.ndarray, previous: np.ndarray, out: np.ndarray) -> None:
    """Visual balance per frame, from montage's own centre-of-gravity kernel."""
    from montage_core.analysis.kernels import centre_of_gravity

    cog = np.empty((len(frames), 2))
    centre_of_gravity(frames, previous, cog)
    balance_from_centre(cog, out)
