"""The plugin API docs are the contract: what docs/ says about styles, features, pacing,
transitions and grades is checked against the code, and a style written from the docs alone works."""

from __future__ import annotations

import inspect
import json
import re
import subprocess
import sys
import types
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from montage_core import hookspecs
from montage_core.errors import MontageError, UsageError
from montage_core.hookspecs import hookimpl
from montage_core.interfaces import Style, StyleParam
from montage_core.models import Shot, Transition
from montage_core.testing import MediaFactory, run_cli

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
STYLES_MD = DOCS / "hooks" / "styles.md"
ANALYZERS_MD = DOCS / "hooks" / "analyzers.md"
TUTORIAL_MD = DOCS / "plugin-authoring.md"
FPS = 25


def _table_rows(text: str) -> list[list[str]]:
    """Cells of every Markdown table row in ``text``."""
    return [[cell.strip() for cell in line.strip().strip("|").split("|")]
            for line in text.splitlines() if line.startswith("|") and not line.startswith("|---")]


def _code_blocks(text: str, lang: str = "python") -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", text, re.S)


def _module_from(source: str, name: str) -> types.ModuleType:
    module = types.ModuleType(name)
    exec(compile(source, f"<{name} from the docs>", "exec"), module.__dict__)
    return module


def _fresh_manager(monkeypatch: pytest.MonkeyPatch) -> Any:
    from montage_core import plugins

    manager = plugins.MontageManager(load_entrypoints=False)
    monkeypatch.setattr(plugins, "_manager", manager)
    return manager


# --------------------------------------------------------------------------- real inputs
@pytest.fixture(scope="module")
def inputs(media: MediaFactory) -> tuple[list[Any], Any]:
    """Analyses of three generated clips (two 3 s shots each, six different pictures) and of
    generated music (120 BPM, 12 s), made with every built-in analyzer and no cache."""
    from montage_core.analysis.analyze import analyze_clip
    from montage_core.music import analyze_music
    from montage_core.plugins import MontageManager

    analyzers = list(MontageManager(load_entrypoints=False).analyzers)
    analyses = []
    for shots in ([(0, 3.0), (1, 3.0)], [(2, 3.0), (3, 3.0)], [(4, 3.0), (5, 3.0)]):
        clip, _ = media.clip(shots)
        analyses.append(analyze_clip(clip, analyzers, use_cache=False))
    music, _ = media.music(seconds=12)
    return analyses, analyze_music(music)


# --------------------------------------------------------------------------- (a) features
def test_every_builtin_feature_is_documented_with_its_analyzer_and_aggregate(pm: Any, inputs: Any) -> None:
    analyses, _ = inputs
    produced = {name for a in analyses for s in a.shots for name in s.features}
    builtin = [a for a in pm.analyzers if pm.analyzers.origin(a.name) == "analyzers"]
    declared = {name for a in builtin for name in a.outputs}
    assert produced == declared, "a real analysis produced other features than the built-in analyzers declare"
    docs = STYLES_MD.read_text() + ANALYZERS_MD.read_text()
    missing = sorted(name for name in produced if f"`{name}`" not in docs)
    assert not missing, f"features the docs do not name: {missing}"

    features_table = STYLES_MD.read_text().split("### Built-in features", 1)[1]
    style_rows = _table_rows(features_table)
    analyzer_rows = {row[0]: row for row in _table_rows(ANALYZERS_MD.read_text())}
    for analyzer in builtin:
        row = next((r for r in style_rows if f"`{analyzer.outputs[0]}`" in r[0]), None)
        assert row is not None, f"styles.md has no feature row for {analyzer.outputs[0]}"
        assert row[1] == f"`{analyzer.name}`" and row[-1] == analyzer.aggregate, row
        assert analyzer_rows[f"`{analyzer.name}`"][-1] == f"`{analyzer.aggregate}`"


def test_documented_ranges_hold_on_real_shots(inputs: Any) -> None:
    analyses, _ = inputs
    for shot in (s for a in analyses for s in a.shots):
        f = shot.features
        assert 0 <= f["brightness"] <= 1 and 0 <= f["motion"] <= 1 and 0 <= f["cut_score"] <= 1
        assert 0 <= f["sharpness"] <= 16
        assert -0.5 <= f["cog_x"] <= 0.5 and -0.5 <= f["cog_y"] <= 0.5
        assert all(0 <= f[f"layout_{k}"] <= 1 for k in range(16))
        assert shot.id == f"{Path(shot.clip).name}#{shot.index}" and shot.duration == shot.end - shot.start


# --------------------------------------------------------------------------- (b) hook pages
def test_every_hookspec_has_its_page() -> None:
    index = (DOCS / "hooks.md").read_text()
    for name in (n for n in dir(hookspecs) if n.startswith("montage_register_")):
        kind = name.removeprefix("montage_register_")
        page = DOCS / "hooks" / f"{kind}.md"
        assert page.exists(), f"docs/hooks/{kind}.md is missing"
        assert f"`{name}`" in page.read_text(), f"docs/hooks/{kind}.md must name {name}"
        assert f"(hooks/{kind}.md)" in index, f"docs/hooks.md must link docs/hooks/{kind}.md"


# --------------------------------------------------------------------------- (c) montage styles
def test_montage_styles_shows_every_parameter_with_default_and_range() -> None:
    proc = run_cli("styles", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert {"dynamic", "mtv", "documentary", "minimalist"} <= {r["name"] for r in rows}
    for row in rows:
        assert isinstance(row["requires"], list)
        for name, param in row["params"].items():
            assert set(param) == {"default", "minimum", "maximum", "help"}, (row["name"], name)
            assert param["minimum"] <= param["default"] <= param["maximum"], (row["name"], name, param)
    dynamic = next(r for r in rows if r["name"] == "dynamic")
    assert {k: dynamic["params"]["min_sharpness"][k] for k in ("default", "minimum", "maximum")} == {
        "default": 0.0002, "minimum": 0.0, "maximum": 0.1}
    table = run_cli("styles")
    assert table.returncode == 0, table.stderr
    assert "--set min_sharpness=0.0002  (range 0..0.1)" in table.stdout
    assert table.stdout.count("(range ") == sum(len(r["params"]) for r in rows)


def test_set_outside_the_range_is_refused_before_any_work(tmp_path: Path) -> None:
    """styles.md: refused with one error line and exit status 2 (``montage run`` before any work)."""
    out = tmp_path / "out.mp4"
    for value, message in (("2", "style parameter min_brightness=2 is out of range (0..1)"),
                           ("abc", "is not a number")):
        proc = run_cli("run", str(tmp_path / "no-such-clip.mp4"), "--music", str(tmp_path / "no-such.wav"),
                       "-o", str(out), "--set", f"min_brightness={value}")
        assert proc.returncode == 2 and message in proc.stderr, proc.stderr
    unknown = run_cli("run", str(tmp_path / "c.mp4"), "--music", str(tmp_path / "m.wav"), "-o", str(out),
                      "--set", "nope=1")
    assert unknown.returncode == 2 and "(known: min_brightness, min_sharpness)" in unknown.stderr
    assert not out.exists()


# --------------------------------------------------------------------------- (d) a style from the docs
class DocsOnlyStyle(Style):
    """Written from docs/hooks/styles.md only."""

    name = "docs_only"
    description = "Bright shots first, a cut every one or two beats, short dissolves"
    pacing = {"intro": (1, 2), "build": (1, 2), "climax": (1, 1), "outro": (2, 2)}
    transition = Transition("crossfade", 0.2)
    grade = "eq=saturation=1.2"
    params = {"min_brightness": StyleParam(0.0, "drop shots darker than this mean luma", 0.0, 1.0)}
    requires = ("brightness",)

    def rank(self, shots: Sequence[Shot], params: dict[str, float],
             warn: Callable[[str], None]) -> list[tuple[Shot, float]]:
        kept = [s for s in shots if s.features.get("brightness", 0.0) >= params["min_brightness"]]
        if not kept:
            warn(f"style {self.name}: no shot reaches min_brightness={params['min_brightness']:g}; using all")
            kept = list(shots)
        kept.sort(key=lambda s: (-s.features.get("brightness", 0.0), s.clip, s.index))
        return [(s, round(1 - i / len(kept), 4)) for i, s in enumerate(kept)]


class DocsOnlyPlugin:
    @hookimpl
    def montage_register_styles(self, register: Callable[[Any], None]) -> None:
        register(DocsOnlyStyle())


def _plan(pm: Any, inputs: Any, style: str = "docs_only", **kwargs: Any) -> Any:
    from montage_core.pipeline import plan_timeline

    analyses, music = inputs
    return plan_timeline(analyses, music, pm, style=style, planner="story_arc", width=320, height=180, fps=FPS,
                         seed=kwargs.pop("seed", 0), **kwargs)


def test_a_style_written_from_the_docs_plans_a_timeline(pm: Any, inputs: Any) -> None:
    analyses, music = inputs
    assert pm.register(DocsOnlyPlugin(), "docs_only").error == ""
    timeline = _plan(pm, inputs)
    assert (timeline.style, timeline.grade, timeline.planner) == ("docs_only", "eq=saturation=1.2", "story_arc")

    # Rank order and scores reach the timeline: every shot is long enough for every cut and the
    # scores are more than 0.05 apart, so the first cuts take the ranked shots in order.
    shots = [s for a in analyses for s in a.shots]
    ranked = DocsOnlyStyle().rank(shots, {"min_brightness": 0.0}, print)
    assert len(ranked) == len(shots) == 6 and all(s.duration > 2.5 for s in shots)
    assert [(c.shot, c.score) for c in timeline.cuts[: len(ranked)]] == [(s.id, sc) for s, sc in ranked]

    # The cuts cover the music, every boundary on a beat, each cut lasting its phase's beats.
    total = timeline.frame(timeline.duration)
    beats = sorted({round(b * FPS) for b in music.beats if 0 < b * FPS < total})
    usable = [b for b in beats if b <= total - int(0.75 * FPS)]
    frames = [(timeline.frame(c.start), timeline.frame(c.end)) for c in timeline.cuts]
    assert frames[0][0] == 0 and frames[-1][1] == total
    assert all(a[1] == b[0] for a, b in zip(frames, frames[1:]))
    for cut, (a, b) in zip(timeline.cuts[:-1], frames[:-1]):
        assert b in usable
        k = sum(1 for beat in usable if a < beat <= b)
        low, high = DocsOnlyStyle.pacing[cut.phase]
        assert k <= high and (k >= low or b == usable[-1]), (cut, k)

    # Crossfades: nominal F = max(2, round(d × fps)) frames, each join 2 × (min(F, ⌊0.4 × S⌋) // 2).
    nominal = max(2, round(0.2 * FPS))
    assert timeline.cuts[0].transition == Transition("cut")
    for k in range(1, len(frames)):
        shorter = min(frames[k - 1][1] - frames[k - 1][0], frames[k][1] - frames[k][0])
        dissolve = 2 * (min(nominal, int(0.4 * shorter)) // 2)
        expected = Transition("crossfade", dissolve / FPS) if dissolve else Transition("cut")
        assert timeline.cuts[k].transition.kind == expected.kind
        assert timeline.cuts[k].transition.duration == pytest.approx(expected.duration)

    # Deterministic for a seed.
    assert _plan(pm, inputs).to_dict() == timeline.to_dict()


def test_params_range_and_requires_are_enforced_as_documented(pm: Any, inputs: Any) -> None:
    class NeedsMissing(DocsOnlyStyle):
        name = "needs_missing"
        requires = ("no_such_analyzer",)

    class Plugin:
        @hookimpl
        def montage_register_styles(self, register: Callable[[Any], None]) -> None:
            register(DocsOnlyStyle())
            register(NeedsMissing())

    pm.register(Plugin(), "docs_only")
    with pytest.raises(UsageError, match=re.escape("min_brightness=1.5 is out of range (0..1)")):
        _plan(pm, inputs, style_params={"min_brightness": "1.5"})
    with pytest.raises(UsageError, match=re.escape("has no parameter 'gamma' (known: min_brightness)")):
        _plan(pm, inputs, style_params={"gamma": "1"})
    with pytest.raises(MontageError, match=re.escape("needs the analyzer(s) no_such_analyzer, which no installed")):
        _plan(pm, inputs, style="needs_missing")
    # A threshold that keeps nothing: the style relaxes and warns instead of returning nothing.
    warnings: list[str] = []
    shots = [s for a in inputs[0] for s in a.shots]
    assert len(DocsOnlyStyle().rank(shots, {"min_brightness": 1.0}, warnings.append)) == len(shots)
    assert warnings and "min_brightness=1" in warnings[0]


def test_pacing_shortens_cuts_when_shots_are_too_short(pm: Any) -> None:
    """styles.md, pacing step 4: down to one beat, below the phase's minimum; then the longest shot held."""
    from montage_core.interfaces import PlanRequest
    from montage_core.models import MusicAnalysis

    class Slow(DocsOnlyStyle):
        name = "slow"
        pacing = {phase: (4, 4) for phase in ("intro", "build", "climax", "outro")}
        transition = Transition("cut")

    beats = [0.5 * k for k in range(1, 40)]
    music = MusicAnalysis("m.wav", 20.0, 120.0, beats, beats[::4], [0.0, 20.0], [0.5, 0.5])
    # 1.3 s shots fill two beats (1 s) plus the 4-frame margin, never four.
    ranked = [(Shot(f"c{i}.mp4", 0, 0.0, 1.3), round(1 - i / 6, 4)) for i in range(6)]
    timeline = pm.planners.get("story_arc").plan(PlanRequest(ranked, music, Slow(), FPS, 320, 180, 0))
    lengths = [round((c.end - c.start) / 0.5) for c in timeline.cuts[:6]]
    assert lengths == [2] * 6, lengths  # shortened from 4 beats, still on beats
    assert [c.shot for c in timeline.cuts[:6]] == [s.id for s, _ in ranked]
    # Shots too short for even one beat: the cut keeps its beats and the longest shot is held.
    tiny = [(Shot("t.mp4", 0, 0.0, 0.3), 1.0), (Shot("u.mp4", 0, 0.0, 0.35), 0.5)]
    held = pm.planners.get("story_arc").plan(PlanRequest(tiny, music, Slow(), FPS, 320, 180, 0))
    assert held.cuts[1].end - held.cuts[1].start == pytest.approx(2.0)
    assert held.cuts[1].shot == "u.mp4#0" and held.cuts[1].source_in == pytest.approx(0.0 + 2 / FPS)


# --------------------------------------------------------------------------- grade
def _grade_error(grade: str) -> str:
    """The documented check: the grade in the place render puts it, on a test picture."""
    from montage_core.ffmpeg import ffmpeg_binary
    from montage_core.stages.render import normalise_filter

    graph = f"[0:v]{normalise_filter(320, 180, FPS, 1.0)}[a];[a]{grade},format=yuv420p[v]"
    proc = subprocess.run([ffmpeg_binary(), "-hide_banner", "-v", "error", "-f", "lavfi", "-i",
                           f"testsrc2=size=320x180:rate={FPS}", "-frames:v", "5", "-filter_complex", graph,
                           "-map", "[v]", "-f", "null", "-"], capture_output=True, text=True)
    return proc.stderr if proc.returncode else ""


def test_documented_grades_work_where_render_puts_them(pm: Any) -> None:
    styles_md = STYLES_MD.read_text()
    grades = {DocsOnlyStyle.grade, *(s.grade for s in pm.styles if s.grade)}
    examples = styles_md.split("## grade", 1)[1].split("Examples:", 1)[1].split("Filters may", 1)[0]
    grades |= set(re.findall(r"`([a-z0-9_]+=[^`]*|vignette)`", examples))
    grades |= set(re.findall(r'grade = "([^"]+)"', styles_md + TUTORIAL_MD.read_text()))
    assert len(grades) >= 10, grades
    for grade in sorted(grades):
        assert not set(grade) & set(";[]"), grade
        assert _grade_error(grade) == "", (grade, _grade_error(grade))
    # What the docs forbid breaks the graph.
    for bad in ("eq=saturation=1.2;hue=s=0.5", "eq=saturation=1.2[b]", "hstack", "lut3d=file=/no/such.cube"):
        assert _grade_error(bad) != "", bad


# --------------------------------------------------------------------------- the examples in the docs
def test_the_styles_md_example_registers_and_ranks(monkeypatch: pytest.MonkeyPatch) -> None:
    module = _module_from(_code_blocks(STYLES_MD.read_text())[0], "daylight_from_docs")
    manager = _fresh_manager(monkeypatch)
    assert manager.register(module, "daylight").error == ""
    style = manager.styles.get("daylight")
    shots = [Shot("a.mp4", 0, 0, 4, {"brightness": 0.3}), Shot("b.mp4", 0, 0, 4, {"brightness": 0.8}),
             Shot("c.mp4", 0, 0, 4, {"brightness": 0.05})]
    ranked = style.rank(shots, {"min_brightness": 0.1}, print)
    assert [(s.clip, score) for s, score in ranked] == [("b.mp4", 1.0), ("a.mp4", 0.5)]
    warnings: list[str] = []
    assert len(style.rank(shots, {"min_brightness": 0.9}, warnings.append)) == 3 and warnings


def test_the_tutorial_names_the_plugin_dev_extra() -> None:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert any(req.startswith("pytest") for req in extras["plugin-dev"])
    assert 'pip install "montage-core[plugin-dev]"' in TUTORIAL_MD.read_text()


def test_the_tutorials_tests_pass_on_the_tutorials_plugin(monkeypatch: pytest.MonkeyPatch, media: MediaFactory,
                                                         montage_home: Path) -> None:
    text = TUTORIAL_MD.read_text()
    source = re.search(r"`montage_slowmo_sunset.py`:\n\n```python\n(.*?)```", text, re.S)
    assert source, "the tutorial's module is missing"
    monkeypatch.setitem(sys.modules, "montage_slowmo_sunset", _module_from(source.group(1), "montage_slowmo_sunset"))
    namespace: dict[str, Any] = {}
    tests = [block for block in _code_blocks(text) if "def test_" in block]
    for block in tests:
        exec(compile(block, "<the tutorial's tests>", "exec"), namespace)
    functions = [f for name, f in namespace.items() if name.startswith("test_")]
    assert len(functions) >= 2
    for function in functions:
        fixtures = {"pm": _fresh_manager(monkeypatch), "media": media, "montage_home": montage_home}
        function(**{name: fixtures[name] for name in inspect.signature(function).parameters})
