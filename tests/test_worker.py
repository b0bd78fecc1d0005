"""`montage worker`: one shard per process, results per shard file, exit codes a cluster can act on."""

from __future__ import annotations

import json
from pathlib import Path

from montage_core.interfaces import ShardTask
from montage_core.models import ClipAnalysis
from montage_core.testing import MediaFactory, run_cli
from montage_core.worker import load_result, write_shard_file


def test_worker_runs_its_index_and_writes_its_own_result(media: MediaFactory, tmp_path: Path) -> None:
    good, cuts = media.clip([(0, 1.0), (1, 1.0)])
    bad = tmp_path / "bad.mp4"
    bad.write_text("not media")
    tasks = [ShardTask(f"analysis-{i:04d}", "analysis", str(clip), {"use_cache": True}) for i, clip in
             enumerate([good, bad])]
    shard_file = tmp_path / "shared" / "job" / "analysis.json"
    shard_file.parent.mkdir(parents=True)
    results = tmp_path / "shared" / "job" / "results"
    write_shard_file(shard_file, "montage_core.pipeline:analyze_shard", tasks, results)

    done = run_cli("worker", "--shards", str(shard_file), env={"JOB_COMPLETION_INDEX": "0"})
    assert done.returncode == 0, done.stderr
    events = [json.loads(line)["montage_event"] for line in done.stdout.splitlines() if line.startswith("{")]
    assert events[0]["state"] == "started" and events[-1]["state"] == "done"
    analysis = ClipAnalysis.from_dict(load_result(results, "analysis-0000"))
    assert [round(s.start * 25) for s in analysis.shots[1:]] == cuts

    failed = run_cli("worker", "--shards", str(shard_file), "--index", "1")
    assert failed.returncode == 3  # bad input: the cluster must not retry it
    assert f"error: {bad}: not a media file ffmpeg can read" in failed.stderr
    assert sorted(p.name for p in results.iterdir()) == ["analysis-0000.pickle"]

    missing = run_cli("worker", "--shards", str(shard_file), "--index", "7")
    assert missing.returncode == 2 and "shard index 7 is out of range (the file has 2 shards)" in missing.stderr
