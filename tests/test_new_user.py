"""What a new user meets first: plugins one step away, progress with an ETA, warnings that help."""

from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import Any

import pytest

from montage_core.interfaces import ProgressEvent
from montage_core.testing import run_cli


def test_a_name_a_published_plugin_provides_says_how_to_install_it() -> None:
    proc = run_cli("styles", env={"MONTAGE_DISABLE_PLUGINS": "style_wes_anderson"})
    assert "wes_anderson" not in proc.stdout
    run = run_cli("run", "nowhere.mp4", "--music", "none.wav", "--style", "wes_anderson",
                  env={"MONTAGE_DISABLE_PLUGINS": "style_wes_anderson"})
    assert run.returncode == 2
    assert ("error: unknown style 'wes_anderson' (known: documentary, dynamic, minimalist, mtv); style "
            "'wes_anderson' comes with the plugin montage-style-wes-anderson: montage install "
            "montage-style-wes-anderson") in run.stderr.splitlines()


def test_the_catalogue_resolves_what_users_type() -> None:
    from montage_core.catalogue import CATALOGUE, resolve

    repository = Path(__file__).resolve().parent.parent
    for typed in ("wes_anderson", "montage-style-wes-anderson", "style-wes-anderson", "style_wes_anderson"):
        target, plugin = resolve(typed)
        assert plugin is not None and plugin.distribution == "montage-style-wes-anderson", typed
        assert target == str(repository / "plugins" / "style_wes_anderson")  # this checkout's own copy
    assert resolve("some-other-package") == ("some-other-package", None)
    for plugin in CATALOGUE:  # every entry is a real folder of this repository with that distribution name
        assert f'name = "{plugin.distribution}"' in (repository / "plugins" / plugin.folder / "pyproject.toml").read_text()
    listed = run_cli("install", "--list")
    assert listed.returncode == 0 and all(p.distribution in listed.stdout for p in CATALOGUE)


def test_plugins_table_says_so_when_none_is_installed() -> None:
    proc = run_cli("plugins", "--format", "table", env={"MONTAGE_LOAD_PLUGINS": "none-at-all"})
    assert proc.returncode == 0 and "no plugins installed" in proc.stdout, proc.stdout + proc.stderr


def test_progress_shows_an_eta_weighted_by_media_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    from montage_core import progress

    now = [100.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: now[0])
    out = io.StringIO()
    display = progress.ProgressDisplay("analysis", 0, stream=out)
    for shard, seconds in (("a", 30.0), ("b", 10.0)):
        display.event(ProgressEvent(stage="analysis", shard=shard, clip=f"{shard}.mp4", state="queued", total=seconds))
    assert display.eta() == ""  # nothing done yet: too early to tell
    now[0] = 110.0
    display.event(ProgressEvent(stage="analysis", shard="a", clip="a.mp4", state="running", position=10.0,
                                total=30.0, worker="worker-1"))
    assert display.eta() == " · ETA 00:00:30"  # 10 of 40 media seconds in 10 s: 30 s to go
    now[0] = 120.0
    display.event(ProgressEvent(stage="analysis", shard="a", clip="a.mp4", state="done", position=30.0, total=30.0,
                                worker="worker-1"))
    assert "analysis 1/2" in out.getvalue() and "ETA 00:00:06" in out.getvalue()


def test_a_source_scaled_up_more_than_twice_is_named(caplog: pytest.LogCaptureFixture) -> None:
    from montage_core.job import warn_upscaled
    from montage_core.models import ClipAnalysis, MediaInfo

    def analysis(path: str, width: int, height: int) -> Any:
        return ClipAnalysis(MediaInfo(path, 1, 2.0, True, False, width, height, 25.0), "d", {}, 25.0, [])

    caplog.set_level(logging.WARNING, "montage")
    warn_upscaled([analysis("/c/small.mp4", 320, 240), analysis("/c/phone.mp4", 1080, 1920),
                   analysis("/c/hd.mp4", 1280, 720)], 1920, 1080)
    assert [r.getMessage() for r in caplog.records] == [
        "/c/small.mp4 is 320x240: scaled up 4.5x to 1920x1080, it will look soft"]
