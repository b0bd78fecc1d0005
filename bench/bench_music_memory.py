"""Music-analysis benchmark: peak memory and time of chunked ``analyze_music`` vs librosa on the whole track.

The baseline is the previous implementation, kept here: librosa's ``onset_strength`` (three
times), ``beat_track`` (which builds the whole autocorrelation tempogram) and ``rms``, each on the
whole decoded track. Both contenders take turns in fresh processes in this same run (see
bench/README.md); each process reports its peak RSS (VmHWM) and the wall time of the analysis.

    python bench/bench_music_memory.py [--lengths 70 300 600] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_analysis import RESULTS, summarize  # noqa: E402

ASC_MUSIC = Path("/usr/share/games/asc/music")  # Debian's asc-music (installed by .ci/run)
ASC_TRACKS = ("frontiers.mp3", "machine_wars.mp3", "time_to_strike.mp3")
#: the whole-track baseline needs about this much memory per second of music
BASELINE_MB_PER_SECOND = 13.0
TARGETS = {
    "librosa / chunked peak RSS": (">=", 10.0),
    "chunked / librosa time": ("<=", 1.05),
    "chunked growth MB per minute": ("<=", 20.0),
    "beats equal (1 = all)": (">=", 1.0),
}


def librosa_whole_track(path: str) -> object:
    """The previous ``analyze_music``: every librosa feature over the whole decoded track."""
    import librosa

    from montage_core import music as m
    from montage_core.ffmpeg import ffmpeg_binary
    from montage_core.models import MusicAnalysis

    sr, hop = m.SAMPLE_RATE, m.HOP
    cmd = [ffmpeg_binary(), "-hide_banner", "-nostdin", "-loglevel", "error", "-i", path, "-map", "0:a:0", "-vn",
           "-ac", "1", "-ar", str(sr), "-f", "f32le", "pipe:1"]
    y = np.frombuffer(subprocess.run(cmd, capture_output=True, check=True).stdout, np.float32)
    duration = len(y) / sr
    onset_env = librosa.onset.onset_strength(y=y, sr=sr, hop_length=hop, aggregate=np.median)
    tempo, frames = librosa.beat.beat_track(onset_envelope=onset_env, sr=sr, hop_length=hop, units="frames",
                                            trim=False)
    tempo = float(np.atleast_1d(tempo)[0])
    frames = np.asarray(frames, dtype=int)
    low_env = librosa.onset.onset_strength(y=y, sr=sr, hop_length=hop, fmax=200.0, n_mels=32)
    frames = m._trim_silent_ends(onset_env, m._kick_phase(low_env, frames, tempo))
    fine = librosa.onset.onset_strength(y=y, sr=sr, hop_length=hop // 2, n_fft=512, n_mels=64) if tempo > 0 else None
    beats_at = m._refine_to_onsets(fine, frames, tempo)
    beats = sorted({round(float(b), 4) for b in beats_at * hop / sr if 0.0 <= b < duration})
    downbeats = m._downbeats(onset_env, frames, beats)
    step = int(0.25 * sr)
    db = librosa.amplitude_to_db(np.maximum(librosa.feature.rms(y=y, frame_length=4 * step, hop_length=step)[0],
                                            1e-5), ref=1.0)
    kernel = np.hanning(9)
    smooth = np.convolve(np.pad(db, 4, mode="edge"), kernel / kernel.sum(), mode="valid")
    lo, hi = np.percentile(smooth, 2), np.percentile(smooth, 98)
    energy = np.clip((smooth - lo) / (hi - lo), 0, 1) if hi > lo else np.full_like(smooth, 0.5)
    times = np.arange(len(energy)) * 0.25
    keep = times <= duration
    return MusicAnalysis(path, duration, tempo, beats, downbeats, [round(float(t), 3) for t in times[keep]],
                         [round(float(e), 4) for e in energy[keep]])


def peak_rss_mb() -> float:
    """This process's peak RSS: VmHWM, since Linux carries ru_maxrss over from the parent across exec."""
    status = Path("/proc/self/status")
    found = re.search(r"VmHWM:\s*(\d+) kB", status.read_text()) if status.exists() else None
    return (int(found.group(1)) if found else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) / 1024


def child(contender: str, path: str) -> None:
    """Run one contender on ``path`` and print its time, peak RSS and results as JSON."""
    from montage_core.music import analyze_music

    start = time.perf_counter()
    result = analyze_music(path) if contender == "chunked" else librosa_whole_track(path)
    elapsed = time.perf_counter() - start
    print(json.dumps({"seconds": elapsed, "rss_mb": peak_rss_mb(), "tempo": result.tempo, "beats": result.beats,
                      "downbeats": result.downbeats, "energy": result.energy}))


def run(contender: str, path: Path) -> dict:
    """One contender in a fresh process (its imports and JIT loading count towards its RSS, not its time)."""
    proc = subprocess.run([sys.executable, __file__, "--child", contender, str(path)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{contender} on {path.name} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def make_track(seconds: float) -> Path:
    """``seconds`` of real music (the asc-music tracks back to back), or a synthetic kick track without them."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    track = RESULTS / f"bench_music_{seconds:g}s.flac"
    if track.exists():
        return track
    if all((ASC_MUSIC / name).exists() for name in ASC_TRACKS):
        playlist = RESULTS / "bench_music.txt"
        playlist.write_text("".join(f"file '{ASC_MUSIC / name}'\n" for name in ASC_TRACKS))
        source = ["-stream_loop", "-1", "-f", "concat", "-safe", "0", "-i", str(playlist)]
    else:
        print("  (asc-music is not installed: a synthetic kick track stands in for real music)")
        source = ["-f", "lavfi", "-i", "aevalsrc='0.8*sin(2*PI*55*t)*exp(-25*mod(t\\,0.5))"
                  "+0.05*sin(2*PI*440*t)':s=44100"]
    subprocess.run(["ffmpeg", "-v", "error", "-y", *source, "-t", f"{seconds:g}", "-ac", "2", "-ar", "44100",
                    "-c:a", "flac", str(track)], check=True)
    return track


def available_mb() -> float:
    """MemAvailable, so the whole-track baseline is not run where it would be killed."""
    meminfo = Path("/proc/meminfo")
    found = re.search(r"MemAvailable:\s*(\d+) kB", meminfo.read_text()) if meminfo.exists() else None
    return int(found.group(1)) / 1024 if found else float("inf")


def track_row(runs: dict[str, list[dict]]) -> dict:
    """Best and median time, peak RSS per contender; the ratios and agreement when both ran."""
    row: dict = {}
    for contender, results in runs.items():
        times = [r["seconds"] for r in results]
        row[contender] = {"best_s": min(times), "median_s": statistics.median(times),
                          "rss_mb": max(r["rss_mb"] for r in results), "tempo": results[0]["tempo"],
                          "beats": len(results[0]["beats"])}
    if "librosa" in runs:
        new, old = runs["chunked"][0], runs["librosa"][0]
        row["rss_ratio"] = row["librosa"]["rss_mb"] / row["chunked"]["rss_mb"]
        row["time_ratio"] = row["chunked"]["best_s"] / row["librosa"]["best_s"]
        row["beats_equal"] = new["beats"] == old["beats"] and new["tempo"] == old["tempo"]
        row["energy_max_diff"] = float(np.max(np.abs(np.subtract(new["energy"], old["energy"]))))
    return row


def main() -> int:
    """Build the tracks, run both contenders in turns, print the table and the ratios against targets."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lengths", type=float, nargs="+", default=[70.0, 300.0, 600.0], help="track seconds")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per contender; best is kept")
    parser.add_argument("--child", nargs=2, metavar=("CONTENDER", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return 0
    lengths = sorted(args.lengths)
    tracks = {s: make_track(s) for s in lengths}
    run("chunked", tracks[lengths[0]])  # warm: Numba's JIT cache, page cache
    fixed = run("chunked", make_track(5.0))["rss_mb"]
    print(f"fixed cost (imports, JIT, a 5 s track): {fixed:.0f} MB peak RSS\n")
    print(f"{'track':>7s}  {'contender':9s} {'best s':>7s} {'median s':>8s} {'peak MB':>8s}  "
          f"{'RSS ratio':>9s} {'time ratio':>10s}  beats")
    report: dict[str, dict] = {}
    for seconds, track in tracks.items():
        contenders = ["chunked"]
        if BASELINE_MB_PER_SECOND * seconds < 0.8 * available_mb():
            contenders.append("librosa")
        else:
            print(f"{seconds:6.0f}s  librosa   skipped: needs ~{BASELINE_MB_PER_SECOND * seconds:.0f} MB")
        runs: dict[str, list[dict]] = {c: [] for c in contenders}
        for _ in range(args.repeat):
            for contender in contenders:  # taking turns, so drift hits both alike
                runs[contender].append(run(contender, track))
        row = track_row(runs)
        for contender in contenders:
            r = row[contender]
            ratios = ""
            if contender == "librosa":
                agree = "equal" if row["beats_equal"] else "DIFFER"
                ratios = (f"{row['rss_ratio']:9.1f} {row['time_ratio']:10.2f}  {agree} "
                          f"(energy Δ {row['energy_max_diff']:.4f})")
            print(f"{seconds:6.0f}s  {contender:9s} {r['best_s']:7.2f} {r['median_s']:8.2f} {r['rss_mb']:8.0f}"
                  f"  {ratios}")
        report[f"{seconds:g}"] = row
    compared = [row for row in report.values() if "rss_ratio" in row]
    ratios = {}
    if compared:
        ratios["librosa / chunked peak RSS"] = compared[-1]["rss_ratio"]  # the longest track that ran
        ratios["chunked / librosa time"] = float(np.exp(np.mean([np.log(r["time_ratio"]) for r in compared])))
        ratios["beats equal (1 = all)"] = float(all(r["beats_equal"] for r in compared))
    if len(lengths) > 1:
        first, last = report[f"{lengths[0]:g}"]["chunked"], report[f"{lengths[-1]:g}"]["chunked"]
        ratios["chunked growth MB per minute"] = (last["rss_mb"] - first["rss_mb"]) / (lengths[-1] - lengths[0]) * 60
    summary = summarize(ratios, TARGETS)
    (RESULTS / "music_memory.json").write_text(json.dumps({"fixed_mb": fixed, "tracks": report,
                                                           "summary": summary}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
