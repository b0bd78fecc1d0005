"""`montage worker`: one shard per process, results per shard file, exit codes a cluster can act on."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from montage_core.analysis.analyze import analyzer_versions
from montage_core.ffmpeg import probe_media
from montage_core.interfaces import ShardTask
from montage_core.models import ClipAnalysis, MediaInfo
from montage_core.plugins import get_manager
from montage_core.specs import AnalysisSpec
from montage_core.testing import MediaFactory, run_cli
from montage_core.worker import load_result, write_shard_file


def test_worker_runs_its_index_and_writes_its_own_result(media: MediaFactory, tmp_path: Path) -> None:
    good, cuts = media.clip([(0, 1.0), (1, 1.0)])
    bad = tmp_path / "bad.mp4"
    bad.write_text("not media")
    versions = analyzer_versions(list(get_manager().analyzers))
    # The coordinator probed both (the bad one looked like a clip then: it was damaged since).
    infos = [probe_media(good), MediaInfo(str(bad), 9, 2.0, True, False, 320, 180, 25.0)]
    tasks = [ShardTask(f"analysis-{i:04d}", "analysis", info.path,
                       AnalysisSpec(media=info, digest=f"d{i}", analyzers=versions, resolve_on_node=True))
             for i, info in enumerate(infos)]
    shard_file = tmp_path / "shared" / "job" / "analysis.json"
    shard_file.parent.mkdir(parents=True)
    results = tmp_path / "shared" / "job" / "results"
    write_shard_file(shard_file, tasks, results, token="t0ken")

    done = run_cli("worker", "--shards", str(shard_file), env={"JOB_COMPLETION_INDEX": "0"})
    assert done.returncode == 0, done.stderr
    events = [json.loads(line)["montage_event"] for line in done.stdout.splitlines() if line.startswith("{")]
    assert events[0]["state"] == "started" and events[-1]["state"] == "done"
    analysis = ClipAnalysis.from_dict(load_result(results, "analysis-0000", "t0ken"))
    assert [round(s.start * 25) for s in analysis.shots[1:]] == cuts

    failed = run_cli("worker", "--shards", str(shard_file), "--index", "1")
    assert failed.returncode == 3  # bad input: the cluster must not retry it
    assert f"error: {bad}: no decodable video frames" in failed.stderr
    assert sorted(p.name for p in results.iterdir()) == ["analysis-0000.json"]

    missing = run_cli("worker", "--shards", str(shard_file), "--index", "7")
    assert missing.returncode == 2 and "shard index 7 is out of range (the file has 2 shards)" in missing.stderr


def test_every_spec_round_trips_through_its_versioned_json() -> None:
    from montage_core.specs import (STAGE_FUNCTIONS, IndexSpec, Placement, RenderSpec, ScoreSpec, SearchSpec,
                                    SegmentSource, ShardSpec)

    info = MediaInfo("/m/a b.mp4", 10, 2.0, True, False, 320, 180, 25.0)
    specs: list[ShardSpec] = [
        AnalysisSpec(media=info, digest="d", analyzers={"cuts": "1"}, ranged=True, start_frame=50, frame_count=None),
        RenderSpec(index=3, frames=25, fps=25.0, width=320, height=180, grade="eq=saturation=1.2", encoders=[],
                   accel="auto", quality="preview", main=SegmentSource(source="/m/a.mp4", start=1.0),
                   blend=SegmentSource(source="/m/b.mp4", start=0.5, frames=6),
                   placement=Placement(accelerator="nvenc", resources={"accel-nvenc": 1})),
        IndexSpec(embedder="descriptor", folder="/i", analyses=[]),
        SearchSpec(shard="/i/shard-000.npz", query=[0.5, 0.25], k=3),
        ScoreSpec(embedder="descriptor", shot_vectors=[[1.0]], lines=["waves"]),
    ]
    for spec in specs:
        data = json.loads(json.dumps(spec.to_json()))
        assert data["kind"] == spec.kind and data["version"] == 1
        assert ShardSpec.from_json(data) == spec
        assert spec.function() == STAGE_FUNCTIONS[spec.kind]
    assert specs[1].sources() == ["/m/a.mp4", "/m/b.mp4"]


def test_a_worker_refuses_specs_it_cannot_read(tmp_path: Path) -> None:
    import pytest

    from montage_core.errors import MontageError
    from montage_core.specs import ShardSpec

    with pytest.raises(MontageError, match=r"unknown shard kind 'transcode' \(known: analysis, index, music, render, "
                                           r"render-batch, score, search\)"):
        ShardSpec.from_json({"kind": "transcode", "version": 1})
    with pytest.raises(MontageError, match="render shard spec version 2 is not supported"):
        ShardSpec.from_json({"kind": "render", "version": 2})
    # A shard file can no longer name a function to run: only the stage of each spec's kind runs.
    shard_file = tmp_path / "shards.json"
    shard_file.write_text(json.dumps({"version": 1, "results": str(tmp_path / "r"), "function": "os:system",
                                      "tasks": [{"id": "t", "stage": "x", "clip": "", "total": 0,
                                                 "spec": {"kind": "transcode", "version": 1}}]}))
    refused = run_cli("worker", "--shards", str(shard_file), "--index", "0")
    assert refused.returncode != 0 and "unknown shard kind 'transcode'" in refused.stderr
    assert not (tmp_path / "r").exists()


def test_render_shards_ask_for_their_encoders_device(pm) -> None:
    from montage_core.interfaces import Accelerator, AcceleratorProbe
    from montage_core.stages.render import render_placement

    class Nvenc(Accelerator):
        name = "nvenc"

    software = pm.accelerators.get("software")
    probe = AcceleratorProbe("x", True, "")
    assert render_placement([(software, probe)]).resources == {}
    placement = render_placement([(Nvenc(), probe), (software, probe)])
    assert placement.accelerator == "nvenc" and placement.resources == {"accel-nvenc": 1}


def test_a_result_on_the_shared_folder_is_plain_data_of_this_run(tmp_path: Path) -> None:
    """A forged, stale or hostile result file is refused; nothing read from the share can run code."""
    import numpy as np
    import pickle

    from montage_core.worker import write_result

    series = {"motion": np.array([0.1, 0.25, 1 / 3]), "cut_score": np.arange(4, dtype=np.float32).reshape(2, 2)}
    write_result(tmp_path, "analysis-0001-r000", "run-a", {"series": series})
    back = load_result(tmp_path, "analysis-0001-r000", "run-a")["series"]
    assert all(np.array_equal(back[k], v) and back[k].dtype == v.dtype for k, v in series.items())  # bit-exact
    with pytest.raises(ValueError, match="not written by this run"):
        load_result(tmp_path, "analysis-0001-r000", "run-b")  # another run's (or a stale) file
    forged = tmp_path / "analysis-0002.json"
    forged.write_text(json.dumps({"version": 1, "task": "analysis-0003", "token": "run-a", "result": {}}))
    with pytest.raises(ValueError, match="not a result of shard analysis-0002"):
        load_result(tmp_path, "analysis-0002", "run-a")
    forged.write_text(json.dumps({"version": 1, "task": "analysis-0002", "token": "run-a",
                                  "result": {"__ndarray__": "|O", "shape": [1], "data": ["os.system"]}}))
    with pytest.raises(ValueError, match="array of object"):
        load_result(tmp_path, "analysis-0002", "run-a")
    (tmp_path / "analysis-0004.pickle").write_bytes(pickle.dumps({"a": 1}))  # what an attacker would plant
    with pytest.raises(FileNotFoundError):
        load_result(tmp_path, "analysis-0004", "run-a")  # a pickle is never opened
    for array in ({"__ndarray__": "nonsense", "shape": [1], "data": [1]},  # damaged or hand-made, with the
                  {"__ndarray__": "<f8", "shape": "x", "data": [1]},  # right token: refused as ValueError, which
                  {"__ndarray__": "<f8", "shape": [3], "data": [1]}):  # the backends turn into a failed shard
        forged.write_text(json.dumps({"version": 1, "task": "analysis-0002", "token": "run-a", "result": array}))
        with pytest.raises(ValueError, match="not a shard result"):
            load_result(tmp_path, "analysis-0002", "run-a")


def test_a_render_shard_whose_grade_reads_or_writes_files_is_refused(tmp_path: Path) -> None:
    """A shard file on shared storage can be rewritten by anyone who can write there: its grade is checked."""
    from montage_core.specs import RenderSpec, SegmentSource

    for grade in ("drawtext=textfile=/etc/hostname", f"curves=plot='{tmp_path / 'pwned'}'"):
        spec = RenderSpec(index=0, frames=25, fps=25.0, width=320, height=180, grade=grade, encoders=[],
                          accel="software", quality="preview", main=SegmentSource(source="/no/such.mp4", start=0.0))
        shard_file = tmp_path / "shards.json"
        write_shard_file(shard_file, [ShardTask("render-0000", "render", "/no/such.mp4", spec, 1)],
                         tmp_path / "results", token="t0ken")
        refused = run_cli("worker", "--shards", str(shard_file), "--index", "0")
        errors = [line for line in refused.stderr.splitlines() if line.startswith("error:")]
        assert refused.returncode != 0 and len(errors) == 1 and "shard render-0000: grade" in errors[0], refused.stderr
        assert not (tmp_path / "results").exists() and not (tmp_path / "pwned").exists()


def test_a_shard_files_ffmpeg_arguments_are_never_used(media: MediaFactory, tmp_path: Path,
                                                       montage_home: Path) -> None:
    """A rewritten shard file that names its own encoder arguments (here: write pictures elsewhere)
    still renders with the node's own encoder chain, resolved from the accelerator's name."""
    from montage_core.specs import RenderBatchSpec, RenderSpec, SegmentSource

    clip, _ = media.clip([(0, 2.0)])
    planted = tmp_path / "planted"
    hostile = {"name": "software", "input_args": [], "filter_suffix": "",
               "output_args": ["-c:v", "mjpeg", "-f", "image2", str(planted / "frame%03d.jpg")]}
    segments = [RenderSpec(index=i, frames=10, fps=25.0, width=160, height=96, grade="", encoders=[hostile],
                           accel="software", quality="preview", main=SegmentSource(source=str(clip), start=i * 0.5))
                for i in range(2)]
    planted.mkdir()
    shard_file = tmp_path / "shards.json"
    results = tmp_path / "results"
    write_shard_file(shard_file, [ShardTask("segment-0000-0001", "render", str(clip), RenderBatchSpec(segments=segments),
                                            0.8)], results, token="t0ken")
    done = run_cli("worker", "--shards", str(shard_file), "--index", "0")
    assert done.returncode == 0, done.stderr
    assert list(planted.iterdir()) == []
    rendered = load_result(results, "segment-0000-0001", "t0ken")["segments"]
    assert [s["encoder"] for s in rendered] == ["software", "software"]
    assert all(Path(s["path"]).suffix == ".mp4" and Path(s["path"]).stat().st_size > 0 for s in rendered)

    segments[0].quality = "--preset"  # a forged quality is a name check, not an argument
    write_shard_file(shard_file, [ShardTask("segment-0000", "render", str(clip), segments[0], 0.4)], results,
                     token="t0ken")
    refused = run_cli("worker", "--shards", str(shard_file), "--index", "0")
    assert refused.returncode != 0 and "unknown quality '--preset'" in refused.stderr, refused.stderr
