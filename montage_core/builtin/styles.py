"""Built-in styles: dynamic (default), mtv, documentary, minimalist."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ..hookspecs import hookimpl
from ..interfaces import Style, StyleParam
from ..models import Shot, Transition


def feature_ranks(shots: Sequence[Shot], feature: str) -> list[float]:
    """Each shot's percentile (0..1) of ``feature`` among ``shots``: scale-free, robust to outliers."""
    values = [s.features.get(feature, 0.0) for s in shots]
    if len(values) < 2:
        return [0.5] * len(values)
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    for position, i in enumerate(order):
        ranks[i] = position / (len(values) - 1)
    return ranks


class WeightedStyle(Style):
    """A style that scores shots by weighted feature percentiles after absolute quality gates.

    ``weights`` maps a feature to its weight; a negative weight prefers low values.
    The gates are the style's ``min_brightness`` and ``min_sharpness`` parameters; when they
    leave fewer than ``min_keep`` shots the style relaxes them and says so.
    """

    weights: dict[str, float] = {}
    min_keep = 4

    def rank(self, shots: Sequence[Shot], params: dict[str, float],
             warn: Callable[[str], None]) -> list[tuple[Shot, float]]:
        if not shots:
            return []
        total = sum(abs(w) for w in self.weights.values()) or 1.0
        ranks = {f: feature_ranks(shots, f) for f in self.weights}
        scores = []
        for i, shot in enumerate(shots):
            score = sum(w * (ranks[f][i] if w > 0 else 1 - ranks[f][i]) for f, w in self.weights.items())
            scores.append(abs(score) / total)
        kept = [i for i, s in enumerate(shots) if self._passes(s, params)]
        if len(kept) < min(self.min_keep, len(shots)):
            warn(f"style {self.name}: only {len(kept)} of {len(shots)} shots pass min_brightness="
                 f"{params['min_brightness']:g}, min_sharpness={params['min_sharpness']:g}; using the best of the rest too")
            kept = sorted(range(len(shots)), key=lambda i: (not self._passes(shots[i], params), -scores[i]))
            kept = kept[: max(self.min_keep, len(kept))]
        return sorted(((shots[i], round(scores[i], 4)) for i in kept), key=lambda p: (-p[1], p[0].clip, p[0].index))

    @staticmethod
    def _passes(shot: Shot, params: dict[str, float]) -> bool:
        return (shot.features.get("brightness", 1.0) >= params["min_brightness"]
                and shot.features.get("sharpness", 1.0) >= params["min_sharpness"])


GATES = {
    "min_brightness": StyleParam(0.06, "drop shots darker than this mean luma (0..1)"),
    "min_sharpness": StyleParam(0.0002, "drop shots blurrier than this Laplacian variance", 0.0, 0.1),
}


class DynamicStyle(WeightedStyle):
    name = "dynamic"
    description = "Energetic default: motion and sharp detail first, cuts speed up into the climax"
    pacing = {"intro": (4, 8), "build": (2, 4), "climax": (1, 2), "outro": (4, 8)}
    transition = Transition("cut")
    grade = "eq=contrast=1.06:saturation=1.12"
    params = GATES
    weights = {"motion": 0.5, "sharpness": 0.35, "brightness": 0.15}
    requires = ("motion", "sharpness", "brightness")


class MtvStyle(WeightedStyle):
    name = "mtv"
    description = "Music-video pace: a cut every 1–2 beats, high motion, punchy colour"
    pacing = {"intro": (2, 2), "build": (1, 2), "climax": (1, 1), "outro": (2, 2)}
    transition = Transition("cut")
    grade = "eq=contrast=1.15:saturation=1.35"
    params = GATES
    weights = {"motion": 0.65, "brightness": 0.2, "sharpness": 0.15}
    requires = ("motion", "sharpness", "brightness")


class DocumentaryStyle(WeightedStyle):
    name = "documentary"
    description = "Long, steady, sharp shots joined by short dissolves; natural colour"
    pacing = {"intro": (8, 12), "build": (6, 8), "climax": (4, 6), "outro": (8, 12)}
    transition = Transition("crossfade", 0.5)
    grade = "eq=saturation=0.95"
    params = GATES
    weights = {"sharpness": 0.5, "motion": -0.35, "brightness": 0.15}
    requires = ("motion", "sharpness", "brightness")


class MinimalistStyle(WeightedStyle):
    name = "minimalist"
    description = "Few, calm, centred shots held long with slow dissolves; muted colour"
    pacing = {"intro": (8, 16), "build": (8, 8), "climax": (4, 8), "outro": (8, 16)}
    transition = Transition("crossfade", 1.0)
    grade = "eq=saturation=0.7:contrast=0.95"
    params = GATES
    weights = {"motion": -0.5, "sharpness": 0.2, "centredness": 0.3}
    requires = ("motion", "sharpness", "centre_of_gravity")

    def rank(self, shots: Sequence[Shot], params: dict[str, float],
             warn: Callable[[str], None]) -> list[tuple[Shot, float]]:
        for shot in shots:  # derived feature: how close the visual weight sits to the centre
            f = shot.features
            f.setdefault("centredness", 1.0 - min(1.0, 2.0 * (f.get("cog_x", 0.0) ** 2 + f.get("cog_y", 0.0) ** 2) ** 0.5))
        return super().rank(shots, params, warn)


@hookimpl
def montage_register_styles(register: Callable[[Any], None]) -> None:
    for cls in (DynamicStyle, MtvStyle, DocumentaryStyle, MinimalistStyle):
        register(cls())
