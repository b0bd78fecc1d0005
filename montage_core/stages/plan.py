"""Plan: ranked shots and the music analysis → the timeline (every cut on a beat, the whole duration covered)."""

from __future__ import annotations

from typing import Any

from ..interfaces import Backend, PlanRequest, Style
from ..models import MusicAnalysis, Shot, Timeline
from ..plugins import MontageManager


def plan_timeline(
    ranked: list[tuple[Shot, float]], music: MusicAnalysis, manager: MontageManager, *, style: Style, planner: str,
    width: int, height: int, fps: float, seed: int, duration: float | None = None,
    backend: Backend | None = None, options: dict[str, Any] | None = None,
) -> Timeline:
    """The planner named ``planner`` places ``ranked`` (from :func:`~montage_core.stages.select_shots`)
    on the beat grid of ``music``. ``backend`` is where a planner may fan work out (B-roll scoring);
    ``options`` reach the planner as they are (``script``, ``embedder``)."""
    return manager.planners.get(planner).plan(PlanRequest(
        ranked, music, style, fps, width, height, seed, duration, options=dict(options or {}),
        manager=manager, backend=backend))
