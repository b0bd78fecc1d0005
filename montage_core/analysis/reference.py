"""Plain NumPy twins of the Numba kernels: the definition the kernels are tested and benched against."""

from __future__ import annotations

import numpy as np

from .kernels import HIST_BINS


def _has_previous(frames: np.ndarray, previous: np.ndarray) -> bool:
    return previous.shape == frames.shape[1:]


def brightness(frames: np.ndarray, previous: np.ndarray) -> np.ndarray:
    return frames.reshape(len(frames), -1).mean(axis=1) / 255.0


def sharpness(frames: np.ndarray, previous: np.ndarray) -> np.ndarray:
    f = frames.astype(np.float64)
    lap = 4 * f[:, 1:-1, 1:-1] - f[:, :-2, 1:-1] - f[:, 2:, 1:-1] - f[:, 1:-1, :-2] - f[:, 1:-1, 2:]
    return lap.reshape(len(frames), -1).var(axis=1) / (255.0 * 255.0)


def _pairs(frames: np.ndarray, previous: np.ndarray) -> tuple[np.ndarray, bool]:
    has = _has_previous(frames, previous)
    before = np.concatenate([previous[None] if has else frames[:1], frames[:-1]])
    return before, has


def motion(frames: np.ndarray, previous: np.ndarray) -> np.ndarray:
    before, has = _pairs(frames, previous)
    diff = np.abs(frames.astype(np.int32) - before.astype(np.int32))
    out = diff.reshape(len(frames), -1).mean(axis=1) / 255.0
    if not has:
        out[0] = 0.0
    return out


def luma_histograms(frames: np.ndarray) -> np.ndarray:
    shift = 8 - int(np.log2(HIST_BINS))
    binned = (frames >> shift).reshape(len(frames), -1)
    return np.stack([np.bincount(row, minlength=HIST_BINS) for row in binned]) / binned.shape[1]


def cut_score(frames: np.ndarray, previous: np.ndarray) -> np.ndarray:
    before, has = _pairs(frames, previous)
    hist_change = 0.5 * np.abs(luma_histograms(frames) - luma_histograms(before)).sum(axis=1)
    pixel_change = np.minimum(1.0, motion(frames, previous) / 0.25)
    out = np.sqrt(hist_change * pixel_change)
    if not has:
        out[0] = 0.0
    return out


def centre_of_gravity(frames: np.ndarray, previous: np.ndarray) -> np.ndarray:
    n, h, w = frames.shape
    f = frames.astype(np.float64)
    total = f.reshape(n, -1).sum(axis=1)
    safe = np.where(total == 0, 1.0, total)
    cx = (f.sum(axis=1) * np.arange(w)).sum(axis=1) / safe
    cy = (f.sum(axis=2) * np.arange(h)).sum(axis=1) / safe
    out = np.stack([(cx - (w - 1) / 2) / w, (cy - (h - 1) / 2) / h], axis=1)
    out[total == 0] = 0.0
    return out


def subject(frames: np.ndarray, previous: np.ndarray) -> np.ndarray:
    n, h, w = frames.shape
    f = frames.astype(np.float64)
    level = (f.reshape(n, -1).mean(axis=1) + f.reshape(n, -1).std(axis=1))[:, None, None]
    weight = np.maximum(f - level, 0.0) ** 2
    before = np.concatenate([previous[None].astype(np.float64), f[:-1]]) if previous.shape == (h, w) else \
        np.concatenate([f[:1], f[:-1]])
    weight += (f - before) ** 2
    total = weight.reshape(n, -1).sum(axis=1)
    safe = np.where(total <= 0, 1.0, total)
    cx = (weight.sum(axis=1) * np.arange(w)).sum(axis=1) / safe
    cy = (weight.sum(axis=2) * np.arange(h)).sum(axis=1) / safe
    out = np.stack([(cx - (w - 1) / 2) / w, (cy - (h - 1) / 2) / h], axis=1)
    out[total <= 0] = 0.0
    return out


def layout(frames: np.ndarray, previous: np.ndarray) -> np.ndarray:
    n, h, w = frames.shape
    out = np.empty((n, 16))
    for gy in range(4):
        for gx in range(4):
            cell = frames[:, gy * h // 4 : (gy + 1) * h // 4, gx * w // 4 : (gx + 1) * w // 4]
            out[:, gy * 4 + gx] = cell.reshape(n, -1).mean(axis=1) / 255.0
    return out
