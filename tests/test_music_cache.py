"""A track analysed once is remembered by its content: another seed or style starts at once."""

from __future__ import annotations

import shutil
from pathlib import Path

from montage_core.testing import MediaFactory


def test_a_remembered_analysis_is_used_checked_and_relabelled(media: MediaFactory, montage_home: Path,
                                                              tmp_path: Path) -> None:
    from montage_core import music_cache
    from montage_core.isolated import DoneCall, IsolatedCall, start_music_analysis

    path, _ = media.music(seconds=6)
    with start_music_analysis(path, None) as first:
        assert isinstance(first, IsolatedCall)  # analysed in its own process, then remembered
        cold = first.result()
    copy = tmp_path / "the same song, renamed.wav"
    shutil.copy(path, copy)
    with start_music_analysis(copy, None) as second:
        assert isinstance(second, DoneCall)  # the same bytes: no process, no librosa
        warm = second.result()
    assert warm.path == str(copy.absolute()) and warm.beats == cold.beats and warm.beat_strength == cold.beat_strength
    other_length = start_music_analysis(path, 4.0)  # another --duration is another key
    assert isinstance(other_length, IsolatedCall)
    other_length.cancel()
    [entry] = list((montage_home / "cache" / "music").glob("*.json"))
    entry.write_text(entry.read_text().replace('"beats": [', '"beats": [99999, '))  # damaged: beats out of order
    assert music_cache.load(copy, None) is None  # checked before use: analysed again, never trusted
