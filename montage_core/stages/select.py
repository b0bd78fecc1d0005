"""Select: every clip's shots → the shots the style keeps, each with the style's score."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from ..errors import MontageError, UsageError
from ..interfaces import Style
from ..models import ClipAnalysis, Shot
from ..plugins import MontageManager

log = logging.getLogger("montage")


def select_shots(analyses: Sequence[ClipAnalysis], style: Style, params: dict[str, float],
                 manager: MontageManager) -> list[tuple[Shot, float]]:
    """The style's ranking of every shot of ``analyses`` (best first); ``params`` as resolved by
    :func:`resolve_style_params`. Raises when nothing is left to cut from."""
    check_style_requirements(style, manager)
    shots = [s for a in analyses for s in candidates(a)]
    if not shots:
        raise MontageError("no usable shots: every clip failed or was empty")
    ranked = style.rank(shots, params, lambda message: log.warning("%s", message))
    if not ranked:
        raise MontageError(f"style {style.name!r} kept no shot out of {len(shots)}")
    return ranked


def candidates(analysis: ClipAnalysis) -> list[Shot]:
    """What one clip offers for cuts: each detected shot, or its windows when it is long (each
    scored on its own frames, so an 80 s single shot is twenty candidates, not one); flashes
    (shots shorter than ``MIN_SHOT_SECONDS``) never."""
    from ..analysis.analyze import MIN_SHOT_SECONDS

    windows: dict[int, list[Shot]] = {}
    for window in analysis.windows:
        windows.setdefault(window.index, []).append(window)
    return [offered for shot in analysis.shots if shot.duration >= MIN_SHOT_SECONDS
            for offered in windows.get(shot.index, [shot])]


def resolve_style_params(style: Style, given: dict[str, str]) -> dict[str, float]:
    """Defaults overlaid with ``--set`` values, each validated against the style's declaration."""
    params = {name: p.default for name, p in style.params.items()}
    for name, raw in given.items():
        if name not in style.params:
            raise UsageError(f"style {style.name!r} has no parameter {name!r} (known: {', '.join(sorted(style.params)) or 'none'})")
        spec = style.params[name]
        try:
            value = float(raw)
        except ValueError:
            raise UsageError(f"style parameter {name}={raw!r} is not a number") from None
        if not spec.minimum <= value <= spec.maximum:
            raise UsageError(f"style parameter {name}={value:g} is out of range ({spec.minimum:g}..{spec.maximum:g})")
        params[name] = value
    return params


def check_style_requirements(style: Style, manager: MontageManager) -> None:
    """A style that ranks by an analyzer's output needs that analyzer installed."""
    missing = [name for name in style.requires if name not in manager.analyzers]
    if missing:
        raise MontageError(f"style {style.name!r} needs the analyzer(s) {', '.join(missing)}, which no installed "
                           f"plugin provides (installed: {', '.join(manager.analyzers.names())})")
