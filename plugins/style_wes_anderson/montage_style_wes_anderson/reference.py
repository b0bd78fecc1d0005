"""Plain NumPy twins of the symmetry and balance kernels (tests and bench/ only)."""

from __future__ import annotations

import numpy as np

from .kernels import BALANCE_SIGMA


def _half(frame: np.ndarray) -> np.ndarray:
    h, w = frame.shape[0] // 2, frame.shape[1] // 2
    f = frame[: 2 * h, : 2 * w].astype(np.float64)
    return 0.25 * (f[0::2, 0::2] + f[0::2, 1::2] + f[1::2, 0::2] + f[1::2, 1::2])


def _edges(f: np.ndarray) -> np.ndarray:
    out = np.zeros_like(f)
    out[1:-1, 1:-1] = np.abs(f[1:-1, 2:] - f[1:-1, :-2]) + np.abs(f[2:, 1:-1] - f[:-2, 1:-1])
    return out


def _mirror_correlation(img: np.ndarray, shift: int) -> float:
    w = img.shape[1]
    axis2 = w - 1 + 2 * shift
    lo, hi = max(0, axis2 - (w - 1)), min(w - 1, axis2)
    xs = np.arange(lo, hi + 1)
    a, b = img[:, xs].ravel(), img[:, axis2 - xs].ravel()
    if a.size == 0 or a.var() <= 1e-9 or b.var() <= 1e-9:
        return 0.0
    return float(((a * b).mean() - a.mean() * b.mean()) / np.sqrt(a.var() * b.var()))


def symmetry(frames: np.ndarray, previous: np.ndarray, max_shift: int) -> np.ndarray:
    out = np.empty(len(frames))
    for i, frame in enumerate(frames):
        luma = _half(frame)
        edges = _edges(luma)
        best = max(0.5 * (_mirror_correlation(luma, s) + _mirror_correlation(edges, s))
                   for s in range(-max_shift, max_shift + 1))
        out[i] = min(1.0, max(0.0, best))
    return out


def balance(frames: np.ndarray, previous: np.ndarray) -> np.ndarray:
    from montage_core.analysis.reference import centre_of_gravity

    cog = centre_of_gravity(frames, previous)
    return np.exp(-(cog[:, 0] ** 2 + cog[:, 1] ** 2) / (2 * BALANCE_SIGMA**2))
