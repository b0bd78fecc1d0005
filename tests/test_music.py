"""Beats, tempo and energy from music with a known beat."""

from __future__ import annotations

import numpy as np
import pytest

from montage_core.errors import InputError
from montage_core.music import analyze_music
from montage_core.testing import MediaFactory


@pytest.mark.parametrize("bpm", [90, 120, 150])
def test_click_track_beats_within_20ms(media: MediaFactory, bpm: float) -> None:
    path, truth = media.music(bpm=bpm, seconds=16, arc=False)
    music = analyze_music(path)
    found = np.array(music.beats)
    assert music.tempo == pytest.approx(bpm, rel=0.03)
    errors = [float(np.min(np.abs(found - t))) for t in truth]
    assert max(errors) < 0.020, errors
    assert len(found) == len(truth)  # nothing invented in silence either
    assert set(music.downbeats) <= set(music.beats) and len(music.downbeats) >= len(truth) // 4 - 1


def test_energy_follows_loudness(media: MediaFactory) -> None:
    path, _ = media.music(seconds=20, arc=True)
    music = analyze_music(path)
    assert music.duration == pytest.approx(20, abs=0.01)
    assert music.energy_at(12.0) > music.energy_at(1.0) + 0.3  # the climax is louder than the intro
    assert 0.0 <= min(music.energy) and max(music.energy) <= 1.0


def test_any_container_ffmpeg_reads(media: MediaFactory, tmp_path) -> None:
    import subprocess

    wav, truth = media.music(seconds=10, arc=False)
    m4a = tmp_path / "song name with spaces.m4a"
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(wav), "-c:a", "aac", str(m4a)], check=True)
    found = np.array(analyze_music(m4a).beats)
    assert max(float(np.min(np.abs(found - t))) for t in truth) < 0.030  # AAC adds its own priming delay


def test_video_without_audio_is_refused(media: MediaFactory) -> None:
    clip, _ = media.clip([(0, 1.0)])
    with pytest.raises(InputError, match="has no audio stream"):
        analyze_music(clip)
