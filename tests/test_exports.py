"""Editor exports (EDL, OTIO, FCPXML, FCP 7 XML): any file name is carried safely (no injected EDL
events, names and paths round-trip), and real clips at their own frame rates read back frame-exactly."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from montage_core.models import Cut, MediaInfo, Timeline, Transition
from montage_core.stages.export import probe_sources, to_edl, to_fcpxml, to_otio, to_xmeml, write_exports
from montage_core.testing import MediaFactory, run_cli

FPS = 25.0
TC = r"\d{2}:\d{2}:\d{2}:\d{2}"
#: a CMX3600 event line: number, reel, channel (V picture, AA stereo audio), transition (D has a
#: duration), source in/out, record in/out
EVENT = re.compile(rf"^(\d{{3}})  (AX) +(V|AA) +(C|D) +(\d{{3}} )?({TC}) ({TC}) ({TC}) ({TC})$")
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
    # a hard cut is one event; a crossfade is a C event from the previous source then a D event;
    # the music is one more event, on the audio channels
    crossfades = sum(1 for i, _ in enumerate(HOSTILE) if i % 2)
    assert len(events) == len(HOSTILE) + crossfades + 1
    numbers = [int(e[0]) for e in events]
    assert numbers == sorted(numbers) and numbers[0] == 1 and numbers[-1] == len(HOSTILE) + 1
    assert sum(1 for e in events if e[3] == "D") == crossfades
    assert [e[2] for e in events].count("AA") == 1 and events[-1][2] == "AA"
    comments = [line for line in edl.split("\n") if line.startswith(COMMENTS)]
    # one SOURCE FILE per cut, one FROM per cut, one TO per crossfade, a FROM and a SOURCE FILE for
    # the music: nothing more, nothing less
    assert len(comments) == 2 * len(HOSTILE) + crossfades + 2
    assert "* FROM CLIP NAME: music\\n$(x) ü.wav" in comments
    assert "* SOURCE FILE: /media/shoot day/music\\n$(x) ü.wav" in comments
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
    assert len(_events(edl)) == 4
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
    assert len(_events(edl)) == 4
    assert "* SOURCE FILE: /media/shoot day/caf\\udce9 take\\udcff.mp4" in edl.split("\n")
    (clip, _) = otio.adapters.read_from_string(to_otio(timeline), "otio_json").video_tracks()[0].find_clips()
    assert clip.name == "caf\ufffd take\ufffd.mp4"  # shown replaced; the URL keeps the exact bytes
    assert os.fsencode(_uri_path(clip.media_reference.target_url)) == b"/media/shoot day/caf\xe9 take\xff.mp4"


# --- real clips at their own frame rates, in a 30 fps montage ----------------------------------------

#: the montage's rate; the sources run at others (a 29.97 one too, whose timecode counts 30 a second)
RATE = 30.0
#: (frames per second as ffmpeg takes it, file name): spaces, non-ASCII, an apostrophe and an ampersand
SOURCES = [("10", "ten fps ü.mp4"), ("15", "quinze 日本 l'été.mp4"), ("24", "film 24 🎬 take 2.mp4"),
           ("25", "pal & secam.mp4"), ("30000/1001", "ntsc 29.97 ñ.mp4")]
#: cut points in output frames; half of each cut's dissolve in (0: a hard cut), as the planner makes them
BOUNDS = [0, 17, 40, 61, 83, 105]
HALVES = [0, 0, 3, 2, 0, 0]
#: where each cut starts in its source, in seconds: off every source's frame grid on purpose
STARTS = [0.4137, 1.1031, 0.7801, 1.2343, 0.5219]


def _clip(folder: Path, rate: str, name: str) -> Path:
    """A real 3 s H.264 clip at ``rate`` frames per second."""
    path = folder / name
    if not path.exists():
        subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", f"testsrc=size=160x90:rate={rate}", "-t", "3",
                        "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", str(path)], check=True)
    return path


def _planned(sources: list[Path], music: Path) -> Timeline:
    """Cuts as the planner writes them: source_out covers the cut and both its dissolve handles."""
    fps = RATE
    cuts = []
    for k, (source, start) in enumerate(zip(sources, STARTS)):
        a, b, h_in, h_out = BOUNDS[k], BOUNDS[k + 1], HALVES[k], HALVES[k + 1]
        cuts.append(Cut(index=k, source=str(source), source_in=start,
                        source_out=round(start + (b - a + h_in + h_out) / fps, 6), start=a / fps, end=b / fps,
                        phase="build", shot=f"{source.name}#0", score=0.5,
                        transition=Transition("crossfade", 2 * h_in / fps) if h_in else Transition("cut")))
    return Timeline(music=str(music), duration=BOUNDS[-1] / fps, fps=fps, width=160, height=90, style="dynamic",
                    grade="", seed=0, cuts=cuts)


@pytest.fixture(scope="module")
def shoot(media: MediaFactory) -> tuple[Timeline, dict[str, MediaInfo]]:
    folder = media.folder / "shoot day"
    folder.mkdir(exist_ok=True)
    sources = [_clip(folder, rate, name) for rate, name in SOURCES]
    music, _ = media.music(seconds=4)
    timeline = _planned(sources, music)
    probed = probe_sources(timeline)
    assert [round(probed[str(s)].fps, 3) for s in sources] == [10, 15, 24, 25, 29.970]
    # The test's numbers must be frame-exact without doubt: no source frame lands on a rounding tie.
    for k, cut in enumerate(timeline.cuts):
        rate = probed[cut.source].fps
        for seconds in (cut.source_in, cut.source_out - 2 * HALVES[k + 1] / RATE):
            assert abs(seconds * rate % 1 - 0.5) > 0.01, (cut.source, seconds)
    return timeline, probed


@pytest.mark.parametrize("kind", ["fcpxml", "xmeml"])
def test_nle_export_reads_back_frame_exact(kind: str, shoot: tuple[Timeline, dict[str, MediaInfo]]) -> None:
    """Read back with the adapter that wrote it: every clip where the montage shows it, from the
    source frame the montage shows, and the music under it all."""
    import opentimelineio as otio

    timeline, probed = shoot
    write, adapter = {"fcpxml": (to_fcpxml, "fcpx_xml"), "xmeml": (to_xmeml, "fcp_xml")}[kind]
    otl = otio.adapters.read_from_string(write(timeline, "trip ü l'été", probed), adapter)
    fps = timeline.fps
    (video,) = [t for t in otl.tracks if t.kind == otio.schema.TrackKind.Video]
    clips = list(video.find_clips())
    assert len(clips) == len(timeline.cuts)
    for k, (clip, cut) in enumerate(zip(clips, timeline.cuts)):
        source_rate = probed[cut.source].fps
        # record in/out: the cut's own frames on the montage's grid, exactly
        placed = video.range_of_child(clip)
        assert placed.start_time.rescaled_to(fps).value == timeline.frame(cut.start), clip.name
        assert placed.end_time_exclusive().rescaled_to(fps).value == timeline.frame(cut.end), clip.name
        # source in: at the cut point the montage shows the frame half the dissolve after source_in
        shown = clip.source_range.start_time.to_seconds() - HALVES[k] / fps
        assert abs(shown * source_rate - round(cut.source_in * source_rate)) <= 1, (clip.name, shown, cut.source_in)
        # the clip's media: its file (by an absolute file:// URL) and its length
        assert _uri_path(clip.media_reference.target_url) == cut.source
        available = clip.media_reference.available_range
        assert available.start_time.value == 0
        assert abs(available.duration.to_seconds() - probed[cut.source].duration) * source_rate < 1
        if kind == "xmeml" and source_rate >= 24:  # 10 and 15 fps have no timecode: at the sequence's rate
            assert abs(available.duration.rate - source_rate) < 1e-3, clip.name
        # the name the editor sees (the Final Cut one with a typographic apostrophe: see to_fcpxml)
        expected = Path(cut.source).name
        assert clip.name == (expected.replace("'", "\u2019") if kind == "fcpxml" else expected)
    if kind == "xmeml":  # FCPXML through its adapter has no transitions: the clips meet at the cut points
        transitions = [t for t in video if isinstance(t, otio.schema.Transition)]
        assert [(t.in_offset.value, t.out_offset.value) for t in transitions] == [(h, h) for h in HALVES if h]
    music = [c for t in otl.tracks if t.kind == otio.schema.TrackKind.Audio for c in t.find_clips()]
    assert len(music) == 1 and _uri_path(music[0].media_reference.target_url) == timeline.music
    heard = music[0].range_in_parent()
    assert heard.start_time.value == 0 and heard.duration.rescaled_to(fps).value == timeline.frame_count


def test_otio_carries_each_source_at_its_own_rate(shoot: tuple[Timeline, dict[str, MediaInfo]]) -> None:
    import opentimelineio as otio

    timeline, probed = shoot
    otl = otio.adapters.read_from_string(to_otio(timeline, "trip", probed), "otio_json")
    assert otl.global_start_time.to_timecode() == "01:00:00:00"
    for clip, cut in zip(otl.video_tracks()[0].find_clips(), timeline.cuts):
        available = clip.media_reference.available_range
        assert available.duration.rate == probed[cut.source].fps
        assert available.duration.value == round(probed[cut.source].duration * probed[cut.source].fps)


def _tc_frames(tc: str, rate: float) -> int:
    """Frames a non-drop-frame timecode counts at the nearest whole ``rate``."""
    base = round(rate)
    hh, mm, ss, ff = (int(part) for part in tc.split(":"))
    assert ff < base, (tc, rate)
    return ((hh * 60 + mm) * 60 + ss) * base + ff


def _edl_blocks(edl: str) -> list[tuple[list[tuple[str, ...]], dict[str, str]]]:
    """Each event: its lines (parsed) and its comments by key (``FROM CLIP NAME``, ``SOURCE FILE`` …)."""
    blocks: list[tuple[list[tuple[str, ...]], dict[str, str]]] = []
    for line in edl.split("\n")[2:]:
        match = EVENT.match(line)
        if match:
            if not blocks or blocks[-1][0][0][0] != match.group(1):
                blocks.append(([], {}))
            blocks[-1][0].append(match.groups())
        elif line.startswith("* "):
            key, _, value = line[2:].partition(": ")
            blocks[-1][1][key] = value
        else:
            assert not line, line
    return blocks


def test_edl_source_timecodes_run_at_each_source_rate(shoot: tuple[Timeline, dict[str, MediaInfo]]) -> None:
    timeline, probed = shoot
    fps, hour = timeline.fps, 3600 * 30
    edl = to_edl(timeline, "TRIP", probed)
    assert edl.split("\n")[1] == "FCM: NON-DROP FRAME"
    blocks = _edl_blocks(edl)
    assert len(blocks) == len(timeline.cuts) + 1
    previous_out = None
    for k, (cut, (lines, comments)) in enumerate(zip(timeline.cuts, blocks)):
        rate = probed[cut.source].fps
        assert comments["SOURCE FILE"] == cut.source
        *held, (number, _, channel, kind, fade, src_in, src_out, rec_in, rec_out) = lines
        assert int(number) == k + 1 and channel == "V"
        # source in/out: the cut's source_in, and its source_out less the handle the next dissolve
        # shows, in frames at the source's own rate
        assert _tc_frames(src_in, rate) == round(cut.source_in * rate), (cut.source, src_in)
        assert _tc_frames(src_out, rate) == round((cut.source_out - 2 * HALVES[k + 1] / fps) * rate), cut.source
        # record in/out: from where the dissolve into it starts to where the next one starts
        assert _tc_frames(rec_in, fps) == hour + timeline.frame(cut.start) - HALVES[k]
        assert _tc_frames(rec_out, fps) == hour + timeline.frame(cut.end) - HALVES[k + 1]
        if HALVES[k]:
            # a dissolve: the outgoing source held, zero frames long, where the dissolve leaves it
            (_, _, _, held_kind, _, held_in, held_out, held_rec_in, held_rec_out), = held
            assert kind == "D" and int(fade) == 2 * HALVES[k] and held_kind == "C"
            assert held_in == held_out == previous_out and held_rec_in == held_rec_out == rec_in
            assert comments["FROM CLIP NAME"] == Path(timeline.cuts[k - 1].source).name
            assert comments["TO CLIP NAME"] == Path(cut.source).name
        else:
            assert kind == "C" and not held and comments["FROM CLIP NAME"] == Path(cut.source).name
        previous_out = src_out
    (music_line,), music = blocks[-1]
    _, _, channel, kind, _, src_in, src_out, rec_in, rec_out = music_line
    assert channel == "AA" and kind == "C"
    assert music == {"FROM CLIP NAME": Path(timeline.music).name, "SOURCE FILE": timeline.music}
    assert (_tc_frames(src_in, fps), _tc_frames(src_out, fps)) == (0, timeline.frame_count)
    assert (_tc_frames(rec_in, fps), _tc_frames(rec_out, fps)) == (hour, hour + timeline.frame_count)


def test_edl_reads_in_otio_cmx3600_reader(media: MediaFactory) -> None:
    """Where every source runs at the record rate, OTIO's strict CMX3600 reader (record and source
    durations must agree) takes the list: the cuts, the dissolves and the music on A1 and A2."""
    import opentimelineio as otio

    folder = media.folder / "same rate"
    folder.mkdir(exist_ok=True)
    sources = [_clip(folder, "30", f"take {k} ü.mp4") for k in range(len(STARTS))]
    music, _ = media.music(seconds=4)
    timeline = _planned(sources, music)
    otl = otio.adapters.read_from_string(to_edl(timeline, "SAME", probe_sources(timeline)), "cmx_3600", rate=30)
    video = otl.tracks[0]
    clips = list(video.find_clips())
    assert [c.name for c in clips] == [s.name for s in sources]
    for k, (clip, cut) in enumerate(zip(clips, timeline.cuts)):
        assert clip.source_range.start_time.value == round(cut.source_in * 30)
        assert video.range_of_child(clip).start_time.value == timeline.frame(cut.start) - HALVES[k]
    transitions = [t for t in video if isinstance(t, otio.schema.Transition)]
    assert [t.out_offset.value for t in transitions] == [2 * h for h in HALVES if h]
    audio = [t for t in otl.tracks if t.kind == otio.schema.TrackKind.Audio]
    assert [t.name for t in audio] == ["A1", "A2"]
    for track in audio:
        (clip,) = track.find_clips()
        assert clip.name == music.name and clip.source_range.duration.value == timeline.frame_count


def test_every_export_is_written_beside_the_video(shoot: tuple[Timeline, dict[str, MediaInfo]],
                                                   tmp_path: Path) -> None:
    import opentimelineio as otio

    timeline, _ = shoot
    paths = write_exports(timeline, tmp_path / "trip ü.mp4")
    assert sorted(Path(p).name for p in paths.values()) == sorted(
        ["trip ü.timeline.json", "trip ü.otio", "trip ü.edl", "trip ü.fcpxml", "trip ü.xml"])
    for kind, adapter in (("otio", "otio_json"), ("fcpxml", "fcpx_xml"), ("xmeml", "fcp_xml")):
        otl = otio.adapters.read_from_file(paths[kind], adapter)
        assert len(list(otl.video_tracks()[0].find_clips())) == len(timeline.cuts), kind
    assert not list(tmp_path.glob("*.part"))


@pytest.mark.slow
def test_an_export_that_cannot_be_made_warns_and_the_montage_stands(
        shoot: tuple[Timeline, dict[str, MediaInfo]], tmp_path: Path, montage_home: Path) -> None:
    """A 12 fps montage: Final Cut has no such project rate and FCP 7 XML no such timecode. The run
    succeeds; each of the two is one warning naming its file, no file (not even an earlier one's),
    and the run lists the exports that were written."""
    timeline, _ = shoot
    out = tmp_path / "slow ü.mp4"
    stale = [out.with_suffix(".fcpxml"), out.with_suffix(".xml")]
    for path in stale:
        path.write_text("from an earlier run")
    proc = run_cli("run", *(c.source for c in timeline.cuts), "--music", timeline.music, "-o", str(out),
                   "--fps", "12", "--resolution", "160x90", "--quality", "preview", env={"MONTAGE_WORKERS": "1"})
    assert proc.returncode == 0, proc.stderr
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("warning:")]
    assert warnings == [
        f"warning: {stale[0]}: no Final Cut Pro XML export (Final Cut Pro projects have no 12 fps format; "
        "they run at 23.98, 24, 25, 29.97, 30, 50, 59.94 or 60 fps)",
        f"warning: {stale[1]}: no Final Cut Pro 7 XML export (Final Cut Pro 7 XML needs a timecode rate, "
        "which 12 fps is not; 23.976, 24, 25, 29.97, 30, 48, 50, 59.94 and 60 fps are)",
    ], proc.stderr
    assert not any(path.exists() for path in stale)
    written = [out.with_suffix(".timeline.json"), out.with_suffix(".otio"), out.with_suffix(".edl")]
    assert f"exports: {', '.join(map(str, written))}" in proc.stdout.splitlines(), proc.stdout
    assert all(path.is_file() for path in written) and out.is_file()
    assert "Traceback" not in proc.stderr
