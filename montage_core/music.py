"""Music analysis: ffmpeg decodes any format, librosa finds beats, tempo and energy.

Memory stays bounded by the track length times a small constant: spectrograms and the tempogram are
computed a chunk at a time and only small per-frame arrays (mel dB, onset envelopes) span the track.
The results equal librosa's whole-track ``onset_strength`` / ``beat_track`` / ``rms`` (see
tests/test_music_memory.py); librosa's own whole-track path costs ~12 MB of RSS per second of music.
"""

from __future__ import annotations

import io
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import InputError
from .ffmpeg import ffmpeg_binary, last_error_line, probe_media
from .models import MusicAnalysis

SAMPLE_RATE = 22050
#: 128 samples ≈ 5.8 ms: fine enough that beats land well inside a 20 ms tolerance
HOP = 128
BEATS_PER_BAR = 4
#: Decoded past a requested duration, so the beat tracker and the energy curve near its end see
#: the music that follows (the tracker's local score spans a beat, the energy smoothing ~1 s).
MUSIC_CONTEXT_SECONDS = 10.0
#: Seconds of audio per spectrogram chunk: ~60 MB of STFT at hop 128 whatever the track length.
CHUNK_SECONDS = 20.0
#: Tempogram columns per chunk; each column is an 8 s autocorrelation, ~60 KB of float64/complex
#: (256 columns ≈ 15 MB, and faster than bigger chunks, which fall out of the CPU caches).
TEMPOGRAM_CHUNK = 256
#: librosa's defaults, which our whole-track results must equal
TOP_DB = 80.0
TEMPO_WINDOW_SECONDS = 8.0


@dataclass(frozen=True)
class MelOnset:
    """One onset envelope over a mel spectrogram (librosa ``onset_strength`` parameters)."""

    n_mels: int = 128
    fmax: float | None = None
    aggregate: Callable[..., np.ndarray] = np.mean


#: The broadband envelope the beat tracker follows (median across bands resists sustained notes)
BROADBAND = MelOnset(aggregate=np.median)
#: Bass onsets only: kicks mark the beat where hi-hats may not
LOW_BAND = MelOnset(n_mels=32, fmax=200.0)
#: Short window, half hop: puts each beat on the attack itself
FINE = MelOnset(n_mels=64)
FINE_N_FFT = 512


def decode_audio(path: str | Path, sample_rate: int = SAMPLE_RATE, duration: float | None = None) -> np.ndarray:
    """Decode the first audio stream (its first ``duration`` s if given) to mono float32 at ``sample_rate``."""
    info = probe_media(path)
    if not info.has_audio:
        raise InputError(path, "has no audio stream")
    cmd = [ffmpeg_binary(), "-hide_banner", "-nostdin", "-loglevel", "error", "-i", str(path),
           "-map", "0:a:0", "-vn", "-ac", "1", "-ar", str(sample_rate)]
    if duration is not None:
        cmd += ["-t", f"{max(0.0, duration):.6f}"]
    cmd += ["-f", "f32le", "pipe:1"]
    expected = info.duration if duration is None or not info.duration else min(info.duration, duration)
    # stderr goes to a file, not a pipe, so a chatty ffmpeg cannot block while we read stdout.
    from .procs import child_options

    with tempfile.TemporaryFile() as err, subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err,
                                                           **child_options()) as proc:
        assert proc.stdout is not None
        samples = _read_floats(proc.stdout, int(expected * sample_rate) + sample_rate)
        returncode = proc.wait()
        err.seek(0)
        stderr = err.read().decode("utf-8", "replace")
    if returncode != 0 and len(samples) == 0:
        raise InputError(path, f"audio does not decode ({last_error_line(stderr, path)})")
    if len(samples) < sample_rate:
        raise InputError(path, f"audio is too short ({len(samples) / sample_rate:.2f} s; need at least 1 s)")
    return samples


def _read_floats(stream: io.BufferedIOBase, capacity: int) -> np.ndarray:
    """Read float32 samples into one buffer sized from the probe, so the track is never held twice."""
    buf = np.empty(max(capacity, 1 << 16), np.float32)
    view = memoryview(buf).cast("B")
    filled = 0  # in bytes
    while True:
        if filled == len(view):  # the probe under-estimated: grow (rare, so the copy is fine)
            buf = np.concatenate([buf, np.empty(len(buf) // 2, np.float32)])
            view = memoryview(buf).cast("B")
        got = stream.readinto(view[filled : filled + (1 << 20)])
        if not got:
            break
        filled += got
    return buf[: filled // 4]


def analyze_music(path: str | Path, duration: float | None = None) -> MusicAnalysis:
    """Beats (refined to onsets), downbeats, tempo and a 0..1 energy curve.

    With ``duration``, only that much music (plus :data:`MUSIC_CONTEXT_SECONDS`) is decoded and
    analysed; ``MusicAnalysis.duration`` is then the decoded length.
    """
    import librosa

    y = decode_audio(path, duration=None if duration is None else duration + MUSIC_CONTEXT_SECONDS)
    duration = len(y) / SAMPLE_RATE
    timbre: list[np.ndarray] = []
    onset_env, low_env = onset_envelopes(y, [BROADBAND, LOW_BAND], timbre=timbre)
    fine_env = onset_envelopes(y, [FINE], n_fft=FINE_N_FFT, hop=HOP // 2)[0]
    times, energy = _energy(y, duration)
    del y  # everything below works on per-frame envelopes

    # Given the tempo, librosa skips its whole-track tempogram; it still answers 0 BPM for silence.
    bpm, beat_frames = librosa.beat.beat_track(onset_envelope=onset_env, sr=SAMPLE_RATE, hop_length=HOP,
                                               bpm=np.atleast_1d(estimate_tempo(onset_env)), units="frames",
                                               trim=False)
    tempo = float(np.atleast_1d(bpm)[0])
    beat_frames = np.asarray(beat_frames, dtype=int)
    beat_frames = _kick_phase(low_env, beat_frames, tempo)
    beat_frames = _trim_silent_ends(onset_env, beat_frames)
    beats_at = _refine_to_onsets(fine_env, beat_frames, tempo)  # in (fractional) HOP frames
    beats = sorted({round(float(b), 4) for b in beats_at * HOP / SAMPLE_RATE if 0.0 <= b < duration})
    if len(beats) < 2:
        raise InputError(path, "no beat found (is it music with a pulse?)")
    downbeats = _downbeats(onset_env, beat_frames, beats)
    strength = _beat_strength(onset_env, np.asarray(beats) * SAMPLE_RATE / HOP)
    parts = sections(timbre[0], TIMBRE_POOL * HOP / SAMPLE_RATE, beats)
    return MusicAnalysis(str(path), duration, tempo, beats, downbeats, times, energy, strength, parts)


#: an accent is looked for this close to its beat (the onset envelope's peak may lead or lag it)
ACCENT_WINDOW_SECONDS = 0.05


def _beat_strength(onset_env: np.ndarray, beat_frames: np.ndarray) -> list[float]:
    """Each beat's accent: the percentile (0..1) of the strongest onset within ±50 ms of it among
    all the beats, so that a planner can prefer the hits over the quiet beats whatever the level."""
    reach = max(1, int(round(ACCENT_WINDOW_SECONDS * SAMPLE_RATE / HOP)))
    peaks = np.array([onset_env[max(0, int(f) - reach): int(f) + reach + 1].max(initial=0.0) for f in beat_frames])
    if len(peaks) < 2:
        return [0.5] * len(peaks)
    order = np.argsort(np.argsort(peaks, kind="stable"), kind="stable")
    return [round(float(r) / (len(peaks) - 1), 4) for r in order]


#: mel dB frames averaged into one timbre column (8 × 5.8 ms ≈ 46 ms)
TIMBRE_POOL = 8
#: beats on each side of a candidate section change: 4 bars of 4/4 before against 4 bars after
SECTION_WINDOW_BEATS = 16
#: a section change stands this many standard deviations above the novelty curve's mean, and at
#: least this far apart in standardised timbre (a steady loop's bar-to-bar wobble stays near 0.15;
#: a verse → chorus change, a drop or a breakdown measures 1–2)
SECTION_NOVELTY_SIGMAS = 1.0
SECTION_MIN_NOVELTY = 0.5


def sections(timbre: np.ndarray, column_seconds: float, beats: list[float]) -> list[float]:
    """Where the music changes section (verse → chorus, a drop, a breakdown): the beats that start a
    section, not counting the start of the track.

    Foote's novelty on beat-synchronous timbre, computed locally: each band's mel dB is averaged per
    beat and standardised, and a beat's novelty is the distance between the mean of the
    ``SECTION_WINDOW_BEATS`` beats before it and of those after it (a checkerboard kernel along the
    diagonal, without the track-long self-similarity matrix, so memory stays linear). Peaks that
    stand out (``SECTION_NOVELTY_SIGMAS``, ``SECTION_MIN_NOVELTY``) and are the largest within a
    window each side are section changes. They are not moved to the estimated bar lines: a sharp
    change peaks on its own beat, and the bar estimate can be a beat off where it cannot.
    """
    window = SECTION_WINDOW_BEATS
    if len(beats) < 2 * window + 1 or timbre.size == 0:
        return []
    columns = np.clip((np.asarray(beats) / column_seconds).astype(int), 0, timbre.shape[1] - 1)
    ends = [*columns[1:], timbre.shape[1]]
    per_beat = np.stack([timbre[:, a : max(a + 1, b)].mean(axis=1) for a, b in zip(columns, ends)])
    spread = per_beat.std(axis=0)
    per_beat = (per_beat - per_beat.mean(axis=0)) / np.where(spread > 1e-6, spread, 1.0)
    sums = np.vstack([np.zeros(per_beat.shape[1]), np.cumsum(per_beat, axis=0)])
    novelty = np.zeros(len(beats))
    for k in range(window, len(beats) - window + 1):
        before = (sums[k] - sums[k - window]) / window
        after = (sums[k + window] - sums[k]) / window
        novelty[k] = float(np.sqrt(np.mean((after - before) ** 2)))
    scored = novelty[window : len(beats) - window + 1]
    floor = max(SECTION_MIN_NOVELTY, float(scored.mean() + SECTION_NOVELTY_SIGMAS * scored.std()))
    changes: list[float] = []
    for k in range(window, len(beats) - window + 1):
        if novelty[k] < floor or novelty[k] < novelty[max(0, k - window) : k + window + 1].max():
            continue
        changes.append(beats[k])
    return changes


def _padded(y: np.ndarray, start: int, stop: int) -> np.ndarray:
    """``y[start:stop]`` with zeros outside ``y``: librosa's ``center=True`` constant padding."""
    if start >= 0 and stop <= len(y):
        return y[start:stop]
    out = np.zeros(stop - start, y.dtype)
    lo, hi = max(start, 0), min(stop, len(y))
    if hi > lo:
        out[lo - start : hi - start] = y[lo:hi]
    return out


def _chunk_frames(hop: int) -> int:
    """Frames per spectrogram chunk at ``hop``."""
    return max(2, int(CHUNK_SECONDS * SAMPLE_RATE / hop))


def onset_envelopes(y: np.ndarray, specs: list[MelOnset], *, n_fft: int = 2048, hop: int = HOP,
                    chunk_frames: int | None = None, timbre: list[np.ndarray] | None = None) -> list[np.ndarray]:
    """librosa's ``onset_strength(y, n_fft, hop, n_mels, fmax, aggregate)`` for each spec, one STFT shared.

    The STFT exists a chunk at a time; only the per-frame mel dB (n_mels floats a frame) spans the
    track, because librosa clips it at the *global* maximum − 80 dB before taking the flux. Given a
    ``timbre`` list, the first spec's mel dB averaged over :data:`TIMBRE_POOL` frames (bands × pooled
    frames, ~20 columns a second) is appended to it, for :func:`sections`.
    """
    import librosa

    chunk = chunk_frames or _chunk_frames(hop)
    n = 1 + len(y) // hop  # frames of a centred STFT
    bases = [librosa.filters.mel(sr=SAMPLE_RATE, n_fft=n_fft, n_mels=s.n_mels,
                                 fmax=0.5 * SAMPLE_RATE if s.fmax is None else s.fmax) for s in specs]
    dbs = [np.empty((s.n_mels, n), np.float32) for s in specs]
    half = n_fft // 2
    for a in range(0, n, chunk):
        b = min(n, a + chunk)
        # Frame t of a centred STFT covers y[t*hop - n_fft/2 : t*hop + n_fft/2] (zeros outside).
        segment = _padded(y, a * hop - half, (b - 1) * hop + n_fft - half)
        power = np.abs(librosa.stft(segment, n_fft=n_fft, hop_length=hop, center=False)) ** 2
        for basis, db in zip(bases, dbs):
            mel = np.einsum("...ft,mf->...mt", power, basis, optimize=True)  # as librosa's melspectrogram
            db[:, a:b] = 10.0 * np.log10(np.maximum(1e-10, mel))  # power_to_db, before its top_db clip
        del power
    if timbre is not None:
        usable = dbs[0].shape[1] // TIMBRE_POOL * TIMBRE_POOL
        timbre.append(dbs[0][:, :usable].reshape(dbs[0].shape[0], -1, TIMBRE_POOL).mean(axis=2))
    return [_flux(db, spec.aggregate, 1 + n_fft // (2 * hop), chunk) for db, spec in zip(dbs, specs)]


def _flux(db: np.ndarray, aggregate: Callable[..., np.ndarray], pad: int, chunk: int) -> np.ndarray:
    """Clip at the global max − top_db, positive lag-1 difference, aggregate over bands, shift by ``pad``."""
    n = db.shape[1]
    floor = db.max() - TOP_DB  # same float32 arithmetic as power_to_db
    env = np.zeros(n, np.float32)
    # librosa's envelope is the flux between frames k and k+1 at index k + pad, trimmed to n frames.
    for a in range(0, n - 1, chunk):
        b = min(n - 1, a + chunk)
        clipped = np.maximum(db[:, a : b + 1], floor)
        flux = aggregate(np.maximum(0.0, clipped[:, 1:] - clipped[:, :-1]), axis=0)
        lo, hi = a + pad, min(n, b + pad)
        if hi > lo:
            env[lo:hi] = flux[: hi - lo]
    return env


def estimate_tempo(onset_env: np.ndarray, chunk_columns: int | None = None) -> float:
    """librosa's ``feature.tempo(onset_envelope=...)`` (start 120 BPM) with the tempogram averaged chunk by chunk.

    librosa builds the whole autocorrelation tempogram (8 s × every frame, float64) only to take its
    mean over frames; its columns are independent, so a running sum of chunks gives the same mean.
    """
    import librosa

    chunk = chunk_columns or TEMPOGRAM_CHUNK
    win = int(librosa.time_to_frames(TEMPO_WINDOW_SECONDS, sr=SAMPLE_RATE, hop_length=HOP))
    n = len(onset_env)
    # As tempogram(center=True): ramp to zero over half a window each side, column j = padded[j : j+win].
    padded = np.pad(onset_env, win // 2, mode="linear_ramp", end_values=[0, 0])
    total = np.zeros(win)
    for a in range(0, n, chunk):
        b = min(n, a + chunk)
        tg = librosa.feature.tempogram(onset_envelope=padded[a : b + win - 1], sr=SAMPLE_RATE, hop_length=HOP,
                                       win_length=win, center=False)
        total += tg.sum(axis=-1)
    mean = (total / max(1, n))[:, np.newaxis]
    # librosa's own prior (log-normal around 120 BPM) and 320 BPM ceiling, applied to the mean
    tempo = librosa.feature.tempo(tg=mean, sr=SAMPLE_RATE, hop_length=HOP, aggregate=None)
    return float(np.atleast_1d(tempo)[0])


def _kick_phase(low_env: np.ndarray, frames: np.ndarray, tempo: float) -> np.ndarray:
    """Shift the grid by half a beat when the off-beats carry clearly more bass onsets.

    Broadband trackers can lock onto loud off-beat hi-hats; kicks (and bass) mark the beat.
    """
    if tempo <= 0 or len(frames) < 4:
        return frames
    half = int(round(60.0 / tempo / 2 * SAMPLE_RATE / HOP))
    shifted = frames + half
    shifted = shifted[shifted < len(low_env)]
    on_beat = float(low_env[frames].mean())
    off_beat = float(low_env[shifted].mean()) if len(shifted) else 0.0
    return shifted if off_beat > 1.5 * on_beat else frames


def _refine_to_onsets(fine: np.ndarray, frames: np.ndarray, tempo: float) -> np.ndarray:
    """Move each beat to the sharpest onset of the half-hop ``fine`` envelope within ±1/8 beat.

    The tracker's grid is smooth and its 2048-sample analysis window smears attacks by ~10 ms;
    a short-window (512), half-hop onset curve puts each beat on the attack itself.
    """
    if tempo <= 0:
        return frames
    fine_hop = HOP // 2
    scale = HOP // fine_hop
    radius = max(1, int(60.0 / tempo / 8 * SAMPLE_RATE / fine_hop))
    refined = []
    for f in frames * scale:
        lo, hi = max(0, f - radius), min(len(fine), f + radius + 1)
        refined.append((lo + int(np.argmax(fine[lo:hi]))) / scale if hi > lo else f / scale)
    return np.asarray(refined)


def _trim_silent_ends(onset_env: np.ndarray, frames: np.ndarray) -> np.ndarray:
    """Drop the beats the tracker extrapolates into silence before the music starts or after it ends."""
    if len(frames) < 4:
        return frames
    strength = onset_env[frames]
    floor = 0.1 * float(np.median(strength))
    strong = np.flatnonzero(strength > floor)
    return frames[strong[0] : strong[-1] + 1] if len(strong) else frames


def _downbeats(onset_env: np.ndarray, frames: np.ndarray, beats: list[float]) -> list[float]:
    """Every 4th beat, at the phase whose beats carry the most onset strength."""
    strength = onset_env[np.clip(frames[: len(beats)], 0, len(onset_env) - 1)]
    phase = int(np.argmax([strength[p::BEATS_PER_BAR].sum() for p in range(BEATS_PER_BAR)]))
    return beats[phase::BEATS_PER_BAR]


def rms(y: np.ndarray, frame_length: int, hop: int, chunk_frames: int = 256) -> np.ndarray:
    """librosa's ``feature.rms(y, frame_length, hop)[0]`` a chunk of frames at a time.

    librosa squares a framed copy of the signal: frame_length / hop (4) times the track in float32.
    """
    import librosa

    n = 1 + len(y) // hop
    out = np.empty(n, np.float32)
    half = frame_length // 2
    for a in range(0, n, chunk_frames):
        b = min(n, a + chunk_frames)
        segment = _padded(y, a * hop - half, (b - 1) * hop + frame_length - half)
        out[a:b] = librosa.feature.rms(y=segment, frame_length=frame_length, hop_length=hop, center=False)[0]
    return out


def _energy(y: np.ndarray, duration: float, step: float = 0.25) -> tuple[list[float], list[float]]:
    """RMS loudness every ``step`` s, smoothed over ~2 s and scaled to 0..1."""
    import librosa

    hop = int(step * SAMPLE_RATE)
    loudness = rms(y, hop * 4, hop)
    db = librosa.amplitude_to_db(np.maximum(loudness, 1e-5), ref=1.0)
    kernel = np.hanning(9)
    smooth = np.convolve(np.pad(db, 4, mode="edge"), kernel / kernel.sum(), mode="valid")
    lo, hi = np.percentile(smooth, 2), np.percentile(smooth, 98)
    energy = np.clip((smooth - lo) / (hi - lo), 0, 1) if hi > lo else np.full_like(smooth, 0.5)
    times = np.arange(len(energy)) * step
    keep = times <= duration
    return [round(float(t), 3) for t in times[keep]], [round(float(e), 4) for e in energy[keep]]
