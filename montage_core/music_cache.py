"""Music analyses remembered by the track's content, so another ``--seed`` or ``--style`` starts at once.

The key is the BLAKE2b of the track's bytes, the analysed length (``--duration``), this analysis'
version and librosa's: a renamed copy hits, an edited track or a new analysis misses. An entry is
checked before use (beats in order and inside the track, one accent per beat); anything else is
analysed again.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

from .models import MusicAnalysis, write_atomic

#: bump when analyze_music's results change (beats, downbeats, energy, accents, sections)
MUSIC_ANALYSIS_VERSION = 3


def music_key(path: str | Path, duration: float | None) -> str:
    import hashlib

    from .analysis.cache import file_digest
    from .jit import distribution_version

    spec = json.dumps({"digest": file_digest(path), "duration": duration, "version": MUSIC_ANALYSIS_VERSION,
                       "librosa": distribution_version("librosa")})
    return hashlib.blake2b(spec.encode(), digest_size=16).hexdigest()


def _entry(key: str) -> Path:
    from .config import cache_dir

    return cache_dir() / "music" / f"{key}.json"


def load(path: str | Path, duration: float | None) -> MusicAnalysis | None:
    """The remembered analysis of this track (re-labelled with ``path``), or ``None``."""
    try:
        music = MusicAnalysis.from_dict(json.loads(_entry(music_key(path, duration)).read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError, KeyError):
        return None
    beats = music.beats
    sound = (isinstance(music.duration, (int, float)) and math.isfinite(music.duration) and music.duration > 0
             and len(beats) >= 2 and all(0 <= a < b <= music.duration for a, b in zip(beats, beats[1:]))
             and len(music.beat_strength) == len(beats) and set(music.downbeats) <= set(beats)
             and len(music.energy_times) == len(music.energy))
    return replace(music, path=str(path)) if sound else None


def store(path: str | Path, duration: float | None, music: MusicAnalysis) -> None:
    entry = _entry(music_key(path, duration))
    entry.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(entry, json.dumps(music.to_dict()))
