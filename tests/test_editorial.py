"""The edit itself, on media with known answers: flashes never shown, long shots offered as windows,
footage used before any reuse, cuts on accents, endings on a bar, a mastered sound."""

from __future__ import annotations

import logging
import random
import re
import subprocess
import statistics
from pathlib import Path
from typing import Any

import pytest

from montage_core.interfaces import PlanRequest
from montage_core.models import MusicAnalysis, Shot, Timeline
from montage_core.stages.select import candidates, resolve_style_params
from montage_core.testing import MediaFactory

FPS = 25


def _plan(pm: Any, shots: list[Shot], music: MusicAnalysis, style: str = "dynamic", seed: int = 0,
          duration: float | None = None) -> Timeline:
    style_obj = pm.styles.get(style)
    ranked = style_obj.rank(shots, resolve_style_params(style_obj, {}), lambda m: None)
    return pm.planners.get("story_arc").plan(PlanRequest(ranked, music, style_obj, FPS, 640, 360, seed, duration))


def _music(seconds: float = 40.0, bpm: float = 120.0, strength: list[float] | None = None) -> MusicAnalysis:
    beats = [0.5 + k * 60 / bpm for k in range(int((seconds - 0.5) * bpm / 60))]
    times = [i * 0.5 for i in range(int(seconds * 2) + 1)]
    energy = [0.3 + 0.7 * (0.4 * seconds < t < 0.7 * seconds) for t in times]
    return MusicAnalysis("/music.wav", seconds, bpm, beats, beats[::4], times, energy, strength or [])


def _overlaps(timeline: Timeline) -> list[tuple[int, int]]:
    """Pairs of cuts that show the same source frames (by more than one frame)."""
    slack = 1 / timeline.fps
    return [(a.index, b.index) for a in timeline.cuts for b in timeline.cuts
            if a.index < b.index and a.source == b.source
            and a.source_in < b.source_out - slack and b.source_in < a.source_out - slack]


def test_a_flash_is_a_shot_of_its_own_and_never_offered(pm: Any, media: MediaFactory) -> None:
    from montage_core.analysis.analyze import analyze_clip

    # Two frames of another picture in the middle of a shot, and a 1-frame glitch later on.
    clip, cuts = media.clip([(0, 3.0), (3, 0.08), (0, 3.0), (5, 0.04), (0, 2.0)])
    analysis = analyze_clip(clip, list(pm.analyzers), use_cache=False)
    assert [round(s.start * FPS) for s in analysis.shots[1:]] == cuts  # every planted cut, none merged away
    flashes = [s for s in analysis.shots if round(s.duration * FPS) <= 2]
    assert [round(s.duration * FPS) for s in flashes] == [2, 1]
    offered = candidates(analysis)
    for shot in offered:
        for flash in flashes:
            assert shot.shot_end <= flash.start + 1e-6 or shot.start >= flash.end - 1e-6, (shot, flash)


@pytest.mark.parametrize("source", ["mandelbrot", "smptehdbars"])
def test_a_punch_in_below_the_cut_threshold_is_still_a_cut(pm: Any, source: str, tmp_path: Path) -> None:
    from montage_core.analysis.analyze import CUT_THRESHOLD, analyze_clip

    # The same scene, 10 % closer from frame 75 on: the histogram barely changes, so the cut scores
    # under the threshold that catches ordinary cuts, yet every frame after it jumps.
    clip = tmp_path / f"{source} punch-in.mp4"
    graph = ("[0]split[a][b];[a]trim=end_frame=75[wide];"
             "[b]trim=start_frame=75,setpts=PTS-STARTPTS,scale=352:198,crop=320:180,setsar=1[close];"
             "[wide][close]concat=n=2:v=1[out]")
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", f"{source}=size=320x180:rate={FPS}",
                    "-frames:v", "150", "-filter_complex", graph, "-map", "[out]", "-c:v", "libx264",
                    "-pix_fmt", "yuv420p", str(clip)], check=True)
    analysis = analyze_clip(clip, list(pm.analyzers), use_cache=False)
    assert [(round(s.start * FPS), round(s.end * FPS)) for s in analysis.shots] == [(0, 75), (75, 150)]
    assert analysis.shots[1].features["cut_score"] < CUT_THRESHOLD  # the old absolute threshold missed it


def test_a_long_single_shot_is_offered_as_windows_scored_on_their_own(pm: Any, media: MediaFactory) -> None:
    from montage_core.analysis.analyze import WINDOW_SECONDS, analyze_clip

    clip, _ = media.clip([(6, 20.0)])  # one slowly changing 20 s shot
    analysis = analyze_clip(clip, list(pm.analyzers), use_cache=False)
    assert len(analysis.shots) == 1
    windows = candidates(analysis)
    assert len(windows) == int(20.0 // WINDOW_SECONDS) >= 4
    assert all(w.index == 0 and w.shot_end == pytest.approx(analysis.shots[0].end) for w in windows)
    assert [w.window for w in windows] == list(range(1, len(windows) + 1))
    for left, right in zip(windows, windows[1:]):
        assert left.end == pytest.approx(right.start)  # consecutive, no overlap, no gap
    assert len({round(w.features["brightness"], 4) for w in windows}) > 1  # each window on its own frames
    assert len({w.id for w in windows}) == len(windows)


def _long_and_short_shots() -> list[Shot]:
    rng = random.Random(3)
    long_end = 80.0
    windows = [Shot("/clips/street.mp4", 0, 4.0 * k, 4.0 * (k + 1),
                    {"motion": rng.random(), "sharpness": 0.01 + rng.random() / 50, "brightness": 0.5},
                    window=k + 1, extends_to=long_end) for k in range(20)]
    short = [Shot(f"/clips/object{k}.mp4", 0, 0.0, 2.0,
                  {"motion": 0.9, "sharpness": 0.05, "brightness": 0.6}) for k in range(3)]
    return windows + short


@pytest.mark.parametrize("style", ["dynamic", "mtv", "documentary"])
def test_no_footage_is_shown_twice_while_unused_footage_fits(pm: Any, style: str) -> None:
    timeline = _plan(pm, _long_and_short_shots(), _music(40.0), style)
    assert _overlaps(timeline) == []
    street = [c for c in timeline.cuts if c.source.endswith("street.mp4")]
    # the long shot is spread over the whole of its length, not its best 4 s
    assert max(c.source_out for c in street) - min(c.source_in for c in street) > 30.0


def test_when_reuse_is_unavoidable_the_least_used_footage_comes_first_never_after_itself(pm: Any) -> None:
    shots = [Shot(f"/clips/c{k}.mp4", 0, 0.0, 3.0, {"motion": k / 4, "sharpness": 0.02, "brightness": 0.5})
             for k in range(4)]  # 12 s of footage for a 40 s montage
    timeline = _plan(pm, shots, _music(40.0), "mtv")
    overlaps = _overlaps(timeline)
    assert overlaps  # it has to reuse ...
    assert all(b - a > 1 for a, b in overlaps)  # ... never the frames of the cut just before
    for reuse in sorted({b for _, b in overlaps}):  # only when no unused stretch was long enough
        cut = timeline.cuts[reuse]
        need = cut.source_out - cut.source_in
        for shot in shots:
            free, position = [], shot.start + 2 / FPS
            for a, b in sorted((c.source_in, c.source_out) for c in timeline.cuts[:reuse] if c.source == shot.clip):
                free.append(a - position)
                position = max(position, b)
            free.append(shot.end - 2 / FPS - position)
            assert max(free) <= need - 1 / FPS + 1e-6, (reuse, shot.clip, need, free)  # one frame: the tolerance
    uses = [sum(c.source_out - c.source_in for c in timeline.cuts if c.source == s.clip) for s in shots]
    assert max(uses) - min(uses) <= 0.5 * max(uses), uses  # spread evenly


def test_what_follows_the_climax_is_a_release(pm: Any) -> None:
    timeline = _plan(pm, _long_and_short_shots(), _music(40.0), "dynamic")
    phases = [c.phase for c in timeline.cuts]
    first_climax = phases.index("climax")
    assert "build" not in phases[first_climax:]
    assert phases[-1] == "outro"


def test_cuts_land_on_accented_beats(pm: Any, media: MediaFactory) -> None:
    from montage_core.music import analyze_music

    # A crash on every 4th beat, offset from the bar lines by one beat, plus a few stray ones.
    accents = tuple(sorted({k for k in range(1, 80, 4)} | {6, 23, 38}))
    path, beats = media.music(seconds=30.0, arc=False, accents=accents)
    music = analyze_music(path)
    assert len(music.beat_strength) == len(music.beats)
    accented = [music.accent(beats[k]) for k in accents if k < len(beats)]
    plain = [music.accent(b) for k, b in enumerate(beats) if k not in accents]
    assert statistics.median(accented) > 0.8 > 0.5 > statistics.median(plain)
    shots = [Shot(f"/clips/c{k}.mp4", 0, 0.0, 12.0, {"motion": k / 30, "sharpness": 0.02, "brightness": 0.5})
             for k in range(30)]
    for style in ("dynamic", "documentary"):
        timeline = _plan(pm, shots, music, style)
        at_cuts = [music.accent(c.start) for c in timeline.cuts[1:]]
        assert statistics.median(at_cuts) * 100 >= 65, (style, at_cuts)


def test_a_section_change_in_the_music_gets_a_cut(pm: Any, media: MediaFactory) -> None:
    from montage_core.music import analyze_music

    # Beats 0–31 a bass line, from beat 32 (16.5 s) a higher bass under a held chord; steady loudness.
    path, beats = media.music(seconds=40.0, arc=False, sections=(32,))
    music = analyze_music(path)
    assert len(music.sections) == 1 and abs(music.sections[0] - beats[32]) < 0.03, music.sections
    steady, _ = media.music(seconds=40.0, arc=False)
    assert analyze_music(steady).sections == []  # a loop that never changes has no sections

    shots = [Shot(f"/clips/c{k}.mp4", 0, 0.0, 12.0, {"motion": k / 30, "sharpness": 0.02, "brightness": 0.5})
             for k in range(30)]
    for style in ("dynamic", "mtv", "documentary"):
        timeline = _plan(pm, shots, music, style)
        assert round(music.sections[0] * FPS) in [round(c.start * FPS) for c in timeline.cuts], style


def test_a_shortened_montage_ends_on_a_bar_line(pm: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "montage")
    music = _music(60.0)
    shots = [s for s in _long_and_short_shots()]
    for asked in (17.0, 23.3, 30.0):
        timeline = _plan(pm, shots, music, "dynamic", duration=asked)
        assert abs(timeline.duration - asked) <= 2.0 + 1e-6  # within a bar (2 s at 120 BPM)
        assert min(abs(timeline.duration - d) for d in music.downbeats) <= 1 / FPS, (asked, timeline.duration)
    assert "on a phrase line" in caplog.text or "on a bar line" in caplog.text


# ----------------------------------------------------------------------------- sound
def _loudness(path: Path) -> tuple[float, float]:
    """Integrated LUFS and true peak dBTP as ffmpeg's EBU R128 meter reads them."""
    err = subprocess.run(["ffmpeg", "-hide_banner", "-nostats", "-i", str(path), "-af", "ebur128=peak=true",
                          "-f", "null", "-"], capture_output=True, text=True).stderr
    summary = err[err.rfind("Summary:"):]
    return (float(re.search(r"I:\s+(-?[\d.]+) LUFS", summary).group(1)),
            float(re.search(r"True peak:\s+Peak:\s+(-?[\d.]+) dBFS", summary).group(1)))


@pytest.fixture(scope="module")
def quiet_song(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """20 s of a chord over pink noise at about −26 LUFS: quiet, with a music-like crest factor."""
    path = tmp_path_factory.mktemp("song") / "quiet song.wav"
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "anoisesrc=color=pink:amplitude=0.05:d=20",
                    "-f", "lavfi", "-i", "sine=frequency=220:d=20", "-f", "lavfi", "-i", "sine=frequency=277:d=20",
                    "-filter_complex", "[0][1][2]amix=inputs=3,volume=0.5", "-ar", "44100", str(path)], check=True)
    return path


@pytest.mark.parametrize("target", [-14.0, -20.0])
def test_the_sound_is_mastered_to_the_loudness_target(quiet_song: Path, tmp_path: Path, target: float) -> None:
    from montage_core.loudness import Fades, master_music

    before, _ = _loudness(quiet_song)
    assert before < target - 3
    out = tmp_path / "sound.m4a"
    master_music(quiet_song, Fades(16.0, 2.0), target, out, "192k")
    integrated, peak = _loudness(out)
    assert abs(integrated - target) <= 1.0 and peak <= -1.0, (integrated, peak)


def test_loudness_off_keeps_the_musics_level(quiet_song: Path, tmp_path: Path) -> None:
    from montage_core.loudness import Fades, master_music, parse_loudness

    out = tmp_path / "sound.m4a"
    master_music(quiet_song, Fades(16.0, 0.0), parse_loudness("off"), out, "192k")
    assert abs(_loudness(out)[0] - _loudness(quiet_song)[0]) <= 0.7


def test_the_mastered_sound_is_kept_checked_and_remade_when_damaged(quiet_song: Path, montage_home: Path,
                                                                      caplog: pytest.LogCaptureFixture) -> None:
    """A re-render (or another --format of the plan) reuses the mastered sound; a damaged one is
    never used: it is mastered again."""
    from montage_core.loudness import Fades
    from montage_core.stages.sound import SoundInBackground, mastered_sound

    caplog.set_level(logging.INFO, logger="montage")
    first = SoundInBackground(str(quiet_song), Fades(16.0, 2.0), -14.0, "192k").result()
    made = first.stat().st_mtime_ns
    assert mastered_sound(str(quiet_song), Fades(16.0, 2.0), -14.0, "192k") == first
    assert first.stat().st_mtime_ns == made  # reused, not made again
    assert any("mastered before" in r.getMessage() for r in caplog.records)
    # another length, fade or target is another sound
    assert mastered_sound(str(quiet_song), Fades(12.0, 2.0), -14.0, "192k") != first
    assert mastered_sound(str(quiet_song), Fades(16.0, 2.0), -20.0, "192k") != first

    data = first.read_bytes()
    first.write_bytes(data[: len(data) // 2])  # cut short, as a full disk would leave it
    caplog.clear()
    again = mastered_sound(str(quiet_song), Fades(16.0, 2.0), -14.0, "192k")
    assert again == first and again.stat().st_size == len(data)
    assert any("cached sound is unusable" in r.getMessage() for r in caplog.records)
    integrated, peak = _loudness(again)
    assert abs(integrated + 14.0) <= 1.0 and peak <= -1.0
    assert not [p for p in first.parent.iterdir() if p.name.startswith(".")]  # no temporary left


@pytest.mark.parametrize("value,message", [("loud", "is not a number of LUFS or 'off'"), ("-3", "out of range")])
def test_a_bad_loudness_is_named(value: str, message: str) -> None:
    from montage_core.errors import UsageError
    from montage_core.loudness import parse_loudness

    with pytest.raises(UsageError, match=message):
        parse_loudness(value)


def test_a_re_encoded_copy_never_follows_its_original(pm: Any, media: MediaFactory, tmp_path: Path) -> None:
    from montage_core.analysis.analyze import analyze_clip
    from montage_core.builtin.planners import near_duplicates

    original, _ = media.clip([(0, 4.0), (1, 4.0)])
    copy = tmp_path / "copy of the original.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(original), "-vf", "scale=240:-2", "-c:v", "libx264",
                    "-crf", "34", str(copy)], check=True)
    others = [media.clip([(k, 4.0), (k + 1, 4.0)])[0] for k in (2, 4)]
    analyses = [analyze_clip(c, list(pm.analyzers)) for c in (original, copy, *others)]
    first, twin, other = analyses[0].shots[0], analyses[1].shots[0], analyses[2].shots[0]
    assert near_duplicates(first, twin) and not near_duplicates(first, other)
    shots = [s for a in analyses for s in candidates(a)]
    timeline = _plan(pm, shots, _music(20.0), "mtv")
    pair = {str(original), str(copy)}
    twins = 0
    for before, after in zip(timeline.cuts, timeline.cuts[1:]):
        if {before.source, after.source} == pair:  # the same picture: the same shot of the two files
            twins += before.shot.split("#")[1].split("w")[0] == after.shot.split("#")[1].split("w")[0]
    assert twins == 0
    assert {c.source for c in timeline.cuts} == {str(original), str(copy), *map(str, others)}


def test_a_copy_counts_as_its_original_footage_for_reuse(pm: Any, media: MediaFactory, tmp_path: Path) -> None:
    from montage_core.analysis.analyze import analyze_clip
    from montage_core.builtin.planners import same_footage

    # A copy trimmed by one second and re-encoded smaller: the same footage, shifted in time.
    original, _ = media.clip([(0, 4.0), (1, 4.0)])
    copy = tmp_path / "trimmed copy.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-ss", "1", "-i", str(original), "-vf", "scale=240:-2",
                    "-c:v", "libx264", "-crf", "30", str(copy)], check=True)
    others = [media.clip([(k, 4.0), (k + 1, 4.0)])[0] for k in (2, 4)]
    analyses = [analyze_clip(c, list(pm.analyzers)) for c in (original, copy, *others)]
    shots = [s for a in analyses for s in candidates(a)]
    aliases = same_footage(shots, FPS)
    # the copy's two shots are the original's, one second later in the original; nothing else is a copy
    assert {k: (v[0], round(v[1], 2)) for k, v in aliases.items()} == {
        (str(copy), 0): ((str(original), 0), 1.0), (str(copy), 1): ((str(original), 1), 1.0)}

    timeline = _plan(pm, shots, _music(16.0), "dynamic")
    shown: list[tuple[float, float]] = []  # ranges of the original's footage, in the original's time
    for cut in timeline.cuts:
        if cut.source in (str(original), str(copy)):
            shift = 1.0 if cut.source == str(copy) else 0.0
            shown.append((cut.source_in + shift, cut.source_out + shift))
    slack = 1 / FPS
    repeats = [(a, b) for i, a in enumerate(shown) for b in shown[i + 1:] if a[0] < b[1] - slack and b[0] < a[1] - slack]
    assert shown and repeats == [], "the copy showed footage the original had shown (or the reverse)"
    assert sum(c.source_out - c.source_in for c in timeline.cuts) < 24 - 2  # unused footage remained
