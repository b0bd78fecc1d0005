"""Editor exports (EDL, OTIO) carry any file name: no injected EDL events, OTIO names and paths round-trip."""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from montage_core.stages.export import to_edl, to_otio
from montage_core.models import Cut, Timeline, Transition

FPS = 25.0
TC = r"\d{2}:\d{2}:\d{2}:\d{2}"
#: a CMX3600 event line: number, reel, track, transition (D has a duration), source in/out, record in/out
EVENT = re.compile(rf"^(\d{{3}})  (AX) +(V) +(C|D) +(\d{{3}} )?({TC}) ({TC}) ({TC}) ({TC})$")
COMMENTS = ("* FROM CLIP NAME: ", "* TO CLIP NAME: ", "* SOURCE FILE: ")

#: names a file system allows that a line-based or shell-minded reader could trip on
HOSTILE = [
    "line\nbreak.mp4",
    # a name that, split at its newline, is a well-formed event line
    "x\n002  AX       V     C        00:00:00:00 00:00:01:00 01:00:00:00 01:00:01:00\n* FROM CLIP NAME: y.mp4",
    "quote \"double\" 'single'.mp4",
    "$(touch pwned) `id`; rm -rf ~.mp4",
    "  spaces  around  .mp4",
    "ünïcødé 日本語 🎬.mp4",
    "100% #1 ?a=b&c.mp4",
    # every other character str.splitlines() (and many NLE parsers) break lines at, plus tab and ESC
    "cr\rcrlf\r\nvt\x0bff\x0cfs\x1cgs\x1drs\x1enel\x85ls\u2028ps\u2029tab\tesc\x1b.mp4",
]


def _timeline(names: list[str], folder: str = "/media/shoot day") -> Timeline:
    """One cut per name, every other one entered by a crossfade (a D event with FROM and TO names)."""
    cuts = []
    for i, name in enumerate(names):
        transition = Transition("crossfade", 0.4) if i % 2 else Transition("cut")
        cuts.append(Cut(index=i, source=f"{folder}/{name}", source_in=1.0, source_out=3.0, start=2.0 * i,
                        end=2.0 * (i + 1), phase="build", shot=f"{name}#0", score=0.5, transition=transition))
    return Timeline(music=f"{folder}/music\n$(x) ü.wav", duration=2.0 * len(names), fps=FPS, width=320,
                    height=180, style="dynamic", grade="", seed=0, cuts=cuts)


def _events(edl: str) -> list[tuple[str, ...]]:
    """The parsed event lines; fails on any line that is neither header, event, comment nor blank."""
    lines = edl.removesuffix("\n").split("\n")
    # Readers that split on any line break (Python's splitlines, CR-only or Unicode-aware ones) see the same lines.
    assert edl.splitlines() == lines
    assert lines[0].startswith("TITLE: ") and lines[1] == "FCM: NON-DROP FRAME"
    events = []
    for line in lines[2:]:
        if not line or line.startswith(COMMENTS):
            continue
        match = EVENT.match(line)
        assert match, f"line is no event: {line!r}"
        events.append(match.groups())
    return events


def test_edl_events_survive_hostile_names() -> None:
    timeline = _timeline(HOSTILE)
    edl = to_edl(timeline, "HOSTILE")
    events = _events(edl)
    # a hard cut is one event; a crossfade is a C event from the previous source then a D event
    crossfades = sum(1 for i, _ in enumerate(HOSTILE) if i % 2)
    assert len(events) == len(HOSTILE) + crossfades
    numbers = [int(e[0]) for e in events]
    assert numbers == sorted(numbers) and numbers[0] == 1 and numbers[-1] == len(HOSTILE)
    assert sum(1 for e in events if e[3] == "D") == crossfades
    comments = [line for line in edl.split("\n") if line.startswith(COMMENTS)]
    # one SOURCE FILE per cut, one FROM per cut, one TO per crossfade: nothing more, nothing less
    assert len(comments) == 2 * len(HOSTILE) + crossfades
    # the names stay readable: control characters show as escapes, the rest as is
    assert "* FROM CLIP NAME: line\\nbreak.mp4" in comments
    assert "* SOURCE FILE: /media/shoot day/quote \"double\" 'single'.mp4" in comments
    assert "* SOURCE FILE: /media/shoot day/ünïcødé 日本語 🎬.mp4" in comments
    assert any("cr\\rcrlf\\r\\nvt\\x0bff\\x0cfs\\x1cgs\\x1drs\\x1enel\\x85ls\\u2028ps\\u2029tab\\tesc\\x1b.mp4" in c
               for c in comments)


def test_edl_title_and_folder_stay_on_their_lines() -> None:
    timeline = _timeline(["a.mp4", "b.mp4"], folder="/media/new\nline")
    edl = to_edl(timeline, "TWO\nLINES\r")
    assert edl.split("\n")[0] == "TITLE: TWO\\nLINES\\r"
    assert len(_events(edl)) == 3
    assert "* SOURCE FILE: /media/new\\nline/a.mp4" in edl.split("\n")


def _uri_path(url: str) -> str:
    """The local path a file:// URL names."""
    parts = urlsplit(url)
    assert parts.scheme == "file" and not parts.query and not parts.fragment, url
    return unquote(parts.path, errors="surrogateescape")


@pytest.mark.parametrize("names", [HOSTILE, ["plain.mp4", "plain.mp4"]])
def test_otio_names_and_paths_round_trip(names: list[str]) -> None:
    import opentimelineio as otio

    timeline = _timeline(names)
    otl = otio.adapters.read_from_string(to_otio(timeline, "name\nwith $(x) ü"), "otio_json")
    assert otl.name == "name\nwith $(x) ü"
    clips = list(otl.video_tracks()[0].find_clips())
    assert len(clips) == len(names)
    for clip, cut in zip(clips, timeline.cuts):
        assert clip.name == Path(cut.source).name
        assert _uri_path(clip.media_reference.target_url) == str(Path(cut.source).resolve())
        assert clip.metadata["montage"]["shot"] == cut.shot
    transitions = [t for t in otl.video_tracks()[0] if isinstance(t, otio.schema.Transition)]
    assert len(transitions) == sum(1 for c in timeline.cuts[1:] if c.transition.kind == "crossfade")
    (music,) = otl.audio_tracks()[0].find_clips()
    assert music.name == Path(timeline.music).name
    assert _uri_path(music.media_reference.target_url) == str(Path(timeline.music).resolve())


def test_a_name_that_is_not_utf8() -> None:
    import opentimelineio as otio

    # On Linux a file name is bytes; Python shows an undecodable byte as a lone surrogate.
    name = os.fsdecode(b"caf\xe9 take\xff.mp4")
    timeline = _timeline([name, "b.mp4"])
    edl = to_edl(timeline)
    edl.encode("utf-8")  # the EDL is written as UTF-8
    assert len(_events(edl)) == 3
    assert "* SOURCE FILE: /media/shoot day/caf\\udce9 take\\udcff.mp4" in edl.split("\n")
    (clip, _) = otio.adapters.read_from_string(to_otio(timeline), "otio_json").video_tracks()[0].find_clips()
    assert clip.name == "caf\ufffd take\ufffd.mp4"  # shown replaced; the URL keeps the exact bytes
    assert os.fsencode(_uri_path(clip.media_reference.target_url)) == b"/media/shoot day/caf\xe9 take\xff.mp4"
