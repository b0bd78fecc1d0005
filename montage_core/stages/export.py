"""Timeline exports for editors: OpenTimelineIO (.otio) and CMX3600 (.edl)."""

from __future__ import annotations

import os
import unicodedata
from pathlib import Path

from ..models import Timeline, write_atomic

#: Unicode categories a name must not carry into an EDL line as is: control characters (Cc: \n, \r,
#: \v, \f, \x1c-\x1e, \x85 all end a line for some reader), line and paragraph separators (Zl, Zp)
#: and lone surrogates (Cs: a file name that is not UTF-8, which the UTF-8 file could not hold)
_NOT_IN_A_LINE = frozenset({"Cc", "Zl", "Zp", "Cs"})


def _timecode(frame: int, fps: float) -> str:
    """Non-drop-frame SMPTE timecode at the nearest integer rate."""
    rate = int(round(fps))
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


def _utf8(text: str) -> str:
    """``text`` as valid UTF-8: a non-UTF-8 file name's undecodable bytes become U+FFFD."""
    # OTIO's serializer only takes valid UTF-8; the exact bytes still travel in the file:// URL.
    return os.fsencode(text).decode("utf-8", "replace")


def to_edl(timeline: Timeline, title: str = "MONTAGE") -> str:
    """CMX3600: one event per cut; a crossfade is a D (dissolve) event from the previous source."""
    fps = timeline.fps
    record_offset = 3600 * int(round(fps))  # record timecode starts at 01:00:00:00, as NLEs expect
    lines = [f"TITLE: {_one_line(title)}", "FCM: NON-DROP FRAME", ""]
    event = 0
    for i, cut in enumerate(timeline.cuts):
        src_in = int(round(cut.source_in * fps))
        rec_in = timeline.frame(cut.start) + record_offset
        rec_out = timeline.frame(cut.end) + record_offset
        src_out = src_in + (rec_out - rec_in)
        name = _one_line(Path(cut.source).name)
        fade = int(round(cut.transition.duration * fps))
        if cut.transition.kind == "crossfade" and fade and i > 0:
            prev = timeline.cuts[i - 1]
            prev_out = int(round(prev.source_out * fps))
            event += 1
            lines.append(f"{event:03d}  AX       V     C        {_timecode(prev_out, fps)} {_timecode(prev_out, fps)} "
                         f"{_timecode(rec_in, fps)} {_timecode(rec_in, fps)}")
            lines.append(f"{event:03d}  AX       V     D    {fade:03d} {_timecode(src_in, fps)} {_timecode(src_out, fps)} "
                         f"{_timecode(rec_in, fps)} {_timecode(rec_out, fps)}")
            lines.append(f"* FROM CLIP NAME: {_one_line(Path(prev.source).name)}")
            lines.append(f"* TO CLIP NAME: {name}")
        else:
            event += 1
            lines.append(f"{event:03d}  AX       V     C        {_timecode(src_in, fps)} {_timecode(src_out, fps)} "
                         f"{_timecode(rec_in, fps)} {_timecode(rec_out, fps)}")
            lines.append(f"* FROM CLIP NAME: {name}")
        lines.append(f"* SOURCE FILE: {_one_line(cut.source)}")
        lines.append("")
    return "\n".join(lines)


def to_otio(timeline: Timeline, name: str = "montage") -> str:
    """An OTIO timeline: a video track of clips (with dissolves) and the music on an audio track."""
    import opentimelineio as otio

    fps = timeline.fps

    def rt(seconds: float) -> otio.opentime.RationalTime:
        return otio.opentime.RationalTime(round(seconds * fps), fps)

    otl = otio.schema.Timeline(name=_utf8(name))
    otl.metadata["montage"] = {"style": timeline.style, "seed": timeline.seed, "tempo": timeline.tempo}
    video = otio.schema.Track(name="V1", kind=otio.schema.TrackKind.Video)
    for cut in timeline.cuts:
        if cut.transition.kind == "crossfade" and cut.transition.duration > 0 and len(video):
            half = rt(cut.transition.duration / 2)
            video.append(otio.schema.Transition(
                name="dissolve", transition_type=otio.schema.TransitionTypes.SMPTE_Dissolve,
                in_offset=half, out_offset=half))
        # The visible range on the timeline; the source handles around it feed the dissolves.
        handle = cut.transition.duration / 2
        clip = otio.schema.Clip(
            name=_utf8(Path(cut.source).name),
            media_reference=otio.schema.ExternalReference(target_url=Path(cut.source).resolve().as_uri()),
            source_range=otio.opentime.TimeRange(rt(cut.source_in + handle), rt(cut.duration)),
        )
        clip.metadata["montage"] = {"phase": cut.phase, "shot": _utf8(cut.shot), "score": cut.score}
        video.append(clip)
    audio = otio.schema.Track(name="A1", kind=otio.schema.TrackKind.Audio)
    audio.append(otio.schema.Clip(
        name=_utf8(Path(timeline.music).name),
        media_reference=otio.schema.ExternalReference(target_url=Path(timeline.music).resolve().as_uri()),
        source_range=otio.opentime.TimeRange(rt(0), rt(timeline.duration)),
    ))
    otl.tracks.extend([video, audio])
    return otio.adapters.write_to_string(otl, "otio_json")


def export_paths(video: Path) -> dict[str, Path]:
    """The edit exports written next to ``video``."""
    stem = video.with_suffix("")
    return {"timeline_json": Path(f"{stem}.timeline.json"), "otio": Path(f"{stem}.otio"), "edl": Path(f"{stem}.edl")}


def write_exports(timeline: Timeline, video: Path) -> dict[str, str]:
    """timeline.json, .otio and .edl next to ``video``; each written atomically."""
    paths = {kind: str(path) for kind, path in export_paths(video).items()}
    write_atomic(paths["timeline_json"], timeline.to_json())
    write_atomic(paths["otio"], to_otio(timeline, video.stem))
    write_atomic(paths["edl"], to_edl(timeline, video.stem.upper()[:60]))
    return paths
