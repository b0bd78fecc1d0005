"""Music analysis in chunks: librosa's whole-track results, in memory bounded by the track length."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from montage_core import music
from montage_core.music import HOP, SAMPLE_RATE, analyze_music, decode_audio
from montage_core.testing import MediaFactory

#: frames per chunk, small enough that a 40 s track crosses dozens of chunk boundaries
SMALL_CHUNK = 257


@pytest.fixture(scope="module")
def track(media: MediaFactory) -> np.ndarray:
    """40 s of the fixture music (quiet intro, loud climax) decoded as analyze_music decodes it."""
    path, _ = media.music(bpm=128, seconds=40, arc=True)
    return decode_audio(path)


def test_chunked_onset_envelopes_equal_librosa(track: np.ndarray) -> None:
    import librosa

    broad, low = music.onset_envelopes(track, [music.BROADBAND, music.LOW_BAND], chunk_frames=SMALL_CHUNK)
    fine = music.onset_envelopes(track, [music.FINE], n_fft=music.FINE_N_FFT, hop=HOP // 2,
                                 chunk_frames=SMALL_CHUNK + 100)[0]
    expected = {
        "broad": librosa.onset.onset_strength(y=track, sr=SAMPLE_RATE, hop_length=HOP, aggregate=np.median),
        "low": librosa.onset.onset_strength(y=track, sr=SAMPLE_RATE, hop_length=HOP, fmax=200.0, n_mels=32),
        "fine": librosa.onset.onset_strength(y=track, sr=SAMPLE_RATE, hop_length=HOP // 2, n_fft=512, n_mels=64),
    }
    for name, ours in {"broad": broad, "low": low, "fine": fine}.items():
        assert ours.shape == expected[name].shape, name
        np.testing.assert_allclose(ours, expected[name], rtol=1e-5, atol=1e-5, err_msg=name)


def test_chunked_tempo_and_beats_equal_librosa(track: np.ndarray) -> None:
    import librosa

    env = librosa.onset.onset_strength(y=track, sr=SAMPLE_RATE, hop_length=HOP, aggregate=np.median)
    tempo = music.estimate_tempo(env, chunk_columns=300)
    assert tempo == float(librosa.feature.tempo(onset_envelope=env, sr=SAMPLE_RATE, hop_length=HOP)[0])
    assert tempo == pytest.approx(128, rel=0.03)
    _, expected = librosa.beat.beat_track(onset_envelope=env, sr=SAMPLE_RATE, hop_length=HOP, trim=False)
    _, ours = librosa.beat.beat_track(onset_envelope=env, sr=SAMPLE_RATE, hop_length=HOP,
                                      bpm=np.atleast_1d(tempo), trim=False)
    np.testing.assert_array_equal(ours, expected)


def test_chunked_rms_equals_librosa(track: np.ndarray) -> None:
    import librosa

    hop = SAMPLE_RATE // 4
    expected = librosa.feature.rms(y=track, frame_length=4 * hop, hop_length=hop)[0]
    np.testing.assert_allclose(music.rms(track, 4 * hop, hop, chunk_frames=7), expected, rtol=1e-5, atol=1e-7)


def test_small_chunks_change_nothing(media: MediaFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    path, truth = media.music(bpm=128, seconds=40, arc=True)
    whole = analyze_music(path)
    monkeypatch.setattr(music, "CHUNK_SECONDS", 1.5)
    monkeypatch.setattr(music, "TEMPOGRAM_CHUNK", 300)
    chunked = analyze_music(path)
    assert chunked == whole
    assert max(float(np.min(np.abs(np.array(whole.beats) - t))) for t in truth) < 0.020


def test_duration_decodes_only_what_is_needed(media: MediaFactory) -> None:
    path, truth = media.music(bpm=128, seconds=40, arc=True)
    music_part = analyze_music(path, duration=12.0)
    assert music_part.duration == pytest.approx(12.0 + music.MUSIC_CONTEXT_SECONDS, abs=0.01)
    assert max(music_part.beats) < music_part.duration
    near = [t for t in truth if t < 12.0]
    assert max(float(np.min(np.abs(np.array(music_part.beats) - t))) for t in near) < 0.020
    assert analyze_music(path, duration=100.0).duration == pytest.approx(40.0, abs=0.01)  # no more than there is


def test_decode_buffer_grows_past_a_short_probe() -> None:
    import io

    samples = np.arange(300_000, dtype=np.float32)
    np.testing.assert_array_equal(music._read_floats(io.BytesIO(samples.tobytes()), 1000), samples)


# Peak RSS from VmHWM, not getrusage: Linux carries ru_maxrss across fork + exec, so a child of a big
# pytest process would report the parent's size.
_MEASURE = """
import json, re, resource, sys
from pathlib import Path
from montage_core.music import analyze_music
m = analyze_music(sys.argv[1], None if sys.argv[2] == "-" else float(sys.argv[2]))
status = Path("/proc/self/status")
hwm = re.search(r"VmHWM:\\s*(\\d+) kB", status.read_text()) if status.exists() else None
peak_kb = int(hwm.group(1)) if hwm else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"rss_mb": peak_kb / 1024, "duration": m.duration, "tempo": m.tempo, "beats": len(m.beats)}))
"""


def _measure(path: Path, duration: float | None) -> dict[str, float]:
    """Analyse ``path`` in a fresh process; its peak RSS and what it found."""
    proc = subprocess.run([sys.executable, "-c", _MEASURE, str(path), "-" if duration is None else str(duration)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_ten_minute_track_in_bounded_memory(tmp_path: Path) -> None:
    path = tmp_path / "ten minutes.wav"
    # A kick (with a click on top) every 0.5 s over a quiet sine: 120 BPM for 10 minutes.
    source = ("aevalsrc='0.8*sin(2*PI*55*t)*exp(-25*mod(t\\,0.5))+0.3*sin(2*PI*1800*t)*exp(-200*mod(t\\,0.5))"
              "+0.05*sin(2*PI*440*t)':s=22050:d=600")
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", source, "-c:a", "pcm_s16le", str(path)], check=True)
    whole = _measure(path, None)
    # librosa's whole-track path peaks at ~7 GB here; chunked, ~400 MB of which ~300 MB is imports and JIT.
    assert whole["rss_mb"] < 700, whole
    assert whole["duration"] == pytest.approx(600, abs=0.1)
    assert whole["tempo"] == pytest.approx(120, rel=0.03) and whole["beats"] > 1150
    part = _measure(path, 20.0)
    assert part["duration"] < 40 and part["duration"] == pytest.approx(20 + music.MUSIC_CONTEXT_SECONDS, abs=0.1)
