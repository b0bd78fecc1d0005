"""Render: segments encoded in parallel through the encoder chain, joined without re-encoding, music muxed."""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import stat
import subprocess
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from ..config import cache_dir
from ..errors import InputError, MontageError, ShardError
from ..ffmpeg import ffmpeg_binary, run_ffmpeg
from ..hwaccel import diagnose
from ..interfaces import Accelerator, AcceleratorProbe, ProgressEvent, ShardTask
from ..models import RenderResult, SegmentResult, Timeline, publish
from ..records import record_problem, write_record
from ..specs import Placement, RenderBatchSpec, RenderSpec, SegmentSource
from ..loudness import DEFAULT_LOUDNESS, Fades
from .export import export_paths
from .sound import SoundInBackground

log = logging.getLogger("montage.render")

AUDIO_BITRATE = "192k"


def normalise_filter(width: int, height: int, fps: float, seconds: float,
                     crop: list[list[float]] | None = None) -> str:
    """One resolution and frame rate for every source; other aspect ratios letterboxed, never
    stretched, or with ``crop`` keyframes the box they describe (of the output's aspect) filling it."""
    if crop:
        from ..reframe import crop_filter

        # After fps: the crop's ``t`` is then the segment's own clock, from 0 at its first frame.
        fit = f"{crop_filter(crop)},scale={width}:{height}:flags=bicubic"
    else:
        fit = (f"scale={width}:{height}:force_original_aspect_ratio=decrease:flags=bicubic,"
               f"pad={width}:{height}:(ow-iw)/2:(oh-ih)/2:color=black")
    return (f"fps={fps:g},{fit},setsar=1,format=yuv420p,"
            f"tpad=stop_mode=clone:stop_duration={seconds:.3f},setpts=PTS-STARTPTS")


def encoder_entries(chain: list[tuple[Accelerator, AcceleratorProbe]], quality: str) -> list[dict[str, Any]]:
    """The encoder chain as a render spec carries it: plain data a worker on any host can use."""
    return [{"name": a.name, "input_args": a.input_args(p), "filter_suffix": a.filter_suffix(p),
             "output_args": a.encode_args("h264", quality, p)} for a, p in chain]


def render_placement(chain: list[tuple[Accelerator, AcceleratorProbe]]) -> Placement:
    """Where render shards should run: next to the device of the chain's first (preferred)
    hardware encoder, advertised by workers as ``accel-NAME``; anywhere for software."""
    first = chain[0][0].name if chain else "software"
    return Placement() if first == "software" else Placement(accelerator=first, resources={f"accel-{first}": 1})


def segment_specs(timeline: Timeline, chain: list[tuple[Accelerator, AcceleratorProbe]],
                  quality: str, accel: str = "auto") -> list[RenderSpec]:
    """One render spec per cut: the frames it owns and, when it dissolves into the next, that blend.

    ``accel`` and ``quality`` travel with the spec so a cluster node can resolve its own chain.
    """
    from ..reframe import shift_keys

    fps = timeline.fps
    cuts = timeline.cuts
    halves = [0] + [int(round(c.transition.duration * fps / 2)) for c in cuts[1:]] + [0]
    encoders = encoder_entries(chain, quality)
    placement = render_placement(chain)
    fade_frames = int(round(ending_fade(timeline) * fps))
    specs = []
    for i, cut in enumerate(cuts):
        h_in, h_out = halves[i], halves[i + 1]
        first, last = timeline.frame(cut.start) + h_in, timeline.frame(cut.end) + h_out
        nxt = cuts[i + 1] if h_out else None
        specs.append(RenderSpec(
            index=i, frames=last - first, fps=fps, width=timeline.width, height=timeline.height, grade=timeline.grade,
            encoders=encoders, accel=accel, quality=quality, placement=placement,
            main=SegmentSource(source=cut.source, start=cut.source_in + 2 * h_in / fps,
                               crop=shift_keys(cut.crop, 2 * h_in / fps)),
            blend=SegmentSource(source=nxt.source, start=nxt.source_in, frames=2 * h_out, crop=nxt.crop)
            if nxt else None,
            fade_out=min(fade_frames, last - first) if i == len(cuts) - 1 else 0))
    return specs


def ending_fade(timeline: Timeline) -> float:
    """Seconds over which picture and music fade out together at the end: the timeline's fade,
    at most a quarter of the montage and the last cut's length (the picture fades in one segment)."""
    if not timeline.cuts or timeline.audio_fade_out <= 0:
        return 0.0
    final = timeline.cuts[-1]
    # the last segment: the last cut less the half of the dissolve into it that the segment before holds
    last = (timeline.frame(final.end) - timeline.frame(final.start)
            - (int(round(final.transition.duration * timeline.fps / 2)) if len(timeline.cuts) > 1 else 0))
    frames = min(int(round(timeline.audio_fade_out * timeline.fps)), int(timeline.duration * timeline.fps / 4), last)
    return max(0, frames) / timeline.fps


#: a render shard holds consecutive segments of at most about this much picture, so a long
#: montage is spread over every worker, shows progress and loses little when interrupted
BATCH_SECONDS = 30.0
#: and at most this many cuts: ffmpeg opens (and probes) each one's source when it starts
BATCH_CUTS = 16


def batch_segments(specs: list[RenderSpec], workers: int) -> list[list[RenderSpec]]:
    """``specs`` in consecutive groups of about equal length: at least one per worker (while
    there are cuts), none over :data:`BATCH_SECONDS` or :data:`BATCH_CUTS`."""
    if not specs:
        return []
    frames = sum(s.frames for s in specs)
    count = max(min(workers, len(specs)), math.ceil(frames / specs[0].fps / BATCH_SECONDS),
                math.ceil(len(specs) / BATCH_CUTS))
    groups: list[list[RenderSpec]] = [[]]
    filled = 0
    for spec in specs:
        if groups[-1] and (filled >= frames * len(groups) / count or len(groups[-1]) >= BATCH_CUTS):
            groups.append([])
        groups[-1].append(spec)
        filled += spec.frames
    return groups


def _segment_key(spec: RenderSpec) -> str:
    """Cache key: what the picture depends on plus each source's size and mtime, so a changed
    source re-renders (not the index, nor where the shard runs)."""
    stamps = [(s, st.st_size, st.st_mtime_ns) for s, st in ((s, os.stat(s)) for s in spec.sources())]
    picture = {k: v for k, v in spec.to_json().items() if k not in ("index", "placement", "kind", "version")}
    if not spec.fade_out:  # a field added later: segments without a fade keep the keys they had
        del picture["fade_out"]
    for source in ("main", "blend"):  # the same for the crop: letterboxed segments keep their keys
        if picture.get(source) and picture[source].get("crop") is None:
            del picture[source]["crop"]
    text = json.dumps({"spec": picture, "stamps": stamps}, sort_keys=True)
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


#: source decoded past a segment's end, in output frames: the fps filter may want the next frame
#: to place the last one; anything short is held by tpad, so more would only be decoded and dropped
DECODE_MARGIN_FRAMES = 3


def _segment_graph(spec: RenderSpec, encoder: dict[str, Any], first_input: int, label: str) -> tuple[list[str], str]:
    """The inputs one segment reads (numbered from ``first_input``) and its filter chain, ending in
    ``[label]``: normalised, dissolving into its blend, graded, faded out. Frames past its end are
    for the caller to drop."""
    fps, frames = spec.fps, spec.frames
    main, blend = spec.main, spec.blend
    seconds = frames / fps
    margin = DECODE_MARGIN_FRAMES / fps
    norm = normalise_filter(spec.width, spec.height, fps, seconds + margin, main.crop)
    args = [*encoder["input_args"], "-ss", f"{main.start:.6f}", "-t", f"{seconds + margin:.6f}", "-i", main.source]
    graph = f"[{first_input}:v]{norm}[{label}a]"
    last = f"[{label}a]"
    if blend:
        blend_seconds = blend.frames / fps
        args += [*encoder["input_args"], "-ss", f"{blend.start:.6f}", "-t", f"{blend_seconds + margin:.6f}",
                 "-i", blend.source]
        graph += (f";[{first_input + 1}:v]"
                  f"{normalise_filter(spec.width, spec.height, fps, blend_seconds + margin, blend.crop)}[{label}b]"
                  f";{last}[{label}b]xfade=transition=fade:duration={blend_seconds:.6f}"
                  f":offset={(frames - blend.frames) / fps:.6f}[{label}x]")
        last = f"[{label}x]"
    fade = f"fade=t=out:s={frames - spec.fade_out}:n={spec.fade_out}" if spec.fade_out else ""
    post = ",".join(f for f in (spec.grade, fade) if f) or "null"
    return args, f"{graph};{last}{post}[{label}]"


def _encode_tail(encoder: dict[str, Any]) -> str:
    return ",".join(f for f in ("format=yuv420p", encoder["filter_suffix"]) if f)


def _segment_command(spec: RenderSpec, encoder: dict[str, Any], out: str) -> list[str]:
    inputs, graph = _segment_graph(spec, encoder, 0, "s")
    return [ffmpeg_binary(), "-hide_banner", "-nostdin", "-loglevel", "error", "-y", *inputs,
            "-filter_complex", f"{graph};[s]{_encode_tail(encoder)}[v]", "-map", "[v]", "-frames:v", str(spec.frames),
            "-r", f"{spec.fps:g}", *encoder["output_args"], "-an", "-video_track_timescale", "90000", "-f", "mp4", out]


def _batch_command(specs: list[RenderSpec], encoder: dict[str, Any], folder: Path) -> list[str]:
    """One ffmpeg process for ``specs``: their chains joined by ``concat`` into one encode, a
    keyframe forced at each boundary and the output split there (``segment`` muxer), so
    ``folder``/00000.mp4, 00001.mp4 … each hold one segment, starting at timestamp 0 as a lone
    segment's file does."""
    args = [ffmpeg_binary(), "-hide_banner", "-nostdin", "-loglevel", "error", "-nostats", "-progress", "pipe:1",
            "-y"]
    chains, labels, boundaries, inputs, total = [], [], [], 0, 0
    for k, spec in enumerate(specs):
        spec_inputs, graph = _segment_graph(spec, encoder, inputs, f"s{k}")
        args += spec_inputs
        inputs += 2 if spec.blend else 1
        chains.append(f"{graph};[s{k}]trim=end_frame={spec.frames},setpts=PTS-STARTPTS[t{k}]")
        labels.append(f"[t{k}]")
        total += spec.frames
        boundaries.append(total)
    splits = boundaries[:-1]
    graph = ";".join(chains) + f";{''.join(labels)}concat=n={len(specs)}:v=1:a=0,{_encode_tail(encoder)}[v]"
    return [*args, "-filter_complex", graph, "-map", "[v]", "-frames:v", str(total), "-r", f"{specs[0].fps:g}",
            *encoder["output_args"], "-an", "-force_key_frames", "expr:" + "+".join(f"eq(n,{b})" for b in splits),
            # negative decoding times kept as a lone segment's file has them (an edit list), so
            # every segment joins the same way
            "-avoid_negative_ts", "disabled", "-f", "segment", "-segment_format", "mp4",
            "-segment_frames", ",".join(map(str, splits)), "-reset_timestamps", "1",
            "-segment_format_options", "video_track_timescale=90000", str(folder / "%05d.mp4")]


def cached_segment_problem(segment: Path, frames: int) -> str | None:
    """Why a cached segment cannot be reused ("" when it is missing), or None when it is sound:
    its size, frame count and digest against the record written when it was checked."""
    return record_problem(segment, frames=frames)


def check_rendered_segment(path: Path, frames: int, *, decode: bool = True) -> str | None:
    """Check a freshly rendered segment: None when it holds exactly ``frames`` frames that read
    cleanly. ``decode``: decode every frame; else read every packet (the container whole, one
    packet a frame), for a piece of a shared software encode (see :func:`_render_together`)."""
    from ..ffmpeg import count_video_frames

    counted, problem = count_video_frames(path, decode=decode)
    verb = "decode" if decode else "read"
    if problem:
        return f"it does not {verb} cleanly ({problem.splitlines()[-1]})"
    if counted != frames:
        return f"it {verb}s to {counted} frames, the cut needs {frames}"
    return None


def _segment_path(spec: RenderSpec) -> Path:
    key = _segment_key(spec)
    return cache_dir() / "segments" / key[:2] / f"{key}.mp4"


def _reusable(spec: RenderSpec, out: Path) -> bool:
    """Whether the cached segment at ``out`` can be used as it is (a damaged one is said so)."""
    problem = cached_segment_problem(out, spec.frames)
    if problem:
        # Replaced atomically when rendered again, never deleted first: another cut of this job
        # may use the same segment and be about to read it.
        log.warning("segment %d (%s): cached file %s is unusable (%s); rendering it again", spec.index,
                    Path(spec.main.source).name, out, problem)
    return problem is None


def _segment_result(spec: RenderSpec, out: Path, encoder: str, attempts: list[str] | None = None) -> dict[str, Any]:
    return {"index": spec.index, "path": str(out), "frames": spec.frames, "encoder": encoder,
            "attempts": attempts or []}


def _keep_segment(rendered: Path, out: Path, frames: int) -> None:
    """Move a checked segment into the cache and record it (what later reuse is checked against)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    os.replace(rendered, out)
    write_record(out, frames=frames)


def render_alone(spec: RenderSpec, out: Path) -> dict[str, Any]:
    """Render one segment in a process of its own, falling back along the encoder chain."""
    from ..procs import child_options, owner_tag, remove_orphaned_temps

    key = out.stem
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_orphaned_temps(out.parent, f".{key}.")
    attempts: list[str] = []
    for encoder in spec.encoders:
        fd, tmp = tempfile.mkstemp(prefix=f".{key}.{owner_tag()}.", suffix=".mp4", dir=out.parent)
        os.close(fd)
        try:
            proc = subprocess.run(_segment_command(spec, encoder, tmp), capture_output=True, text=True,
                                  errors="replace", **child_options())
            reason = diagnose(proc.stderr) if proc.returncode != 0 else check_rendered_segment(Path(tmp), spec.frames)
            if reason is None:
                _keep_segment(Path(tmp), out, spec.frames)
                return _segment_result(spec, out, encoder["name"], attempts)
        finally:
            Path(tmp).unlink(missing_ok=True)
        attempts.append(f"{encoder['name']}: {reason}")
        log.warning("segment %d: encoder %s failed (%s); trying the next one", spec.index, encoder["name"], reason)
    raise ShardError(f"segment {spec.index} ({Path(spec.main.source).name}): every encoder failed: "
                     + "; ".join(attempts), transient=False)


def render_segment(task: ShardTask, emit: Callable[[ProgressEvent], None]) -> dict[str, Any]:
    """Shard function: render one segment, falling back along the encoder chain; reuse a finished one.

    A segment enters the cache only once it decodes to exactly the planned frames, and is reused
    only while it still matches the record written then; anything else is rendered again.
    """
    spec: RenderSpec = task.payload
    out = _segment_path(spec)
    if _reusable(spec, out):
        emit(ProgressEvent.of(task, "done", task.total, message="reused"))
        return _segment_result(spec, out, "cached")
    emit(ProgressEvent.of(task, "running"))
    result = render_alone(spec, out)
    emit(ProgressEvent.of(task, "done", task.total, message=result["encoder"]))
    return result


#: encoders whose forced keyframes start a closed group of pictures (libx264's IDR), so the output
#: of one encode can be split into segments that each decode on their own
SPLITTABLE_ENCODERS = frozenset({"software"})


def render_batch(task: ShardTask, emit: Callable[[ProgressEvent], None]) -> dict[str, Any]:
    """Shard function: render consecutive segments in one encode (see :class:`RenderBatchSpec`).

    Cached segments are reused; the others are rendered together and split, and each piece is
    checked (its packets read: the container whole, exactly its frames) before it enters the cache. A segment whose piece
    fails, or all of them when the shared encode fails, is rendered alone with the full encoder
    chain, so one bad source costs that segment, not the batch.
    """
    batch: RenderBatchSpec = task.payload
    results: dict[int, dict[str, Any]] = {}
    todo: list[tuple[RenderSpec, Path]] = []
    for spec in batch.segments:
        out = _segment_path(spec)
        if _reusable(spec, out):
            results[spec.index] = _segment_result(spec, out, "cached")
        else:
            todo.append((spec, out))
    fps = batch.segments[0].fps if batch.segments else 1.0
    done_seconds = sum(s.frames for s in batch.segments if s.index in results) / fps
    emit(ProgressEvent.of(task, "running", done_seconds))

    def progress(frames: int) -> None:
        emit(ProgressEvent.of(task, "running", done_seconds + frames / fps))

    if len(todo) > 1 and todo[0][0].encoders and todo[0][0].encoders[0]["name"] in SPLITTABLE_ENCODERS:
        results.update(_render_together(todo, progress))
    failures: list[str] = []
    for spec, out in todo:  # every one is tried, so one bad source does not stop the others being kept
        if spec.index not in results:
            try:
                results[spec.index] = render_alone(spec, out)
            except ShardError as exc:
                failures.append(str(exc))
    if failures:
        raise ShardError("; ".join(failures), transient=False)
    encoders = sorted({r["encoder"] for r in results.values()})
    emit(ProgressEvent.of(task, "done", task.total, message=", ".join(encoders)))
    return {"segments": [results[s.index] for s in batch.segments]}


def _render_together(todo: list[tuple[RenderSpec, Path]], progress: Callable[[int], None]) -> dict[int, dict[str, Any]]:
    """Render ``todo`` in one ffmpeg process with the chain's first encoder; the segments whose
    pieces came out whole, by index (the rest are left for :func:`render_alone`)."""
    import shutil

    from ..procs import child_options, owner_tag, remove_orphaned_temps

    specs = [spec for spec, _ in todo]
    encoder = specs[0].encoders[0]
    root = cache_dir() / "segments"
    root.mkdir(parents=True, exist_ok=True)
    remove_orphaned_temps(root, ".batch.")
    folder = Path(tempfile.mkdtemp(prefix=f".batch.{owner_tag()}.", dir=root))
    names = f"segments {specs[0].index}-{specs[-1].index}"
    try:
        with tempfile.TemporaryFile(mode="w+", encoding="utf-8", errors="replace") as errors:
            proc = subprocess.Popen(_batch_command(specs, encoder, folder), stdout=subprocess.PIPE, stderr=errors,
                                    text=True, errors="replace", **child_options())
            try:
                assert proc.stdout is not None
                for line in proc.stdout:  # ffmpeg's -progress: key=value lines, a block about twice a second
                    if line.startswith("frame="):
                        progress(int(line[6:].strip() or 0))
            except BaseException:  # interrupted: ffmpeg stops with this shard
                proc.kill()
                proc.wait()
                raise
            proc.wait()
            errors.seek(0)
            stderr = errors.read()
        if proc.returncode != 0:
            log.warning("%s: rendering them in one encode failed (%s); rendering each alone", names,
                        diagnose(stderr))
            return {}
        done: dict[int, dict[str, Any]] = {}
        for k, (spec, out) in enumerate(todo):
            piece = folder / f"{k:05d}.mp4"
            # Each piece's packets are read, not decoded: they come from one libx264 encode that
            # exited cleanly, and what can still go wrong between (a short write, a split in the
            # wrong place) shows in the container and the frame count. Decoding them would decode
            # the whole montage a second time (about 8 % of the render's CPU). A segment rendered
            # alone, by a hardware encoder above all, is decoded.
            reason = check_rendered_segment(piece, spec.frames, decode=False) if piece.is_file() else \
                "it was not written"
            if reason:
                log.warning("segment %d (%s): its part of the shared encode is unusable (%s); rendering it alone",
                            spec.index, Path(spec.main.source).name, reason)
                continue
            _keep_segment(piece, out, spec.frames)
            done[spec.index] = _segment_result(spec, out, encoder["name"])
        return done
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def montage_fades(timeline: Timeline) -> Fades:
    """The music's fades: in at the start, out with the picture at the end."""
    return Fades(timeline.duration, ending_fade(timeline))


def join_segments(timeline: Timeline, segments: list[SegmentResult], out: Path, sound: Path) -> None:
    """Concatenate segments without re-encoding, mux the mastered ``sound`` (see
    :mod:`.sound`), check the result (every planned frame, audio as long as the picture), and only
    then rename it into place."""
    from ..procs import owner_tag, remove_orphaned_temps

    remove_orphaned_temps(out.parent, f".{out.name}.")  # what a killed run left half-written
    with tempfile.TemporaryDirectory(prefix="montage-join-") as tmp:
        listing = Path(tmp) / "segments.txt"
        # The concat demuxer's own quoting: wrap in '…' and write a quote as '\''. Each segment's
        # exact length goes with it: left to itself the demuxer places the next segment after the
        # container's length, which MP4 gives in whole milliseconds rounded up, so hundreds of
        # segments drift late by a tenth of a second and the last frames fall past the end.
        listing.write_text("".join("file '" + s.path.replace("'", "'\\''") + "'\n"
                                   f"duration {s.frames / timeline.fps:.9f}\n" for s in segments), encoding="utf-8")
        fd, part = tempfile.mkstemp(prefix=f".{out.name}.{owner_tag()}.", suffix=".part", dir=out.parent)
        os.close(fd)
        try:
            run_ffmpeg([
                "-f", "concat", "-safe", "0", "-i", str(listing), "-i", str(sound),
                "-map", "0:v:0", "-map", "1:a:0", "-c", "copy", "-t", f"{timeline.duration:.6f}",
                "-movflags", "+faststart", "-f", "mp4", part,
            ], what=f"writing {out}")
            check_output_file(Path(part), timeline, out)
            publish(part, out)
        except BaseException:
            Path(part).unlink(missing_ok=True)
            raise


def check_output_file(path: Path, timeline: Timeline, final: Path) -> None:
    """The joined file holds round(duration × fps) frames and audio within one frame of the picture."""
    from ..ffmpeg import audio_seconds, count_video_frames

    planned = int(round(timeline.duration * timeline.fps))
    frames, problem = count_video_frames(path, decode=False)
    if problem or frames != planned:
        raise MontageError(f"{final}: not written: the joined video holds {frames} frames where {planned} were "
                           f"planned{f' ({problem})' if problem else ''}")
    audio = audio_seconds(path)
    if abs(audio - timeline.duration) > 1.0 / timeline.fps:
        raise MontageError(f"{final}: not written: its audio lasts {audio:.3f} s, the picture {timeline.duration:.3f} s")


def check_output_dir(out: Path) -> None:
    """Fail before any work if the output cannot be written."""
    folder = out.parent
    if not folder.exists():
        raise MontageError(f"{folder}: output folder does not exist")
    if out.is_dir():
        raise MontageError(f"{out}: is a folder; give a file name such as {out / 'montage.mp4'}")
    try:  # a real write: permission bits say nothing for root, read-only mounts, full disks
        fd, probe = tempfile.mkstemp(prefix=".montage-write-test-", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise MontageError(f"{folder}: output folder is not writable ({exc.strerror})") from None


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or (a.exists() and b.exists() and os.path.samefile(a, b))
    except OSError:
        return False


def check_output_path(out: Path, media: Iterable[str | Path] = (), timeline: str | Path | None = None) -> None:
    """Fail before any work unless ``out`` is a new path or a regular file that is none of the
    inputs (clips, music, script, ``timeline``); the exports beside it must not replace media."""
    check_output_dir(out)
    if out.exists():
        mode = os.stat(out).st_mode
        if not stat.S_ISREG(mode):
            kind = ("a character device" if stat.S_ISCHR(mode) else "a block device" if stat.S_ISBLK(mode)
                    else "a pipe" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode) else "not a file")
            raise MontageError(f"{out}: exists and is {kind}, not a regular file; give a new output file name")
    media = [Path(m) for m in media]
    for source in [*media, *([Path(timeline)] if timeline else [])]:
        if _same_file(out, source):
            raise MontageError(f"{out}: is one of the inputs ({source}); give another output file name")
    for export in export_paths(out).values():
        for source in media:
            if _same_file(export, source):
                raise MontageError(f"{out}: its export {export.name} would replace the input {source}; "
                                   "give another output file name")


def render_timeline(
    timeline: Timeline, output: Path, manager: Any, backend: Any, *, accel: str = "auto",
    quality: str = "standard", on_event: Callable[[ProgressEvent], None] = lambda e: None,
    store: Any = None, job_id: str = "", chain: list[tuple[Accelerator, AcceleratorProbe]] | None = None,
    timeline_file: str | Path | None = None, loudness: float | None = DEFAULT_LOUDNESS, label: str = "",
) -> RenderResult:
    """Encode the segments on the backend, join them, mux the music, check the result, write the
    exports. Nothing appears at ``output`` unless complete.

    ``chain`` is the encoder chain when the caller has resolved (and logged) it already;
    ``timeline_file`` is the timeline's own file, which the video must not replace; ``loudness``
    is the music's integrated loudness target in LUFS (``None``: as it is); ``label`` tells this
    render's shards from another's of the same job (another ``--format``).
    """
    from ..accel import check_quality
    from ..engine import run_shards
    from .export import write_exports

    check_quality(quality)
    check_output_path(output, [c.source for c in timeline.cuts] + [timeline.music], timeline_file)
    for source in {c.source for c in timeline.cuts} | {timeline.music}:
        if not Path(source).is_file():
            raise InputError(source, "no such file (the timeline refers to it)")
    if chain is None:
        chain = job_encoder_chain(backend, list(manager.accelerators), accel)
        log.info("encoder chain: %s", " → ".join(a.name for a, _ in chain))
    specs = segment_specs(timeline, chain, quality, accel)
    name = f"segment-{label}-" if label else "segment-"
    # The sound needs none of the picture: it is mastered (or found mastered) while segments render.
    sound = SoundInBackground(timeline.music, montage_fades(timeline), loudness, AUDIO_BITRATE)
    if backend.render_batches:
        groups = batch_segments(specs, getattr(backend, "workers", None) or os.cpu_count() or 1)
        tasks = [ShardTask(f"{name}{g[0].index:04d}-{g[-1].index:04d}", "render", g[0].main.source,
                           RenderBatchSpec(segments=g, placement=g[0].placement, resolve_on_node=g[0].resolve_on_node),
                           sum(s.frames for s in g) / timeline.fps) for g in groups]
        outcomes = run_shards(backend, render_batch, tasks, on_event=on_event, store=store, job_id=job_id)
    else:
        tasks = [ShardTask(f"{name}{s.index:04d}", "render", s.main.source, s, s.frames / timeline.fps) for s in specs]
        outcomes = run_shards(backend, render_segment, tasks, on_event=on_event, store=store, job_id=job_id)
    failed = [outcomes[t.id] for t in tasks if not outcomes[t.id].ok]
    if failed:
        raise MontageError(f"{len(failed)} of {len(tasks)} render shards failed; first: {failed[0].error} "
                           "(finished segments are kept and reused on the next run)")
    results = [outcomes[t.id].result for t in tasks]
    segments = [SegmentResult(**r) for result in results for r in (result.get("segments") or [result])]
    join_segments(timeline, segments, output, sound.result())
    exports = write_exports(timeline, output)
    return RenderResult(str(output), exports["timeline_json"], exports["otio"], exports["edl"], segments,
                        timeline.duration)


def job_encoder_chain(backend: Any, accelerators: list[Accelerator], accel: str) -> list[tuple[Accelerator, AcceleratorProbe]]:
    """The encoder chain for a job. On a backend whose shards run on other machines the
    accelerator is a node's property: only the name is checked here, each node resolves its
    own chain (software stands in for this host's)."""
    from ..accel import chosen_accelerator, encoder_chain

    if not backend.remote_nodes:
        return encoder_chain(accelerators, accel)
    chosen_accelerator(accelerators, accel)  # the name must exist; whether it works is each node's question
    return encoder_chain(accelerators, "software")
