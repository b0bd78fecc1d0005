"""Probe: clip paths → media info and a content digest each, side by side (ffprobe and the disk wait, not the CPU)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError
from ..jobstore import JobStore
from ..models import MediaInfo

log = logging.getLogger("montage")

VIDEO_EXTENSIONS = {".mp4", ".mov", ".m4v", ".mkv", ".webm", ".avi", ".mts", ".m2ts", ".mpg", ".mpeg", ".wmv",
                    ".flv", ".3gp", ".ts", ".mxf", ".ogv"}


@dataclass(frozen=True)
class ProbedClip:
    """A clip that has a video stream: what ffprobe says about it, and the digest of its bytes
    (the key of every cache entry made from it, so a renamed copy is never analyzed twice)."""

    path: str
    media: MediaInfo
    digest: str
    #: its place in the job's list of clips (its shards' ids stay the same when others fail)
    position: int = 0


def collect_clips(paths: Sequence[str]) -> list[str]:
    """Files as given; folders expanded to their video files (sorted, recursive, no dotfiles)."""
    clips: list[str] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            found = sorted(str(f.absolute()) for f in p.rglob("*") if f.is_file() and f.suffix.lower() in VIDEO_EXTENSIONS
                           and not f.name.startswith("."))
            if not found:
                log.warning("%s: folder holds no video files (looked for %s)", p, ", ".join(sorted(VIDEO_EXTENSIONS)))
            clips.extend(found)
        else:
            clips.append(str(p.absolute()))
    return list(dict.fromkeys(clips))


def probe_clips(clips: Sequence[str], *, store: JobStore | None = None,
                job_id: str = "") -> tuple[list[ProbedClip], dict[str, str]]:
    """The clips that have a video stream, in the order given, and ``{clip: problem}`` for the rest
    (recorded in the job store as failed analysis shards, named as the analysis would name them)."""
    from ..analysis.cache import file_digest
    from ..ffmpeg import probe_media

    def probe(clip: str, position: int) -> ProbedClip:
        info = probe_media(clip)
        if not info.has_video:
            raise InputError(clip, "has no video stream (audio-only file)")
        return ProbedClip(clip, info, file_digest(clip), position)

    probed: list[ProbedClip] = []
    failures: dict[str, str] = {}
    with ThreadPoolExecutor(max_workers=min(8, max(1, len(clips)))) as pool:
        pending = [(clip, pool.submit(probe, clip, index)) for index, clip in enumerate(clips)]
    for index, (clip, future) in enumerate(pending):
        try:
            probed.append(future.result())
        except InputError as exc:
            failures[clip] = str(exc)
            log.warning("skipping %s", exc)
            if store and job_id:  # the job store is the one record of what happened to every clip
                store.shard_state(job_id, analysis_shard_id(index), "analysis", clip, "failed", error=str(exc))
    return probed, failures


def analysis_shard_id(index: int) -> str:
    """The id of clip number ``index``'s analysis shard (its time ranges add ``-rNNN``)."""
    return f"analysis-{index:04d}"
