"""Input from someone else: a timeline file, a grade, a forged shard result. Refused with one line, no effect."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from montage_core.testing import MediaFactory, run_cli


def _timeline(clip: Path, music: Path, **changes: object) -> dict[str, object]:
    data: dict[str, object] = {
        "schema": "montage.timeline", "version": 1, "music": str(music), "duration": 2.0, "fps": 25.0,
        "width": 320, "height": 180, "style": "dynamic", "grade": "eq=saturation=1.1", "seed": 0,
        "cuts": [{"index": 0, "source": str(clip), "source_in": 0.0, "source_out": 1.0, "start": 0.0, "end": 1.0,
                  "phase": "intro", "shot": "a#0", "transition": {"kind": "cut", "duration": 0.0}},
                 {"index": 1, "source": str(clip), "source_in": 1.0, "source_out": 2.0, "start": 1.0, "end": 2.0,
                  "phase": "outro", "shot": "a#1", "transition": {"kind": "cut", "duration": 0.0}}]}
    data.update(changes)
    return data


@pytest.mark.parametrize("changes,message", [
    ({"grade": "drawtext=textfile=/etc/hostname:fontsize=40"}, "grade filter 'drawtext' is not allowed"),
    ({"grade": "eq=saturation=1[x];movie=/etc/passwd[y]"}, "no labels, ';' or escapes"),
    ({"grade": "curves=psfile=/etc/passwd"}, "curves may not read or write a file (psfile=)"),
    ({"grade": "curves=plot='TMP/pwned'"}, "curves may not read or write a file (plot=)"),  # it would write there
    ({"grade": "curves=none:'':'':'':'':'':'/etc/hostname'"}, "curves takes at most 6 unnamed values"),  # = psfile
    ({"grade": "selectivecolor=relative" + ":''" * 9 + ":'/etc/hostname'"}, "selectivecolor takes at most 10"),
    ({"grade": "hue=s='$(touch pwned)'"}, "is not allowed"),
    ({"fps": "25; rm -rf /"}, "fps '25; rm -rf /' must be a number"),
    ({"width": 321}, "width 321 must be an even whole number"),
    ({"duration": float("inf")}, "duration inf must be a number"),
    ({"cuts": "all of them"}, "'cuts' must be a list of cuts"),
])
def test_a_hostile_timeline_is_refused_before_any_work(changes: dict[str, object], message: str,
                                                        media: MediaFactory, tmp_path: Path) -> None:
    clip, _ = media.clip([(0, 1.0), (1, 1.0)])
    music, _ = media.music(seconds=2)
    path = tmp_path / "their timeline.json"
    hostile = json.dumps(_timeline(clip, music, **changes)).replace("TMP/", f"{tmp_path}/")
    path.write_text(hostile, encoding="utf-8")
    out = tmp_path / "out.mp4"
    proc = run_cli("render", str(path), "-o", str(out))
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode != 0 and len(errors) == 1 and message in errors[0], proc.stderr
    assert str(path) in errors[0] and "Traceback" not in proc.stderr
    assert not out.exists() and not (Path.cwd() / "pwned").exists() and not (tmp_path / "pwned").exists()


def test_a_timeline_whose_cuts_leave_a_gap_is_refused(media: MediaFactory, tmp_path: Path) -> None:
    from montage_core.errors import InputError
    from montage_core.models import Timeline

    clip, _ = media.clip([(0, 1.0), (1, 1.0)])
    music, _ = media.music(seconds=2)
    data = _timeline(clip, music)
    data["cuts"][1]["start"] = 1.5  # type: ignore[index]
    path = tmp_path / "gap.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(InputError, match=r"cut 1: starts at 1.5 s, not where the cut before ends \(1 s\)"):
        Timeline.load(path)
    path.write_text(json.dumps(_timeline(clip, music)), encoding="utf-8")
    assert Timeline.load(path).grade == "eq=saturation=1.1"  # the honest one loads


def test_the_media_root_refuses_hidden_files_and_parent_folders_each_by_its_name(tmp_path: Path) -> None:
    from montage_core.errors import UsageError
    from montage_core.web.media import confine

    (tmp_path / "clips").mkdir()
    (tmp_path / "clips" / "a.mp4").write_bytes(b"")
    assert confine(tmp_path, "clips/../clips/a.mp4") == tmp_path / "clips" / "a.mp4"
    for path in (".git/config", "clips/.key.mp4", "clips/../.ssh/id_ed25519"):
        with pytest.raises(UsageError, match=r"outside the media root \(hidden files are not served\)"):
            confine(tmp_path, path)
    for path in ("../secret.mp4", "clips/../../secret.mp4"):  # outside, not hidden: said as it is
        with pytest.raises(UsageError, match=r"is outside the media root$"):
            confine(tmp_path, path)
