"""Timeline exports for editors: OpenTimelineIO (.otio), CMX3600 (.edl), Final Cut Pro XML (.fcpxml)
and Final Cut Pro 7 XML (.xml, the xmeml that Premiere Pro and DaVinci Resolve import)."""

from __future__ import annotations

import logging
import os
import unicodedata
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ..errors import MontageError
from ..models import MediaInfo, Timeline, write_atomic

log = logging.getLogger("montage.export")

#: Unicode categories a name must not carry into an EDL line as is: control characters (Cc: \n, \r,
#: \v, \f, \x1c-\x1e, \x85 all end a line for some reader), line and paragraph separators (Zl, Zp)
#: and lone surrogates (Cs: a file name that is not UTF-8, which the UTF-8 file could not hold)
_NOT_IN_A_LINE = frozenset({"Cc", "Zl", "Zp", "Cs"})

#: the frame rates of Final Cut Pro projects
_FCPX_RATES = (23.98, 24, 25, 29.97, 30, 50, 59.94, 60)

#: what each editor export is called in a warning
_EXPORT_NAMES = {"otio": "OpenTimelineIO", "edl": "CMX3600 EDL", "fcpxml": "Final Cut Pro XML",
                 "xmeml": "Final Cut Pro 7 XML"}


def _timecode(frame: int, fps: float) -> str:
    """Non-drop-frame SMPTE timecode at the nearest integer rate."""
    rate = max(1, int(round(fps)))
    seconds, ff = divmod(frame, rate)
    minutes, ss = divmod(seconds, 60)
    hh, mm = divmod(minutes, 60)
    return f"{hh:02d}:{mm:02d}:{ss:02d}:{ff:02d}"


def _one_line(text: str) -> str:
    """``text`` with each character that could break or corrupt an EDL line shown as its escape (``\\n``)."""
    # A raw newline in a file name would end the comment line and let the rest of the name be read
    # as an event (CMX3600 readers go line by line). An escape keeps the name readable for the editor.
    # Backslashes stay as they are, for readability: a name holding a backslash and an "n" reads like
    # an escaped newline, an ambiguity a comment line can afford.
    return "".join(ch.encode("unicode_escape").decode("ascii") if unicodedata.category(ch) in _NOT_IN_A_LINE else ch
                   for ch in text)


def _xml_name(text: str) -> str:
    """``text`` as an XML 1.0 document can hold it: as :func:`_one_line` shows it, U+FFFE and U+FFFF escaped."""
    # XML 1.0 has no way to write most control characters, lone surrogates or these two
    # non-characters, not even as &#...; references: a reader stops at them.
    return "".join(f"\\u{ord(ch):04x}" if ch in "\ufffe\uffff" else ch for ch in _one_line(text))


def _utf8(text: str) -> str:
    """``text`` as valid UTF-8: a non-UTF-8 file name's undecodable bytes become U+FFFD."""
    # OTIO's serializer only takes valid UTF-8; the exact bytes still travel in the file:// URL.
    return os.fsencode(text).decode("utf-8", "replace")


def probe_sources(timeline: Timeline) -> dict[str, MediaInfo]:
    """What ffprobe says about each clip and the music of ``timeline``; a file it cannot read is
    left out, with a warning (the exports then do without its frame rate and length)."""
    from ..ffmpeg import probe_media

    media = {}
    for path in dict.fromkeys([*(c.source for c in timeline.cuts), timeline.music]):
        try:
            media[path] = probe_media(path)
        except (MontageError, OSError, ValueError) as exc:
            log.warning("%s (its frame rate and length are left out of the editor exports)", exc)
    return media


def _halves(timeline: Timeline) -> list[int]:
    """For each cut boundary (before the first cut, between cuts, after the last), half its dissolve
    in output frames, exactly as the renderer splits it (``render.segment_specs``): a dissolve into
    cut k runs from ``frame(start) - half`` to ``frame(start) + half``."""
    fps = timeline.fps
    return [0] + [int(round(c.transition.duration * fps / 2)) for c in timeline.cuts[1:]] + [0]


def _source_rate(media: Mapping[str, MediaInfo] | None, path: str, default: float) -> float:
    """The frame rate ffprobe found for ``path``, else ``default``."""
    info = (media or {}).get(path)
    return info.fps if info is not None and info.fps > 0 else default


def to_edl(timeline: Timeline, title: str = "MONTAGE", media: Mapping[str, MediaInfo] | None = None) -> str:
    """CMX3600: one event per cut, a dissolve as a C event from the outgoing source followed by a
    D event, then one AA (stereo audio) event for the music.

    Record timecodes run at the timeline's rate (the list's one FCM line) from 01:00:00:00. Source
    timecodes are each source's own: frames counted at the rate ffprobe found in ``media`` (the
    timeline's rate for a source missing there), so that an editor's conform finds the frame the
    montage shows. Timecode has whole-number rates only; for a source at 29.97, 23.976 or a phone's
    variable 29.87 fps the frames are counted at the true rate and written as non-drop-frame
    timecode of the nearest whole rate (30, 24, 30), the way NTSC non-drop timecode numbers frames.
    Where a source's rate is not the record rate, an event's source and record durations differ
    (the record duration is what plays); a reader that insists they match, as OTIO's cmx_3600
    reader does unless told to ignore timecode mismatches, refuses such an event.
    """
    fps = timeline.fps
    record_offset = 3600 * max(1, int(round(fps)))  # record timecode starts at 01:00:00:00, as NLEs expect
    halves = _halves(timeline)
    lines = [f"TITLE: {_one_line(title)}", "FCM: NON-DROP FRAME", ""]
    event = 0
    prev_src_out, prev_rate = 0, fps
    for i, cut in enumerate(timeline.cuts):
        rate = _source_rate(media, cut.source, fps)
        h_in, h_out = halves[i], halves[i + 1]
        # An event runs from where its dissolve starts (or its cut) to where the next dissolve starts:
        # the renderer shows the source's frame at source_in first, at frame(start) - h_in.
        rec_in = timeline.frame(cut.start) - h_in + record_offset
        rec_out = timeline.frame(cut.end) - h_out + record_offset
        src_in = int(round(cut.source_in * rate))
        src_out = int(round((cut.source_in + (rec_out - rec_in) / fps) * rate))
        name = _one_line(Path(cut.source).name)
        source = (f"{_timecode(src_in, rate)} {_timecode(src_out, rate)} "
                  f"{_timecode(rec_in, fps)} {_timecode(rec_out, fps)}")
        event += 1
        if h_in and i > 0:
            prev = timeline.cuts[i - 1]
            # the outgoing source, zero frames long, at the frame the dissolve leaves it from
            held = _timecode(prev_src_out, prev_rate)
            lines.append(f"{event:03d}  AX       V     C        {held} {held} "
                         f"{_timecode(rec_in, fps)} {_timecode(rec_in, fps)}")
            lines.append(f"{event:03d}  AX       V     D    {2 * h_in:03d} {source}")
            lines.append(f"* FROM CLIP NAME: {_one_line(Path(prev.source).name)}")
            lines.append(f"* TO CLIP NAME: {name}")
        else:
            lines.append(f"{event:03d}  AX       V     C        {source}")
            lines.append(f"* FROM CLIP NAME: {name}")
        lines.append(f"* SOURCE FILE: {_one_line(cut.source)}")
        lines.append("")
        prev_src_out, prev_rate = src_out, rate
    # The music from its start under the whole montage, as the render muxes it. Audio has no frames
    # of its own; its timecode runs at the record rate, as audio events in a CMX3600 list do.
    event += 1
    end = timeline.frame_count
    lines.append(f"{event:03d}  AX       AA    C        {_timecode(0, fps)} {_timecode(end, fps)} "
                 f"{_timecode(record_offset, fps)} {_timecode(record_offset + end, fps)}")
    lines.append(f"* FROM CLIP NAME: {_one_line(Path(timeline.music).name)}")
    lines.append(f"* SOURCE FILE: {_one_line(timeline.music)}")
    lines.append("")
    return "\n".join(lines)


def _has_timecode(rate: float) -> bool:
    """Whether OTIO writes SMPTE timecode at ``rate`` (29.97 and 30000/1001 both count as NTSC)."""
    import opentimelineio as otio

    try:
        otio.opentime.to_timecode(otio.opentime.RationalTime(0, rate), rate, False)
    except ValueError:
        return False
    return True


def _otio_timeline(timeline: Timeline, name: str, media: Mapping[str, MediaInfo] | None,
                   clip_name: Callable[[str], str], *, strict: bool = False) -> Any:
    """The montage as an OTIO timeline: a video track of clips (with dissolves) and the music on an
    audio track, every time on the timeline's frame grid, from 01:00:00:00 (at a rate timecode has).

    With ``media``, each clip's media reference has an available range of the source's length at
    its own frame rate, and its first frame is the source frame the EDL names, brought to the
    nearest timeline frame. ``strict``: a source missing from ``media`` is an error (the NLE
    adapters need every available range). ``clip_name`` makes a name fit the format.
    """
    import opentimelineio as otio

    fps = timeline.fps
    RT, TimeRange = otio.opentime.RationalTime, otio.opentime.TimeRange
    halves = _halves(timeline)

    def reference(path: str, rate: float | None) -> Any:
        info = (media or {}).get(path)
        if info is None or info.duration <= 0 or (rate is None and info.fps <= 0):
            if strict:
                raise MontageError(f"{path}: its frame rate and length are unknown (ffprobe could not read it)")
            available = None
        else:
            own = info.fps if rate is None else rate
            available = TimeRange(RT(0, own), RT(round(info.duration * own), own))
        return otio.schema.ExternalReference(target_url=Path(path).resolve().as_uri(), available_range=available)

    otl = otio.schema.Timeline(name=clip_name(name))
    if _has_timecode(fps):  # a start timecode exists only at a rate timecode has
        otl.global_start_time = RT(3600 * round(fps), fps)
    otl.metadata["montage"] = {"style": timeline.style, "seed": timeline.seed, "tempo": timeline.tempo}
    video = otio.schema.Track(name="V1", kind=otio.schema.TrackKind.Video)
    cursor = 0
    for i, cut in enumerate(timeline.cuts):
        h_in = halves[i]
        if h_in and len(video):
            video.append(otio.schema.Transition(
                name="dissolve", transition_type=otio.schema.TransitionTypes.SMPTE_Dissolve,
                in_offset=RT(h_in, fps), out_offset=RT(h_in, fps)))
        rec_in, rec_out = timeline.frame(cut.start), timeline.frame(cut.end)
        if rec_in > cursor:
            video.append(otio.schema.Gap(source_range=TimeRange(RT(0, fps), RT(rec_in - cursor, fps))))
        ref = reference(cut.source, None)
        if ref.available_range is not None:
            rate = ref.available_range.duration.rate
            first = round(round(cut.source_in * rate) / rate * fps)  # the EDL's source frame, on this grid
        else:
            first = round(cut.source_in * fps)
        # The clip's visible range starts at its cut point, half the dissolve after source_in: the
        # handle before it is what the dissolve shows.
        clip = otio.schema.Clip(name=clip_name(Path(cut.source).name), media_reference=ref,
                                source_range=TimeRange(RT(first + h_in, fps), RT(rec_out - rec_in, fps)))
        ref.name = clip.name  # the file's name as FCP 7 XML shows it (it would take the URL's escaped one)
        clip.metadata["montage"] = {"phase": cut.phase, "shot": _utf8(cut.shot), "score": cut.score}
        if cut.crop:  # the reframing box: [t, x, y, w, h] keyframes, see montage_core.models.Cut.crop
            clip.metadata["montage"]["crop"] = [list(k) for k in cut.crop]
        video.append(clip)
        cursor = rec_out
    audio = otio.schema.Track(name="A1", kind=otio.schema.TrackKind.Audio)
    # Audio has no frames of its own: its available range is counted at the timeline's rate.
    music = reference(timeline.music, fps)
    audio.append(otio.schema.Clip(name=clip_name(Path(timeline.music).name), media_reference=music,
                                  source_range=TimeRange(RT(0, fps), RT(timeline.frame_count, fps))))
    music.name = audio[0].name
    otl.tracks.extend([video, audio])
    return otl


def to_otio(timeline: Timeline, name: str = "montage", media: Mapping[str, MediaInfo] | None = None) -> str:
    """An OTIO timeline: a video track of clips (with dissolves) and the music on an audio track;
    with ``media`` (see :func:`probe_sources`), each source's available range at its own rate."""
    import opentimelineio as otio

    return otio.adapters.write_to_string(_otio_timeline(timeline, name, media, _utf8), "otio_json")


def to_fcpxml(timeline: Timeline, name: str, media: Mapping[str, MediaInfo]) -> str:
    """Final Cut Pro XML (FCPXML 1.8) through OTIO's ``fcpx_xml`` adapter (otio-fcpx-xml-adapter).

    What the adapter writes: clips on a spine, the music as a connected audio clip, times as
    rational seconds. It leaves out transitions (the clips meet at their cut points), and it gives
    each asset the timeline's format (frame rate), whatever the source's; an asset's length is
    the source's own.
    """
    import opentimelineio as otio

    # Final Cut's project rates, the ones the adapter has frame durations for; it would write any
    # other rate as a format without one (or as the whole rate below it), which Final Cut rejects.
    if not any(abs(timeline.fps - rate) < 1e-6 for rate in _FCPX_RATES):
        raise MontageError(f"Final Cut Pro projects have no {timeline.fps:g} fps format; "
                           "they run at 23.98, 24, 25, 29.97, 30, 50, 59.94 or 60 fps")

    # The adapter looks clips up by name in an XPath written with single quotes, which a name
    # holding one breaks; a typographic apostrophe reads the same (the file's URL stays exact).
    def clip_name(text: str) -> str:
        return _xml_name(text).replace("'", "\u2019")

    return otio.adapters.write_to_string(_otio_timeline(timeline, name, media, clip_name, strict=True), "fcpx_xml")


def to_xmeml(timeline: Timeline, name: str, media: Mapping[str, MediaInfo]) -> str:
    """Final Cut Pro 7 XML (xmeml 4), which Premiere Pro and DaVinci Resolve import, through OTIO's
    ``fcp_xml`` adapter (otio-fcp-adapter): a video track with cross dissolves and the music on
    an audio track.

    Clip in and out points are written on the sequence's frame grid (the clip items' rate is the
    sequence's): Premiere and Resolve read them so whatever rate a clip item declares. Each file
    carries its length at its own rate; the adapter writes a start timecode for every file, and
    OTIO's timecode has only the rates 23.976, 24, 25, 29.97, 30, 48, 50, 59.94 and 60, so a file
    at another rate (10, 15 fps) is described at the sequence's rate instead.
    """
    import opentimelineio as otio

    RT = otio.opentime.RationalTime
    if not _has_timecode(timeline.fps):
        raise MontageError(f"Final Cut Pro 7 XML needs a timecode rate, which {timeline.fps:g} fps is not; "
                           "23.976, 24, 25, 29.97, 30, 48, 50, 59.94 and 60 fps are")
    otl = _otio_timeline(timeline, name, media, _xml_name, strict=True)
    for clip in otl.find_clips():
        available = clip.media_reference.available_range
        if not _has_timecode(available.duration.rate):
            seconds = available.duration.to_seconds()
            clip.media_reference.available_range = otio.opentime.TimeRange(
                RT(0, timeline.fps), RT(round(seconds * timeline.fps), timeline.fps))
    # The sequence's frame size, which Premiere sets a new sequence to (the adapter carries an
    # xmeml element through from a timeline's "fcp_xml" metadata).
    otl.metadata["fcp_xml"] = {"media": {"video": {"format": {"samplecharacteristics": {
        "width": timeline.width, "height": timeline.height, "pixelaspectratio": "square"}}}}}
    return otio.adapters.write_to_string(otl, "fcp_xml")


def export_paths(video: Path) -> dict[str, Path]:
    """The edit exports written next to ``video``."""
    stem = video.with_suffix("")
    return {"timeline_json": Path(f"{stem}.timeline.json"), "otio": Path(f"{stem}.otio"), "edl": Path(f"{stem}.edl"),
            "fcpxml": Path(f"{stem}.fcpxml"), "xmeml": Path(f"{stem}.xml")}


def write_exports(timeline: Timeline, video: Path) -> dict[str, str]:
    """timeline.json, .otio, .edl, .fcpxml and .xml next to ``video``, each written atomically;
    returns their paths.

    The timeline is the montage's own record (re-rendering needs it): failing to write it fails.
    An editor export that cannot be made is a ``warning:`` naming the file and the problem, and
    no file (an earlier run's would not match this video); the montage stands without it.
    """
    paths = {kind: str(path) for kind, path in export_paths(video).items()}
    write_atomic(paths["timeline_json"], timeline.to_json())
    media = probe_sources(timeline)
    makers: dict[str, Callable[[], str]] = {
        "otio": lambda: to_otio(timeline, video.stem, media),
        "edl": lambda: to_edl(timeline, video.stem.upper()[:60], media),
        "fcpxml": lambda: to_fcpxml(timeline, video.stem, media),
        "xmeml": lambda: to_xmeml(timeline, video.stem, media),
    }
    for kind, make in makers.items():
        try:
            write_atomic(paths[kind], make())
        except Exception as exc:  # an adapter can fail in any way; the video is done and stands
            try:
                Path(paths[kind]).unlink(missing_ok=True)
            except OSError:
                pass  # not a file we could have written (check_output_path keeps inputs safe)
            problem = " ".join(str(exc).split()) or type(exc).__name__
            log.warning("%s: no %s export (%s)", paths[kind], _EXPORT_NAMES[kind], problem)
    return paths
