"""The montage's sound for the render stage: mastered while the segments render, and kept.

Mastering (:func:`montage_core.loudness.master_music`: a measuring pass, then encodes until the
true peak holds) needs none of the picture, so it runs beside the segment shards instead of after
them. Its result depends only on the music's content, the stretch and fades the montage uses, the
loudness target and the bitrate, so it is cached under those: a re-render, another ``--format``
of the same plan or a resumed job reuse it. Like a segment, a cached sound is checked against the
record written beside it (size, digest) before it is used, and replaced when it fails.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import threading
from pathlib import Path

from ..analysis.cache import file_digest
from ..config import cache_dir
from ..loudness import Fades, master_music
from ..records import record_problem, write_record

log = logging.getLogger("montage.render")

#: bump when what a cached sound holds changes (its mastering chain)
SOUND_FORM = 1


def _key(music: str, fades: Fades, loudness: float | None, bitrate: str) -> str:
    text = json.dumps({"music": file_digest(music), "duration": round(fades.duration, 6),
                       "fade_out": round(fades.fade_out, 6), "loudness": loudness, "bitrate": bitrate,
                       "form": SOUND_FORM}, sort_keys=True)
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def mastered_sound(music: str, fades: Fades, loudness: float | None, bitrate: str) -> Path:
    """The music mastered for this montage (AAC in MP4), from the cache when it was made before."""
    from ..procs import owner_tag, remove_orphaned_temps

    key = _key(music, fades, loudness, bitrate)
    out = cache_dir() / "sound" / key[:2] / f"{key}.m4a"
    problem = record_problem(out)
    if problem is None:
        log.info("montage sound: mastered before (%s)", out.name)
        return out
    if problem:
        log.warning("%s: cached sound is unusable (%s); mastering it again", out, problem)
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_orphaned_temps(out.parent, f".{key}.")
    fd, tmp = tempfile.mkstemp(prefix=f".{key}.{owner_tag()}.", suffix=".m4a", dir=out.parent)
    os.close(fd)
    try:
        master_music(music, fades, loudness, Path(tmp), bitrate)
        os.replace(tmp, out)
    finally:
        Path(tmp).unlink(missing_ok=True)
    write_record(out)
    return out


class SoundInBackground:
    """:func:`mastered_sound` in a thread of its own, started now and collected by :meth:`result`.

    A daemon thread: an interrupted render does not wait for it, and its ffmpeg ends with this
    process (``procs.child_options``)."""

    def __init__(self, music: str, fades: Fades, loudness: float | None, bitrate: str):
        self._path: Path | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(music, fades, loudness, bitrate),
                                        name="montage-sound", daemon=True)
        self._thread.start()

    def _run(self, music: str, fades: Fades, loudness: float | None, bitrate: str) -> None:
        try:
            self._path = mastered_sound(music, fades, loudness, bitrate)
        except BaseException as exc:  # raised in the caller's thread by result()
            self._error = exc

    def result(self) -> Path:
        self._thread.join()
        if self._error is not None:
            raise self._error
        assert self._path is not None
        return self._path
