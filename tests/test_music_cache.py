"""A track analysed once is remembered by its content: another seed or style starts at once."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from montage_core.testing import MediaFactory


def test_a_remembered_analysis_is_used_checked_and_relabelled(pm, media: MediaFactory, montage_home: Path,
                                                              tmp_path: Path) -> None:
    from montage_core import music_cache
    from montage_core.isolated import DoneCall, IsolatedCall
    from montage_core.stages.music import start_music

    from montage_core.builtin.backend_local import LocalBackend

    class CoordinatorMusicBackend(LocalBackend):
        """A backend whose workers cannot be handed the track (as Kubernetes pods)."""

        music_shards = False

    # analysed here, in a process of its own
    coordinator_only = CoordinatorMusicBackend()
    path, _ = media.music(seconds=6)
    with start_music(path, None, coordinator_only) as first:
        assert isinstance(first, IsolatedCall)  # analysed in its own process, then remembered
        cold = first.result()
    copy = tmp_path / "the same song, renamed.wav"
    shutil.copy(path, copy)
    with start_music(copy, None, pm.new_backend("local")) as second:
        assert isinstance(second, DoneCall)  # the same bytes: no process, no shard, no librosa
        warm = second.result()
    assert warm.path == str(copy.absolute()) and warm.beats == cold.beats and warm.beat_strength == cold.beat_strength
    other_length = start_music(path, 4.0, coordinator_only)  # another --duration is another key
    assert isinstance(other_length, IsolatedCall)
    other_length.cancel()
    [entry] = list((montage_home / "cache" / "music").glob("*.json"))
    entry.write_text(entry.read_text().replace('"beats": [', '"beats": [99999, '))  # damaged: beats out of order
    assert music_cache.load(copy, None) is None  # checked before use: analysed again, never trusted


def test_the_music_is_a_shard_of_the_analysis_round_on_a_worker(pm, media: MediaFactory, montage_home: Path) -> None:
    """On a backend that takes it, the track is analysed by a worker in the same round as the
    clips (not on the coordinator), and remembered for the next run."""
    from montage_core import music_cache
    from montage_core.interfaces import ProgressEvent
    from montage_core.job import Job, JobOptions, running
    from montage_core.stages.music import MUSIC_SHARD_ID, MusicOnBackend

    clip, _ = media.clip([(0, 1.5), (1, 1.5)])
    music, beats = media.music(seconds=8)
    job = Job.prepare(JobOptions(clips=[str(clip)], music=str(music), output=str(montage_home / "out.mp4"),
                                 backend="local", workers=2, width=320, height=180))
    events: list[ProgressEvent] = []
    with running(job.backend), job.start_music() as analysis:
        assert isinstance(analysis, MusicOnBackend)
        analyses, failures = job.analyze(events.append, music=analysis)
        found = analysis.result()
    assert len(analyses) == 1 and not failures
    done = {e.shard: e for e in events if e.state == "done"}
    assert set(done) == {MUSIC_SHARD_ID, "analysis-0000"}
    assert done[MUSIC_SHARD_ID].worker.startswith("worker-") and done[MUSIC_SHARD_ID].clip == str(music)
    # the kicks are where the track was made to have them
    assert len(found.beats) >= len(beats) - 2
    assert all(min(abs(b - t) for t in beats) < 0.05 for b in found.beats)
    remembered = music_cache.load(music, None)
    assert remembered is not None and remembered.beats == found.beats


def test_a_broken_track_fails_the_job_naming_it(pm, media: MediaFactory, montage_home: Path, tmp_path: Path) -> None:
    from montage_core.errors import MontageError
    from montage_core.job import Job, JobOptions, running

    clip, _ = media.clip([(0, 1.5)])
    music = tmp_path / "my song.wav"
    shutil.copy(media.music(seconds=8)[0], music)
    job = Job.prepare(JobOptions(clips=[str(clip)], music=str(music), output=str(montage_home / "out.mp4"),
                                 backend="local", workers=1, width=320, height=180))
    with running(job.backend), job.start_music() as analysis:
        music.write_bytes(music.read_bytes()[:100])  # cut short after the job checked it
        job.analyze(music=analysis)
        with pytest.raises(MontageError, match=rf"^{re.escape(str(music))}: "):
            analysis.result()
