"""Finding ffmpeg, and probing media with or without ffprobe (imageio-ffmpeg ships none)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from montage_core import ffmpeg
from montage_core.errors import InputError
from montage_core.testing import MediaFactory, run_cli


@pytest.fixture
def rotated(media: MediaFactory, tmp_path: Path) -> Path:
    """A landscape-coded clip flagged to display rotated by 90°, as phones record portrait video."""
    clip, _ = media.clip([(0, 1.0)], size=(320, 180), audio=True)
    out = tmp_path / "phone.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(clip), "-c", "copy", "-metadata:s:v:0", "rotate=90", str(out)],
                   check=True)
    return out


def test_ffmpeg_output_parser_agrees_with_ffprobe(media: MediaFactory, rotated: Path) -> None:
    clip, _ = media.clip([(1, 1.5)], size=(180, 320), audio=True)
    music, _ = media.music(seconds=2)
    for path in (clip, rotated, music):
        by_ffprobe = ffmpeg._probe_ffprobe(ffmpeg.ffprobe_binary(), path, path.stat().st_size)
        by_ffmpeg = ffmpeg._probe_ffmpeg(path, path.stat().st_size)
        assert by_ffmpeg.has_video == by_ffprobe.has_video and by_ffmpeg.has_audio == by_ffprobe.has_audio
        assert (by_ffmpeg.width, by_ffmpeg.height, by_ffmpeg.rotation) == (by_ffprobe.width, by_ffprobe.height,
                                                                          by_ffprobe.rotation)
        assert by_ffmpeg.duration == pytest.approx(by_ffprobe.duration, abs=0.05)
        assert by_ffmpeg.fps == pytest.approx(by_ffprobe.fps, rel=0.01)
    assert (ffmpeg.probe_media(rotated).width, ffmpeg.probe_media(rotated).height) == (180, 320)


def test_probe_errors_name_the_file(tmp_path: Path) -> None:
    text = tmp_path / "a b.mov"
    text.write_text("hello")
    with pytest.raises(InputError) as err:
        ffmpeg.probe_media(text)
    assert str(err.value).startswith(f"{text}: not a media file ffmpeg can read (")
    assert str(err.value).count(str(text)) == 1  # ffmpeg's own message does not repeat the path
    with pytest.raises(InputError, match="is a folder"):
        ffmpeg.probe_media(tmp_path)


@pytest.mark.slow
def test_runs_with_only_the_bundled_ffmpeg(media: MediaFactory, rotated: Path, tmp_path: Path) -> None:
    """`pip install` alone: no ffmpeg or ffprobe on PATH, imageio-ffmpeg's binary does everything."""
    import imageio_ffmpeg

    music, _ = media.music(seconds=4)
    clip, _ = media.clip([(2, 2.0), (3, 2.0)])
    env = {"PATH": str(Path(sys.executable).parent), "MONTAGE_FFMPEG": imageio_ffmpeg.get_ffmpeg_exe(),
           "MONTAGE_WORKERS": "2"}
    out = tmp_path / "bundled.mp4"
    proc = run_cli("run", str(clip), str(rotated), "--music", str(music), "-o", str(out), "--resolution", "320x180",
                   "--fps", "25", "--quality", "preview", env=env)
    assert proc.returncode == 0, proc.stderr
    assert out.stat().st_size > 0


def test_montage_ffmpeg_must_exist(monkeypatch: pytest.MonkeyPatch) -> None:
    from montage_core.errors import MontageError

    ffmpeg.ffmpeg_binary.cache_clear()
    monkeypatch.setenv("MONTAGE_FFMPEG", "/nowhere/ffmpeg")
    try:
        with pytest.raises(MontageError, match="MONTAGE_FFMPEG=/nowhere/ffmpeg: no such file"):
            ffmpeg.ffmpeg_binary()
    finally:
        ffmpeg.ffmpeg_binary.cache_clear()
