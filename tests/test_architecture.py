"""The seams between stages, jobs and plugins: what each command shares, and what no two jobs share."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

from montage_core.hookspecs import hookimpl
from montage_core.interfaces import Embedder
from montage_core.testing import MediaFactory, run_cli


def test_the_stage_modules_run_in_the_documented_order() -> None:
    import montage_core.stages as stages

    order = ["probe", "analyze", "select", "plan", "render", "export"]
    table = [line.split()[0] for line in stages.__doc__.splitlines() if line.split() and line.split()[0] in order]
    assert table == order
    entries = {"probe": "probe_clips", "analyze": "analyze_clips", "select": "select_shots",
               "plan": "plan_timeline", "render": "render_timeline", "export": "write_exports"}
    for module, entry in entries.items():
        function = getattr(stages, entry)
        assert function.__module__ == f"montage_core.stages.{module}", (entry, function.__module__)


def test_each_job_gets_a_backend_of_its_own(pm: Any) -> None:
    registered = pm.backends.get("local")
    first = pm.new_backend("local", workers=1)
    second = pm.new_backend("local", workers=3)
    assert first is not second and registered not in (first, second)
    assert (first.workers, second.workers) == (1, 3)  # configured, each for its own job


def test_a_backend_that_cannot_be_created_is_named_with_its_plugin(pm: Any) -> None:
    from montage_core.errors import PluginError
    from montage_core.interfaces import Backend

    class Broken(Backend):
        """Its registered instance is made at import; every later one fails."""

        name = "broken_factory"
        made: ClassVar[int] = 0

        def __init__(self) -> None:
            Broken.made += 1
            if Broken.made > 1:
                raise RuntimeError("no cluster configured")

    class Plugin:
        @hookimpl
        def montage_register_backends(self, register: Any) -> None:
            register(Broken())

    pm.register(Plugin(), "broken_factory_plugin")
    with pytest.raises(PluginError, match=r"backend 'broken_factory' \(plugin 'broken_factory_plugin'\) could not be "
                                          r"created: .*no cluster configured"):
        pm.new_backend("broken_factory")


def test_a_dask_scheduler_given_by_address_resolves_encoders_on_each_worker() -> None:
    pytest.importorskip("distributed")
    from montage_backend_dask import DaskBackend

    here = DaskBackend()
    here.configure(workers=2)
    assert here.remote_nodes is False  # a LocalCluster shares this host's hardware
    cluster = DaskBackend()
    cluster.configure(scheduler="tcp://203.0.113.9:8786")
    assert cluster.remote_nodes is True


class CountingEmbedder(Embedder):
    """An embedder only the test's manager knows: text and shots all map to one direction."""

    name = "counting"
    dim = 4
    texts: ClassVar[list[str]] = []

    def embed_shots(self, analysis: Any, words: str) -> np.ndarray:
        vectors = np.zeros((len(analysis.shots), self.dim), np.float32)
        vectors[:, 0] = 1.0
        return vectors

    def embed_text(self, text: str) -> np.ndarray:
        CountingEmbedder.texts.append(text)
        return np.array([1, 0, 0, 0], np.float32)


def test_an_embedder_registered_on_the_jobs_manager_reaches_the_broll_planner(pm: Any, media: MediaFactory,
                                                                             tmp_path: Path) -> None:
    from montage_core.analysis.analyze import analyze_clip
    from montage_core.music import analyze_music
    from montage_core.pipeline import plan_timeline

    class Plugin:
        @hookimpl
        def montage_register_embedders(self, register: Any) -> None:
            register(CountingEmbedder())

    pm.register(Plugin(), "counting_embedder")
    clip, _ = media.clip([(0, 2.0), (1, 2.0), (2, 2.0)])
    music, _ = media.music(seconds=6)
    script = tmp_path / "script.txt"
    script.write_text("a red sky\nthe sea at night\n", encoding="utf-8")
    CountingEmbedder.texts.clear()
    timeline = plan_timeline([analyze_clip(clip, list(pm.analyzers))], analyze_music(music), pm, style="dynamic",
                             planner="broll", width=320, height=180, fps=25, seed=0,
                             options={"script": str(script), "embedder": "counting"})
    assert CountingEmbedder.texts == ["a red sky", "the sea at night"]
    assert [c.note for c in timeline.cuts] == ["a red sky", "the sea at night"]


def test_plan_analyze_and_render_report_every_problem_at_once(media: MediaFactory, tmp_path: Path) -> None:
    """The commands that re-run a part of the pipeline get `montage run`'s checks, before any work."""
    clip, _ = media.clip([(0, 1.0)])
    started = time.monotonic()
    plan = run_cli("plan", str(clip), "--music", str(tmp_path / "no such.wav"), "--style", "dynamc",
                   "--fps", "0", "-o", str(tmp_path / "tl.json"))
    assert plan.returncode == 2, plan.stderr
    assert "did you mean 'dynamic'" in plan.stderr and "no such.wav" in plan.stderr
    assert "--fps 0 is out of range" in plan.stderr
    analyze = run_cli("analyze", str(tmp_path / "missing folder"), "--backend", "nope")
    assert analyze.returncode == 2, analyze.stderr
    assert "unknown backend 'nope'" in analyze.stderr and "missing folder" in analyze.stderr
    assert time.monotonic() - started < 60  # no analysis ran (each command is well under a second of checks)


def test_render_refuses_to_overwrite_a_source_of_the_timeline(media: MediaFactory, tmp_path: Path) -> None:
    from montage_core.models import Cut, Timeline

    clip, _ = media.clip([(0, 2.0)])
    music, _ = media.music(seconds=2)
    timeline = Timeline(music=str(music), duration=1.0, fps=25.0, width=320, height=180, style="dynamic", grade="",
                        seed=0, cuts=[Cut(0, str(clip), 0.0, 1.0, 0.0, 1.0, "intro", "s0", 1.0)], tempo=120.0)
    path = tmp_path / "tl.json"
    path.write_text(timeline.to_json(), encoding="utf-8")
    before = clip.read_bytes()
    proc = run_cli("render", str(path), "-o", str(clip), "--accel", "warp")
    assert proc.returncode == 2, proc.stderr
    assert "unknown accelerator 'warp'" in proc.stderr and str(clip) in proc.stderr
    assert clip.read_bytes() == before
