"""One decode pass per clip: ffmpeg → downscaled luma pipe → every registered analyzer."""

from __future__ import annotations

import logging
import os
import queue
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..ffmpeg import ffmpeg_binary, last_error_line, probe_media
from ..interfaces import Analyzer
from ..models import ClipAnalysis, MediaInfo, Shot
from . import cache

log = logging.getLogger("montage.analysis")

ANALYSIS_WIDTH = 256
BATCH = 32
#: decoded frames held between ffmpeg and the kernels, at most
READ_AHEAD_BYTES = 32 << 20
#: a frame whose cut score passes both this floor and ``CUT_RATIO`` × its neighbourhood is a cut
CUT_THRESHOLD = 0.2
CUT_RATIO = 3.0
#: a weaker peak is a cut too when it stands out from a calm neighbourhood: a punch-in on the same
#: scene, a cut between two angles of one set or a small exposure jump keeps the histogram and
#: changes only part of the picture, scoring 0.08–0.2 against 0.02–0.03 for the frames around it;
#: it must be the local peak and ``SOFT_CUT_RATIO`` × the neighbourhood's mean (not median: steady
#: motion raises the mean of every frame around it, so panning footage does not split)
SOFT_CUT_THRESHOLD = 0.08
SOFT_CUT_RATIO = 4.0
#: a clip shorter than this cannot fill a cut; a shot shorter than this is a flash (1–few frames
#: of something else, a glitch, the mixed frames of a fast dissolve): kept as detected, so that no
#: neighbouring shot spans it, and never offered for a cut
MIN_SHOT_SECONDS = 0.25
#: long shots are also described as windows of about this length, each scored on its own frames
WINDOW_SECONDS = 4.0

#: the per-frame series kept (compactly, see ``TRACK_FPS``) over the whole clip, for reframing
TRACK_SERIES = ("subject_x", "subject_y", "motion")
#: samples per second of the kept series: enough to follow a subject, a few kB per minute of clip
TRACK_FPS = 5.0

Progress = Callable[[float, float], None]


def analysis_size(info: MediaInfo, width: int = ANALYSIS_WIDTH) -> tuple[int, int]:
    """Analysis frame size: ``width`` wide (even), height keeping the display aspect (even)."""
    w = min(width, info.width - info.width % 2) or width
    h = max(2, int(round(w * info.height / max(1, info.width) / 2)) * 2)
    return w, h


def decode_luma(
    path: str, info: MediaInfo, size: tuple[int, int], input_args: Sequence[str] = (), batch: int = BATCH,
    start_frame: int = 0, frame_count: int | None = None, while_starting: Callable[[], None] | None = None,
) -> Iterator[np.ndarray]:
    """Yield batches of downscaled luma frames; raise InputError if nothing decodes.

    A reader thread fills the next batches while the caller's (GIL-free) kernels work on
    the current one, so decoding and analysis overlap. ``while_starting`` runs once ffmpeg has
    been started, before the first batch is awaited (loading the kernels while ffmpeg opens the file).
    """
    w, h = size
    # Workers sharing a machine each get their share of its cores (set by the backends).
    threads = os.environ.get("MONTAGE_DECODE_THREADS")
    cmd = [
        ffmpeg_binary(), "-hide_banner", "-nostdin", "-loglevel", "error", *input_args,
        *(["-threads", threads] if threads else []),
        # The deblocking filter smooths 8×8 block edges that a 256-pixel-wide luma copy cannot
        # show; skipping it takes ~15 % off an H.264/HEVC decode and changes no feature that matters.
        "-skip_loop_filter", "all",
        # Input seeking is frame-exact when decoding: ffmpeg decodes from the keyframe before and drops.
        *(["-ss", f"{start_frame / (info.fps or 25.0):.6f}"] if start_frame else []),
        "-i", path,
        *(["-frames:v", str(frame_count)] if frame_count is not None else []), "-map", "0:v:0", "-an", "-sn", "-dn",
        "-vf", f"scale={w}:{h}:flags=fast_bilinear,format=gray",
        "-f", "rawvideo", "-pix_fmt", "gray", "pipe:1",
    ]
    frame_bytes = w * h
    stderr = tempfile.TemporaryFile()
    from ..procs import child_options

    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=stderr, bufsize=frame_bytes * batch,
                            **child_options())
    # Room for ~32 MB of frames: ffmpeg decodes on while the kernels load (about a second) or
    # a slow batch runs, instead of stalling on a full pipe.
    batches: queue.Queue[np.ndarray | None | BaseException] = queue.Queue(
        maxsize=max(4, READ_AHEAD_BYTES // (frame_bytes * batch)))

    def reader() -> None:
        try:
            assert proc.stdout is not None
            while True:
                data = proc.stdout.read(frame_bytes * batch)
                n = len(data) // frame_bytes
                if n:
                    batches.put(np.frombuffer(data[: n * frame_bytes], np.uint8).reshape(n, h, w))
                if len(data) < frame_bytes * batch:
                    break
            batches.put(None)
        except BaseException as exc:  # pragma: no cover - surfaced in the consumer
            batches.put(exc)

    thread = threading.Thread(target=reader, name=f"decode:{Path(path).name}", daemon=True)
    thread.start()
    produced = 0
    if while_starting is not None:
        try:
            while_starting()
        except BaseException:
            proc.kill()
            proc.wait()
            raise
    try:
        while (item := batches.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            produced += len(item)
            yield item
    finally:
        if proc.poll() is None and thread.is_alive():
            proc.kill()
        proc.wait()
        thread.join(timeout=5)
        stderr.seek(0)
        message = stderr.read().decode("utf-8", "replace")
        stderr.close()
    if produced == 0:
        raise InputError(path, f"no decodable video frames ({last_error_line(message, path)})")
    if proc.returncode not in (0, None, -9) and message:
        log.warning("%s: decoding stopped early after %d frames: %s", path, produced, last_error_line(message))


def detect_cuts(score: np.ndarray, fps: float, threshold: float = CUT_THRESHOLD, ratio: float = CUT_RATIO) -> list[int]:
    """Frames that start a new shot: strong peaks of the cut score, each against its neighbourhood,
    and weaker peaks that stand far above a calm neighbourhood (see ``SOFT_CUT_THRESHOLD``).

    Cuts a few frames apart all stay: the frames between them are a flash (or a glitch) that no
    segment of the montage may show, so it must be a shot of its own, not part of a neighbour.
    """
    n = len(score)
    window = max(2, int(round(fps / 2)))
    cuts: list[int] = []
    for i in np.flatnonzero(score >= min(threshold, SOFT_CUT_THRESHOLD)):
        if i == 0:
            continue
        lo, hi = max(0, i - window), min(n, i + window + 1)
        # The frames right beside a cut are left out: a flash's return frame scores as high.
        neighbourhood = np.concatenate([score[lo : max(lo, i - 1)], score[min(hi, i + 2) : hi]])
        if not len(neighbourhood):
            continue
        if score[i] >= threshold and score[i] >= ratio * float(np.median(neighbourhood)):
            cuts.append(int(i))
        elif (score[i] >= SOFT_CUT_RATIO * max(float(np.mean(neighbourhood)), 0.005)
              and score[i] >= score[i - 1] and (i + 1 >= n or score[i] >= score[i + 1])):
            cuts.append(int(i))
    return cuts


def _aggregate(values: np.ndarray, how: str) -> float:
    if len(values) == 0:
        return 0.0
    if how == "mean":
        return float(values.mean())
    if how == "max":
        return float(values.max())
    if how == "trimmed_mean":
        lo, hi = np.percentile(values, [10, 90])
        kept = values[(values >= lo) & (values <= hi)]
        return float(kept.mean() if len(kept) else values.mean())
    return float(np.median(values))


def build_shots(path: str, series: dict[str, np.ndarray], aggregates: dict[str, str],
                fps: float) -> tuple[list[Shot], list[Shot]]:
    """Split the per-frame series at the detected cuts and aggregate each shot's features; long
    shots also as windows of about ``WINDOW_SECONDS``, each aggregated over its own frames."""
    n = len(series["cut_score"])
    bounds = [0, *detect_cuts(series["cut_score"], fps), n]
    shots: list[Shot] = []
    windows: list[Shot] = []

    def features(a: int, b: int, first: bool) -> dict[str, float]:
        # The first frame of a shot carries the jump from the previous one; leave it out.
        inner = slice(a + 1, b) if first and b - a > 2 else slice(a, b)
        return {name: _aggregate(values[inner], aggregates[name]) for name, values in series.items()}

    step = WINDOW_SECONDS * fps
    for index, (a, b) in enumerate(zip(bounds, bounds[1:])):
        shots.append(Shot(path, index, a / fps, b / fps, features(a, b, True)))
        count = int((b - a) // step)
        if count < 2:
            continue
        edges = [a + int(round(k * (b - a) / count)) for k in range(count + 1)]
        windows += [Shot(path, index, lo / fps, hi / fps, features(lo, hi, k == 0), window=k + 1, extends_to=b / fps)
                    for k, (lo, hi) in enumerate(zip(edges, edges[1:]))]
    return shots, windows


def build_track(series: dict[str, np.ndarray], fps: float) -> dict[str, Any]:
    """``TRACK_SERIES`` averaged over consecutive runs of frames, ``TRACK_FPS`` runs a second;
    ``{}`` when the analyzers gave none of them."""
    kept = [name for name in TRACK_SERIES if name in series and len(series[name])]
    if not kept:
        return {}
    step = max(1, int(round(fps / TRACK_FPS)))
    track: dict[str, Any] = {"fps": fps / step}
    for name in kept:
        values = series[name]
        count = -(-len(values) // step)
        padded = np.concatenate([values, np.full(count * step - len(values), values[-1])])
        track[name] = [round(float(v), 4) for v in padded.reshape(count, step).mean(axis=1)]
    return track


def _decode_pass(path: str, info: MediaInfo, size: tuple[int, int], analyzers: Sequence[Analyzer],
                 input_args: Sequence[str], fps: float, progress: Progress | None, start_frame: int = 0,
                 frame_count: int | None = None) -> dict[str, np.ndarray]:
    """Decode once and run every analyzer on each batch; the per-frame series."""
    from ..jit import use_thread_share

    # A software decoder keeps the shard's cores busy on its own, and the kernels take well under a
    # millisecond per 256-pixel frame: on more threads they only take turns with the decoder (on
    # two cores, 2 s more CPU and 0.6 s more wall for 80 s of 1080p). A hardware decoder leaves the
    # cores to the kernels.
    use_thread_share(quarter=not input_args)
    outputs: dict[str, list[np.ndarray]] = {name: [] for a in analyzers for name in a.outputs}
    previous = np.empty((0, 0), np.uint8)
    frames_done = 0
    last_report = 0.0
    # A range after the start decodes one frame early: the kernels need the frame before it, so
    # a cut right on the boundary is seen exactly as in a whole-clip pass.
    lead = 1 if start_frame > 0 else 0
    count = None if frame_count is None else frame_count + lead
    for frames in decode_luma(path, info, size, input_args, start_frame=start_frame - lead, frame_count=count,
                              while_starting=lambda: warm_analyzers(analyzers)):
        if lead:
            previous, frames, lead = frames[0], frames[1:], 0
            if not len(frames):
                continue
        for analyzer in analyzers:
            for name, values in analyzer.compute(frames, previous).items():
                outputs[name].append(np.asarray(values, dtype=np.float64))
        previous = frames[-1]
        frames_done += len(frames)
        if progress and time.monotonic() - last_report > 0.25:
            last_report = time.monotonic()
            progress((start_frame + frames_done) / fps, info.duration)
    return {name: np.concatenate(chunks) if chunks else np.zeros(0) for name, chunks in outputs.items()}


def _kernel_sources(analyzer: Analyzer) -> list[str]:
    """The files whose change recompiles an analyzer's kernels: its package's modules."""
    import inspect

    try:
        folder = Path(inspect.getfile(type(analyzer))).parent
    except (TypeError, OSError):
        return []
    sources = sorted(str(p) for p in folder.glob("*.py"))
    if folder.name == "builtin":  # the built-in analyzers' kernels live in this package
        sources += sorted(str(p) for p in Path(__file__).parent.glob("*.py"))
    return sources


def warm_analyzers(analyzers: Sequence[Analyzer]) -> None:
    """Compile (or load from the JIT cache) every analyzer's kernels, one compiling process at a time.

    The batches have the types real decoding produces (read-only frames from a pipe buffer), so
    the signatures compiled here are the ones the decode pass calls.
    """
    from ..jit import ensure_warm

    frames = np.frombuffer(bytes(3 * 8 * 8), np.uint8).reshape(3, 8, 8)
    for analyzer in analyzers:
        def warm(analyzer: Analyzer = analyzer) -> None:
            analyzer.compute(frames[1:], np.empty((0, 0), np.uint8))
            analyzer.compute(frames[1:], frames[0])

        sources = _kernel_sources(analyzer)
        # One lock group per package: analyzers of one package may share kernel functions.
        group = Path(sources[0]).parent.name if sources else analyzer.name
        ensure_warm(f"analyzer-{analyzer.name}-{analyzer.version}", sources, warm, group=f"analyzers-{group}")


def analyzer_versions(analyzers: Sequence[Analyzer]) -> dict[str, str]:
    return {a.name: a.version for a in analyzers}


def _checked(path: str, info: MediaInfo | None) -> MediaInfo:
    info = info or probe_media(path)
    if not info.has_video:
        raise InputError(path, "has no video stream (audio-only file)")
    if info.width <= 0 or info.height <= 0:
        raise InputError(path, "video stream has no frame size")
    return info


def analyze_series(
    path: str, info: MediaInfo, analyzers: Sequence[Analyzer], *, progress: Progress | None = None,
    input_args: Sequence[str] = (), width: int = ANALYSIS_WIDTH, start_frame: int = 0,
    frame_count: int | None = None,
) -> dict[str, np.ndarray]:
    """Per-frame series of every analyzer output over the clip, or over ``frame_count`` frames from
    ``start_frame`` (a time-range shard of a long clip)."""
    fps = info.fps or 25.0
    size = analysis_size(info, width)
    try:
        return _decode_pass(path, info, size, analyzers, input_args, fps, progress, start_frame, frame_count)
    except InputError:
        if not input_args:
            raise
        # Hardware decoders refuse some profiles and sizes; the software decoder reads them all.
        log.warning("%s: hardware decoding failed; decoding in software", path)
        return _decode_pass(path, info, size, analyzers, (), fps, progress, start_frame, frame_count)


def clip_from_series(path: str, info: MediaInfo, digest: str, analyzers: Sequence[Analyzer],
                     series: dict[str, np.ndarray]) -> ClipAnalysis:
    """Shots and their aggregated features from a whole clip's per-frame series."""
    fps = info.fps or 25.0
    aggregates = {name: a.aggregate for a in analyzers for name in a.outputs}
    frames_done = len(next(iter(series.values()))) if series else 0
    if "cut_score" not in series:
        series = {**series, "cut_score": np.zeros(frames_done)}
        aggregates["cut_score"] = "max"
    decoded_seconds = frames_done / fps
    if info.duration and decoded_seconds < min(1.0, 0.5 * info.duration):
        raise InputError(path, f"truncated or damaged: only {decoded_seconds:.2f} s of {info.duration:.2f} s decode")
    if info.duration and decoded_seconds < 0.9 * info.duration - 1.0:
        log.warning("%s: truncated or damaged: decoded %.1f s of %.1f s; using what decodes",
                    path, decoded_seconds, info.duration)
    if decoded_seconds < MIN_SHOT_SECONDS:
        # A clip shorter than the shortest shot cut detection allows cannot fill a cut, so no planner
        # picks it: refuse it here (the caller skips it with a warning naming the file) rather than
        # keep a clip that silently never appears in the montage.
        raise InputError(path, f"too short to use ({frames_done} frame{'' if frames_done == 1 else 's'}, "
                               f"{decoded_seconds:.2f} s; shots need at least {MIN_SHOT_SECONDS:g} s)")
    shots, windows = build_shots(path, series, aggregates, fps)
    return ClipAnalysis(info, digest, analyzer_versions(analyzers), fps, shots, frames_done, windows,
                        build_track(series, fps))


def analyze_clip(
    path: str | Path,
    analyzers: Sequence[Analyzer],
    *,
    progress: Progress | None = None,
    use_cache: bool = True,
    input_args: Sequence[str] = (),
    width: int = ANALYSIS_WIDTH,
    info: MediaInfo | None = None,
    digest: str | None = None,
) -> ClipAnalysis:
    """Analyze one clip (or return its cached analysis). Raises InputError for unusable clips.

    ``info`` and ``digest`` may be passed when the caller already probed and hashed the file.
    """
    path = str(path)
    info = _checked(path, info)
    digest = digest or cache.file_digest(path)
    key = cache.analysis_key(digest, analyzer_versions(analyzers), width)
    if use_cache and (hit := cache.load(key, path)) is not None:
        log.debug("%s: analysis cache hit", path)
        return hit
    series = analyze_series(path, info, analyzers, progress=progress, input_args=input_args, width=width)
    result = clip_from_series(path, info, digest, analyzers, series)
    if use_cache:
        cache.store(key, result)
    if progress:
        progress(result.frame_count / result.analysis_fps, info.duration)
    return result


def describe(analysis: ClipAnalysis) -> dict[str, Any]:
    """A compact summary for ``montage analyze`` output."""
    return {
        "clip": analysis.media.path,
        "duration": round(analysis.frame_count / analysis.analysis_fps, 3),
        "shots": [{"start": round(s.start, 3), "end": round(s.end, 3),
                   **{k: round(v, 4) for k, v in s.features.items()}} for s in analysis.shots],
    }
