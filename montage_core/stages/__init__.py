"""The stages of a montage, in the order data flows through them, one module and one entry function each.

==========  ==========================  ====================================================
module      entry function              turns … into …
==========  ==========================  ====================================================
probe       :func:`probe_clips`         clip paths → :class:`ProbedClip` (media info, content digest)
analyze     :func:`analyze_clips`       probed clips → :class:`~montage_core.models.ClipAnalysis` (shots, features)
select      :func:`select_shots`        analyses → shots ranked by the style
plan        :func:`plan_timeline`       ranked shots + music analysis → :class:`~montage_core.models.Timeline`
render      :func:`render_timeline`     timeline → the video (segments on the backend, joined, checked)
export      :func:`write_exports`       timeline → timeline.json, OTIO, EDL, FCPXML and FCP 7 XML beside the video
==========  ==========================  ====================================================

:class:`montage_core.job.Job` runs them in this order for every command; the music track's
analysis (:mod:`montage_core.music`, started by :mod:`.music`) runs as a shard of the analysis
round beside the clips' (or, on a backend that cannot take it, in a process of its own).
Each stage takes the plugin manager and the backend it needs as arguments: nothing here
reaches for a process-wide one.
"""

from .analyze import analyze_clips
from .export import write_exports
from .plan import plan_timeline
from .probe import ProbedClip, collect_clips, probe_clips
from .render import render_timeline
from .select import select_shots

__all__ = ["ProbedClip", "analyze_clips", "collect_clips", "plan_timeline", "probe_clips", "render_timeline",
           "select_shots", "write_exports"]
