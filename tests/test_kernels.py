"""Numba kernels against their NumPy twins, and against features with known values."""

from __future__ import annotations

import numpy as np
import pytest

from montage_core.analysis import kernels, reference

EMPTY = np.empty((0, 0), np.uint8)
SCALAR = ["brightness", "sharpness", "motion", "cut_score"]


@pytest.mark.parametrize("name", SCALAR)
@pytest.mark.parametrize("with_previous", [True, False])
def test_kernel_matches_numpy_twin(name: str, with_previous: bool) -> None:
    rng = np.random.default_rng(len(name))
    frames = rng.integers(0, 256, (12, 72, 128), dtype=np.uint8)
    previous = rng.integers(0, 256, (72, 128), dtype=np.uint8) if with_previous else EMPTY
    out = np.empty(len(frames))
    getattr(kernels, name)(frames, previous, out)
    np.testing.assert_allclose(out, getattr(reference, name)(frames, previous), rtol=1e-9, atol=1e-12)


def test_centre_of_gravity_matches_twin_and_points_at_the_light() -> None:
    rng = np.random.default_rng(3)
    frames = rng.integers(0, 256, (6, 60, 100), dtype=np.uint8)
    frames[0] = 0
    frames[0, :, 80:] = 255  # light on the right
    frames[1] = 0  # black frame: centre
    out = np.empty((len(frames), 2))
    kernels.centre_of_gravity(frames, EMPTY, out)
    np.testing.assert_allclose(out, reference.centre_of_gravity(frames, EMPTY), atol=1e-12)
    assert out[0, 0] > 0.3 and abs(out[0, 1]) < 1e-9
    assert tuple(out[1]) == (0.0, 0.0)


def test_features_have_their_meaning() -> None:
    flat = np.full((2, 40, 40), 128, np.uint8)
    noisy = np.random.default_rng(0).integers(0, 256, (2, 40, 40), dtype=np.uint8)
    out = np.empty(2)
    kernels.brightness(flat, EMPTY, out)
    assert out[0] == pytest.approx(128 / 255)
    kernels.sharpness(flat, EMPTY, out)
    assert out[0] == 0.0
    kernels.sharpness(noisy, EMPTY, out)
    assert out[0] > 0.05
    kernels.motion(flat, EMPTY, out)
    assert list(out) == [0.0, 0.0]
    kernels.cut_score(np.stack([flat[0], noisy[0]]), EMPTY, out)
    assert out[0] == 0.0 and out[1] > 0.5


def test_layout_matches_twin_and_sees_where_the_light_is() -> None:
    frames = np.random.default_rng(5).integers(0, 256, (4, 73, 130), dtype=np.uint8)
    frames[0] = 0
    frames[0, :18, :32] = 255  # top-left cell lit
    out = np.empty((4, 16))
    kernels.layout(frames, EMPTY, out)
    np.testing.assert_allclose(out, reference.layout(frames, EMPTY), atol=1e-12)
    assert out[0, 0] == 1.0 and out[0, 1:].max() < 0.2
