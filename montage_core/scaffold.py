"""``montage new-plugin KIND NAME``: a ready-to-install plugin package with a passing test."""

from __future__ import annotations

import keyword
import re
from pathlib import Path

from .errors import UnknownChoiceError, UsageError

PYPROJECT = '''[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "montage-{dashed}"
version = "0.1.0"
description = "A montage {kind} plugin"
requires-python = ">=3.10"
dependencies = ["montage-core"]

[project.optional-dependencies]
test = ["pytest"]

[project.entry-points.montage]
{name} = "montage_{name}"

[tool.setuptools]
packages = ["montage_{name}"]
'''

README = '''# montage-{dashed}

A montage {kind} plugin.

```bash
pip install -e .            # registers the `{name}` entry point in the `montage` group
pip install "montage-core[plugin-dev]"   # pytest, for montage's testing kit (montage_core.testing)
montage plugins             # lists {name}
python -m pytest tests      # montage-core's pytest plugin provides the `pm` and `media` fixtures
```

See montage's docs/plugin-authoring.md and docs/hooks/{hook_page}.md.
'''

MODULES = {
    "style": '''"""{title}: a montage style."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from montage_core.hookspecs import hookimpl
from montage_core.interfaces import Style, StyleParam
from montage_core.models import Shot, Transition


class {cls}(Style):
    name = "{name}"
    description = "Describe the look: which shots lead, how fast it cuts"
    pacing = {{"intro": (4, 8), "build": (2, 4), "climax": (1, 2), "outro": (4, 8)}}
    transition = Transition("cut")
    grade = "eq=saturation=1.1"
    params = {{"min_motion": StyleParam(0.0, "drop shots calmer than this mean motion")}}
    requires = ("motion",)

    def rank(self, shots: Sequence[Shot], params: dict[str, float],
             warn: Callable[[str], None]) -> list[tuple[Shot, float]]:
        kept = [s for s in shots if s.features.get("motion", 0.0) >= params["min_motion"]]
        if not kept and shots:
            warn(f"{{self.name}}: no shot reaches min_motion={{params['min_motion']:g}}; using all")
            kept = list(shots)
        top = max((s.features.get("motion", 0.0) for s in kept), default=0.0) or 1.0
        return sorted(((s, round(s.features.get("motion", 0.0) / top, 4)) for s in kept), key=lambda p: -p[1])


@hookimpl
def montage_register_styles(register: Callable[[Any], None]) -> None:
    register({cls}())
''',
    "analyzer": '''"""{title}: a montage analyzer, run inside the single decode pass of every clip."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from montage_core.hookspecs import hookimpl
from montage_core.interfaces import Analyzer


class {cls}(Analyzer):
    name = "{name}"
    version = "1"  # part of the analysis cache key: bump it whenever results change
    outputs = ("{name}",)
    aggregate = "median"

    def compute(self, frames: Any, previous: Any) -> dict[str, Any]:
        """One value per frame. Replace with your feature; a Numba kernel with nogil=True keeps it fast."""
        import numpy as np

        return {{"{name}": frames.reshape(len(frames), -1).std(axis=1) / 255.0}}


@hookimpl
def montage_register_analyzers(register: Callable[[Any], None]) -> None:
    register({cls}())
''',
    "accelerator": '''"""{title}: a montage accelerator (an ffmpeg encoder)."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from typing import Any

from montage_core.hookspecs import hookimpl
from montage_core.interfaces import Accelerator, AcceleratorProbe

ENCODER = "libx264"  # the ffmpeg encoder this plugin drives; for GPUs see montage_core.hwaccel


class {cls}(Accelerator):
    name = "{name}"
    description = "Describe the device and encoder"
    priority = 10

    def probe(self, ffmpeg: str) -> AcceleratorProbe:
        """A real one-frame test encode; availability is data, never an exception."""
        cmd = [ffmpeg, "-hide_banner", "-v", "error", "-f", "lavfi", "-i", "color=s=64x64:d=0.04",
               "-frames:v", "1", "-c:v", ENCODER, "-f", "null", "-"]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            return AcceleratorProbe(self.name, False, (proc.stderr.strip().splitlines() or ["failed"])[-1])
        return AcceleratorProbe(self.name, True, f"{{ENCODER}} test encode ok", encoders={{"h264": ENCODER}})

    def encode_args(self, codec: str, quality: str, probe: AcceleratorProbe) -> list[str]:
        crf = {{"preview": 28, "standard": 22, "high": 18}}[quality]
        return ["-c:v", ENCODER, "-crf", str(crf), "-pix_fmt", "yuv420p"]


@hookimpl
def montage_register_accelerators(register: Callable[[Any], None]) -> None:
    register({cls}())
''',
    "planner": '''"""{title}: a montage planner."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from montage_core.hookspecs import hookimpl
from montage_core.interfaces import PlanRequest, Planner
from montage_core.models import Cut, Timeline

BEATS_PER_CUT = 4


class {cls}(Planner):
    name = "{name}"
    description = "A cut every BEATS_PER_CUT beats, best-ranked shots in turn"

    def plan(self, request: PlanRequest) -> Timeline:
        music, fps = request.music, request.fps
        duration = min(music.duration, request.duration or music.duration)
        total = int(round(duration * fps))
        beats = [int(round(b * fps)) for b in music.beats[BEATS_PER_CUT::BEATS_PER_CUT] if b * fps < total - fps]
        bounds = [0, *beats, total]
        cuts = []
        for i, (a, b) in enumerate(zip(bounds, bounds[1:])):
            shot, score = request.ranked[i % len(request.ranked)]
            need = (b - a) / fps
            start = shot.start + max(0.0, (shot.duration - need) / 2)
            cuts.append(Cut(i, shot.clip, start, start + need, a / fps, b / fps, "build", shot.id, score))
        return Timeline(music.path, total / fps, fps, request.width, request.height, request.style.name,
                        request.style.grade, request.seed, cuts, music.tempo, music.beats, planner=self.name)


@hookimpl
def montage_register_planners(register: Callable[[Any], None]) -> None:
    register({cls}())
''',
    "backend": '''"""{title}: a montage backend (where shards run)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

from montage_core.errors import MontageError
from montage_core.hookspecs import hookimpl
from montage_core.interfaces import Backend, ProgressEvent, ShardFunction, ShardOutcome, ShardTask


class {cls}(Backend):
    name = "{name}"
    description = "Runs shards one after another in this process (replace with your executor)"

    def run(self, fn: ShardFunction, tasks: Sequence[ShardTask],
            on_event: Callable[[ProgressEvent], None]) -> Iterator[ShardOutcome]:
        def emit(event: ProgressEvent) -> None:
            event.worker, event.host = "{name}-0", "localhost"
            on_event(event)

        for task in tasks:
            try:
                yield ShardOutcome(task, True, fn(task, emit), worker="{name}-0")
            except MontageError as exc:  # the shard's own error: permanent
                yield ShardOutcome(task, False, error=str(exc), worker="{name}-0")
            except MemoryError as exc:  # the worker ran out: worth a retry elsewhere
                yield ShardOutcome(task, False, error=f"out of memory: {{exc}}", transient=True)


@hookimpl
def montage_register_backends(register: Callable[[Any], None]) -> None:
    register({cls}())
''',
}

TESTS = {
    "style": '''from montage_core.models import Shot


def test_ranks_by_motion(pm):
    pm.register(montage_{name}, "{name}")
    style = pm.styles.get("{name}")
    shots = [Shot("a.mp4", 0, 0, 4, {{"motion": 0.1}}), Shot("b.mp4", 0, 0, 4, {{"motion": 0.3}})]
    ranked = style.rank(shots, {{"min_motion": 0.0}}, print)
    assert [s.clip for s, _ in ranked] == ["b.mp4", "a.mp4"]
''',
    "analyzer": '''import numpy as np


def test_one_value_per_frame(pm):
    pm.register(montage_{name}, "{name}")
    analyzer = pm.analyzers.get("{name}")
    frames = np.random.default_rng(0).integers(0, 256, (5, 36, 64), dtype=np.uint8)
    out = analyzer.compute(frames, np.empty((0, 0), np.uint8))
    assert set(out) == set(analyzer.outputs) and all(len(v) == 5 for v in out.values())
''',
    "accelerator": '''from montage_core.ffmpeg import ffmpeg_binary


def test_probe_is_data_and_args_are_a_list(pm):
    pm.register(montage_{name}, "{name}")
    accel = pm.accelerators.get("{name}")
    probe = accel.probe(ffmpeg_binary())
    assert probe.name == "{name}" and isinstance(probe.reason, str)
    if probe.available:
        assert accel.encode_args("h264", "standard", probe)[:2] == ["-c:v", "libx264"]
''',
    "planner": '''from montage_core.interfaces import PlanRequest
from montage_core.models import MusicAnalysis, Shot


def test_cuts_on_beats_and_covers_the_music(pm):
    pm.register(montage_{name}, "{name}")
    beats = [0.5 * k for k in range(1, 40)]
    music = MusicAnalysis("m.wav", 20.0, 120.0, beats, beats[::4], [0.0, 20.0], [0.5, 0.5])
    ranked = [(Shot(f"c{{i}}.mp4", 0, 0.0, 10.0), 1.0) for i in range(3)]
    timeline = pm.planners.get("{name}").plan(PlanRequest(ranked, music, pm.styles.get("dynamic"), 25, 640, 360, 0))
    assert timeline.cuts[0].start == 0 and timeline.frame(timeline.cuts[-1].end) == 500
    assert all(min(abs(c.start - b) for b in beats) <= 1 / 25 for c in timeline.cuts[1:])  # on a beat
''',
    "backend": '''from montage_core.engine import run_shards
from montage_core.interfaces import ShardTask


def double(task, emit):
    return task.payload["x"] * 2


def test_runs_every_shard(pm):
    pm.register(montage_{name}, "{name}")
    tasks = [ShardTask(f"s{{i}}", "analysis", "c.mp4", {{"x": i}}) for i in range(3)]
    outcomes = run_shards(pm.backends.get("{name}"), double, tasks, on_event=lambda e: None)
    assert [outcomes[t.id].result for t in tasks] == [0, 2, 4]
''',
}

HOOK_PAGES = {"style": "styles", "analyzer": "analyzers", "accelerator": "accelerators", "planner": "planners",
              "backend": "backends"}


def new_plugin(kind: str, name: str, folder: Path) -> Path:
    """Write the package for a ``kind`` plugin called ``name`` under ``folder``; return its root."""
    if kind not in MODULES:
        raise UnknownChoiceError("plugin kind", kind, MODULES)
    if not re.fullmatch(r"[a-z][a-z0-9_]*", name) or keyword.iskeyword(name):
        raise UsageError(f"plugin name {name!r} must be lower-case letters, digits and underscores (e.g. neon_nights)")
    dashed = name.replace("_", "-")
    root = folder / f"montage-{dashed}"
    if root.exists():
        raise UsageError(f"{root} already exists")
    cls = "".join(part.title() for part in name.split("_")) + kind.title()
    values = {"name": name, "dashed": dashed, "kind": kind, "cls": cls, "title": name.replace("_", " ").title(),
              "hook_page": HOOK_PAGES[kind]}
    (root / f"montage_{name}").mkdir(parents=True)
    (root / "tests").mkdir()
    (root / "pyproject.toml").write_text(PYPROJECT.format(**values))
    (root / "README.md").write_text(README.format(**values))
    (root / f"montage_{name}" / "__init__.py").write_text(MODULES[kind].format(**values))
    (root / "tests" / f"test_{name}.py").write_text(f"import montage_{name}\n" + TESTS[kind].format(**values))
    return root
