"""The story-arc planner: beats, coverage, no reuse while unused shots fit, determinism."""

from __future__ import annotations

import json

import pytest

from montage_core.interfaces import PlanRequest
from montage_core.models import Cut, MusicAnalysis, Shot, Timeline
from montage_core.stages.select import resolve_style_params
from montage_core.errors import UsageError


def _music(duration: float = 30.0, bpm: float = 120.0, first: float = 0.37) -> MusicAnalysis:
    beats = [first + k * 60 / bpm for k in range(int((duration - first) * bpm / 60) + 1)]
    beats = [b for b in beats if b < duration]
    times = [i * 0.25 for i in range(int(duration * 4) + 1)]
    energy = [min(1.0, 0.2 + t / duration) if t < 0.7 * duration else 0.3 for t in times]
    return MusicAnalysis("/music.wav", duration, bpm, beats, beats[::4], times, energy)


def _shots(n: int, seconds: float = 6.0) -> list[Shot]:
    return [Shot(f"/clips/c{i % 5}.mp4", i, 0.0, seconds + (i % 3),
                 {"motion": (i * 37 % 11) / 11, "sharpness": 0.01 + (i % 7) / 100, "brightness": 0.5,
                  "cog_x": 0.0, "cog_y": 0.0}) for i in range(n)]


def _plan(pm, style: str = "dynamic", seed: int = 0, shots: list[Shot] | None = None, fps: float = 25.0,
          music: MusicAnalysis | None = None) -> Timeline:
    style_obj = pm.styles.get(style)
    shots = shots if shots is not None else _shots(40)
    ranked = style_obj.rank(shots, resolve_style_params(style_obj, {}), lambda m: None)
    music = music or _music()
    return pm.planners.get("story_arc").plan(PlanRequest(ranked, music, style_obj, fps, 640, 360, seed))


@pytest.mark.parametrize("style", ["dynamic", "mtv", "documentary", "minimalist"])
@pytest.mark.parametrize("fps", [25.0, 29.97, 30.0])
def test_every_cut_on_a_beat_and_the_music_covered(pm, style: str, fps: float) -> None:
    music = _music()
    tl = _plan(pm, style, fps=fps, music=music)
    assert tl.cuts[0].start == 0.0 and tl.frame(tl.cuts[-1].end) == round(music.duration * fps)
    for a, b in zip(tl.cuts, tl.cuts[1:]):
        assert a.end == b.start
        nearest = min(music.beats, key=lambda beat: abs(beat - b.start))
        assert abs(nearest - b.start) <= 1 / fps, f"cut at {b.start} is off the beat {nearest}"
    for cut, after in zip(tl.cuts, [*tl.cuts[1:], None]):
        # the source covers the cut plus half of each dissolve around it
        handles = cut.transition.duration / 2 + (after.transition.duration / 2 if after else 0)
        assert cut.source_out - cut.source_in == pytest.approx(cut.duration + handles, abs=1e-6)


def test_style_pacing_is_used(pm) -> None:
    period = 0.5
    mtv = _plan(pm, "mtv")
    doc = _plan(pm, "documentary")
    assert max(c.duration for c in mtv.cuts[1:-1]) <= 2 * period + 1 / 25
    assert min(c.duration for c in doc.cuts[1:-1]) >= 4 * period - 0.05
    assert {c.phase for c in mtv.cuts} == {"intro", "build", "climax", "outro"}
    climax = [c.duration for c in mtv.cuts if c.phase == "climax"]
    assert all(d <= period + 1 / 25 for d in climax)  # mtv climax: one beat per cut (±1 frame)


def test_transitions_follow_the_style(pm) -> None:
    assert {c.transition.kind for c in _plan(pm, "dynamic").cuts} == {"cut"}
    doc = _plan(pm, "documentary")
    assert doc.cuts[0].transition.kind == "cut"
    assert {c.transition.kind for c in doc.cuts[1:]} == {"crossfade"}
    # 0.5 s in whole frames, shortened only where a neighbouring cut is too short to hold it
    for before, cut in zip(doc.cuts, doc.cuts[1:]):
        full = min(before.duration, cut.duration) * 0.4 >= 0.48
        assert cut.transition.duration == pytest.approx(0.48) if full else cut.transition.duration < 0.48


def test_no_shot_reused_while_an_unused_one_fits(pm) -> None:
    shots = _shots(12, seconds=4.0)
    tl = _plan(pm, "mtv", shots=shots)
    by_id = {s.id: s for s in shots}
    used: set[str] = set()
    reused = 0
    for cut in tl.cuts:
        need = cut.source_out - cut.source_in
        if cut.shot in used:
            reused += 1
            unused_fitting = [s for s in shots if s.id not in used and s.duration >= need]
            assert not unused_fitting, f"{cut.shot} reused while {unused_fitting[0].id} was free"
        used.add(cut.shot)
        shot = by_id[cut.shot]
        assert shot.start <= cut.source_in and cut.source_out <= shot.end
    assert reused, "with 12 shots and a 30 s mtv cut, shots must be reused"


def test_deterministic_for_a_seed(pm) -> None:
    assert _plan(pm, seed=7).to_json() == _plan(pm, seed=7).to_json()
    assert [c.end for c in _plan(pm, seed=7).cuts] != [c.end for c in _plan(pm, seed=8).cuts]


def test_timeline_json_round_trip_and_version(pm, tmp_path) -> None:
    tl = _plan(pm, "documentary")
    data = json.loads(tl.to_json())
    assert data["schema"] == "montage.timeline" and data["version"] == 2
    assert Timeline.from_dict(data) == tl
    data["version"] = 99
    with pytest.raises(ValueError, match="timeline version 99 is not supported"):
        Timeline.from_dict(data)


def test_style_params_are_validated(pm) -> None:
    style = pm.styles.get("dynamic")
    assert resolve_style_params(style, {"min_brightness": "0.2"})["min_brightness"] == 0.2
    with pytest.raises(UsageError, match=r"has no parameter 'speed' \(known: min_brightness, min_sharpness\)"):
        resolve_style_params(style, {"speed": "1"})
    with pytest.raises(UsageError, match="out of range"):
        resolve_style_params(style, {"min_brightness": "7"})


def test_style_relaxes_instead_of_returning_nothing(pm) -> None:
    warnings: list[str] = []
    style = pm.styles.get("dynamic")
    shots = _shots(6)
    ranked = style.rank(shots, {"min_brightness": 0.99, "min_sharpness": 0.0}, warnings.append)
    assert len(ranked) >= 4 and warnings and "only 0 of 6 shots pass" in warnings[0]


def test_cut_model_round_trip() -> None:
    cut = Cut(0, "/a b.mp4", 1.0, 2.5, 0.0, 1.5, "intro", "a b.mp4#0")
    assert Cut.from_dict(json.loads(json.dumps(cut.__dict__, default=lambda o: o.__dict__))) == cut


def test_style_needs_its_analyzers(monkeypatch) -> None:
    from montage_core.errors import MontageError
    from montage_core.stages.select import check_style_requirements
    from montage_core.plugins import MontageManager

    monkeypatch.setenv("MONTAGE_DISABLE_PLUGINS", "analyzers")
    manager = MontageManager(load_entrypoints=False)
    with pytest.raises(MontageError, match="style 'dynamic' needs the analyzer\\(s\\) motion, sharpness, brightness"):
        check_style_requirements(manager.styles.get("dynamic"), manager)
