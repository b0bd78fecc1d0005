"""Sharded exact search equals brute force; the index is incremental; queries find what they should."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from montage_core.search import Hit, merge, shard_of, top_k
from montage_core.testing import MediaFactory, run_cli


def _brute_force(vectors: np.ndarray, ids: list[str], query: np.ndarray, k: int) -> list[tuple[float, str]]:
    """Every row scored, everything sorted: no partition, no shards."""
    scores = np.einsum("ij,j->i", vectors, query)
    return sorted(((float(scores[i]), ids[i]) for i in range(len(ids))), key=lambda t: (-t[0], t[1]))[:k]


@pytest.mark.parametrize("shards", [1, 2, 3, 8, 50])
@pytest.mark.parametrize("k", [1, 10, 40])
def test_sharded_top_k_equals_brute_force(shards: int, k: int) -> None:
    rng = np.random.default_rng(shards * 100 + k)
    vectors = rng.normal(size=(300, 32)).astype(np.float32)
    vectors[50:60] = vectors[10]  # exact ties, broken by id
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    ids = [f"clip{i // 7:03d}.mp4#{i % 7}" for i in range(300)]
    query = vectors[10] + 0.01 * rng.normal(size=32).astype(np.float32)
    owner = [shard_of(i, shards) for i in ids]
    partials = []
    for s in range(shards):  # with 50 shards some are empty and most hold fewer than k rows
        rows = [i for i in range(300) if owner[i] == s]
        found = top_k(vectors[rows], [ids[i] for i in rows], query, k)
        partials.append([Hit(score, id_, "", 0.0, 0.0) for score, id_, _ in found])
    partials.append([])  # an empty shard
    assert top_k(np.zeros((0, 32), np.float32), [], query, k) == []
    if shards == 50 and k > 1:
        assert any(0 < len(p) < k for p in partials)  # shards holding fewer than k rows
    merged = [(h.score, h.id) for h in merge(partials, k)]
    assert merged == _brute_force(vectors, ids, query.astype(np.float32), k)


@pytest.fixture
def library(media: MediaFactory, tmp_path: Path) -> Path:
    root = tmp_path / "library"
    for name, shots in {"beach_sunset": [(6, 2.0), (7, 2.0)], "city_traffic": [(0, 2.0), (1, 2.0)],
                        "mountain_snow": [(3, 2.0)], "dog_park": [(4, 2.0), (5, 2.0)]}.items():
        media.clip(shots, name=str(root / f"{name}.mp4"))
    (root / "beach_sunset.json").write_text(json.dumps({"title": "Golden hour at the sea",
                                                        "tags": ["ocean", "waves"]}))
    (root / "city_traffic.json").write_text(json.dumps({"description": "Cars in rush hour traffic"}))
    return root


@pytest.mark.slow
def test_index_search_and_incremental_update(library: Path, media: MediaFactory, tmp_path: Path) -> None:
    index = tmp_path / "index"
    first = run_cli("index", str(library), "--shards", "3", "--index", str(index))
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("4 clips indexed (4 embedded now, 0 removed, 3 shards rewritten")

    hits = json.loads(run_cli("search", "ocean waves", "--index", str(index), "--json", "--top", "3").stdout)
    assert Path(hits[0]["source"]).name == "beach_sunset.mp4" and hits[0]["score"] > 0.2
    like = json.loads(run_cli("search", "--like", str(library / "dog_park.mp4"), "--index", str(index),
                              "--json").stdout)
    assert Path(like[0]["source"]).name == "dog_park.mp4"

    folder = index / "descriptor-v1"
    stamps = {p.name: p.stat().st_mtime_ns for p in (folder / "clips").iterdir()}
    clip, _ = media.clip([(2, 2.0), (3, 2.0)])
    (library / "dog_park.mp4").write_bytes(clip.read_bytes())  # one clip changes
    again = run_cli("index", str(library), "--shards", "3", "--index", str(index))
    assert again.stdout.startswith("4 clips indexed (1 embedded now, 0 removed, 1 shards rewritten"), again.stdout
    manifest = json.loads((folder / "manifest.json").read_text())
    assert all(stamps[f"{e['digest']}.npz"] == (folder / "clips" / f"{e['digest']}.npz").stat().st_mtime_ns
               for path, e in manifest["clips"].items() if not path.endswith("dog_park.mp4"))


def test_search_needs_an_index(tmp_path: Path) -> None:
    proc = run_cli("search", "anything", "--index", str(tmp_path / "none"))
    assert proc.returncode == 2 and "no index here yet" in proc.stderr
    both = run_cli("search", "x", "--like", "y.mp4", "--index", str(tmp_path))
    assert both.returncode == 2 and "one of them" in both.stderr


SCRIPT = """Golden hour by the ocean, waves rolling in
Rush hour traffic downtown
Snow on the mountain
A dog runs in the park
"""


def _plan_broll(library: Path, music: Path, script: Path, out: Path) -> dict:
    proc = run_cli("plan", str(library), "--music", str(music), "--planner", "broll", "--script", str(script),
                   "-o", str(out), "--fps", "25", "--set", "min_sharpness=0")
    assert proc.returncode == 0, proc.stderr
    return json.loads(out.read_text())


@pytest.mark.slow
def test_broll_covers_every_line_in_order_on_beats_with_matching_shots(library: Path, media: MediaFactory,
                                                                        tmp_path: Path) -> None:
    music, beats = media.music(seconds=16)
    script = tmp_path / "script.txt"
    script.write_text(SCRIPT + "More ocean waves at sunset\n")
    timeline = _plan_broll(library, music, script, tmp_path / "broll.json")
    cuts = timeline["cuts"]
    assert [c["note"] for c in cuts] == [line for line in script.read_text().splitlines() if line]
    assert cuts[0]["start"] == 0 and round(cuts[-1]["end"] * 25) == 16 * 25
    for cut in cuts[1:]:
        assert min(abs(cut["start"] - b) for b in beats) <= 1 / 25
    expected = ["beach_sunset", "city_traffic", "mountain_snow", "dog_park", "beach_sunset"]
    assert [Path(c["source"]).stem for c in cuts] == expected
    assert cuts[0]["shot"] != cuts[4]["shot"]  # the other beach shot, not the one already used


@pytest.mark.slow
def test_broll_from_srt_follows_the_cue_times_and_renders(library: Path, media: MediaFactory, tmp_path: Path) -> None:
    music, beats = media.music(seconds=12)
    srt = tmp_path / "voice over.srt"
    srt.write_text("1\n00:00:00,000 --> 00:00:03,000\nWaves on the ocean\n\n"
                   "2\n00:00:04,100 --> 00:00:07,000\nCars in traffic\n\n"
                   "3\n00:00:08,300 --> 00:00:11,000\nA dog in the park\n")
    timeline = _plan_broll(library, music, srt, tmp_path / "srt.json")
    starts = [c["start"] for c in timeline["cuts"]]
    for cue, start in zip([4.1, 8.3], starts[1:]):
        nearest = min(beats, key=lambda b: abs(b - cue))
        assert abs(start - nearest) <= 1 / 25
    out = tmp_path / "broll.mp4"
    proc = run_cli("render", str(tmp_path / "srt.json"), "-o", str(out), "--quality", "preview")
    assert proc.returncode == 0, proc.stderr
    from montage_core.testing import probe_frames

    assert probe_frames(out)[0] == 12 * 25


def test_broll_needs_a_script(pm) -> None:
    from montage_core.errors import UsageError
    from montage_core.interfaces import PlanRequest
    from montage_core.models import MusicAnalysis, Shot

    music = MusicAnalysis("m.wav", 10, 120, [0.5 * k for k in range(1, 20)], [], [0, 10], [0.5, 0.5])
    request = PlanRequest([(Shot("a.mp4", 0, 0, 5), 1.0)], music, pm.styles.get("dynamic"), 25, 320, 180, 0)
    with pytest.raises(UsageError, match="needs --script FILE"):
        pm.planners.get("broll").plan(request)
