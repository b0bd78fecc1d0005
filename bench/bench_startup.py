"""Start-up benchmark: montage's listing commands against ``python -c "import click"``.

    python bench/bench_startup.py [--repeat 10]

Every contender is a fresh process, and the contenders take turns within each repeat:

import click          the baseline: the interpreter, its site-packages (.pth files, editable
                      finders) and the CLI library montage is built on, and nothing else
montage --help        the installed console script (pip's generated ``montage`` beside the
                      interpreter), which is what a user types; it pays for the editable finders too
montage plugins       the same script listing the installed plugins (JSON, the default)
montage styles        the registered styles
montage check-hw      the accelerators, answered from this host's probe cache (an untimed run fills
                      it first)
python -m montage_core plugins
                      the listing without the console script, for comparison

Printed for each: wall seconds and CPU seconds (user + system of the child process, from
``RUSAGE_CHILDREN``), best of ``--repeat`` (median beside it), and the ratios against the
baseline. The issue wants ``montage plugins`` at most 2x ``import click`` in both.

Each run gets ``MONTAGE_CACHE_DIR`` and ``MONTAGE_HOME`` in ``bench/results/startup`` unless they
are set, so the probe cache it reads is its own.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
sys.path.insert(0, str(HERE))
from bench_render import print_ratios, run_timed  # noqa: E402  (one way to time and print)

TARGET = 2.0


def montage_script() -> list[str]:
    """The console script pip generated beside this interpreter; ``python -m montage_core`` without one.

    A version manager's shim on ``PATH`` (pyenv's is a bash script) would add its own start-up,
    which is not montage's, so the script next to ``sys.executable`` comes first.
    """
    beside = Path(sys.executable).parent / "montage"
    if beside.is_file():
        return [str(beside)]
    found = shutil.which("montage")
    return [found] if found else [sys.executable, "-m", "montage_core"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--from-source", action="store_true",
                        help="do not byte-compile montage's packages first (every start compiles them)")
    args = parser.parse_args()
    if not args.from_source:
        # As installed: pip writes .pyc files at install time, and a checkout writes them on first
        # import unless PYTHONDONTWRITEBYTECODE is set (then every start compiles ~5,000 lines).
        import compileall

        repo = Path(__file__).resolve().parent.parent
        for package in [repo / "montage_core", *sorted(repo.glob("plugins/*/montage_*"))]:
            compileall.compile_dir(str(package), quiet=1)
    print(f"montage's packages {'from source' if args.from_source else 'byte-compiled'}"
          f" (PYTHONDONTWRITEBYTECODE={os.environ.get('PYTHONDONTWRITEBYTECODE', '')!r})")

    work = RESULTS / "startup"
    env = dict(os.environ)
    env.setdefault("MONTAGE_CACHE_DIR", str(work / "cache"))
    env.setdefault("MONTAGE_HOME", str(work / "home"))
    script = montage_script()
    contenders: dict[str, list[str]] = {
        "import click": [sys.executable, "-c", "import click"],
        "montage --help": [*script, "--help"],
        "montage plugins": [*script, "plugins"],
        "montage styles": [*script, "styles"],
        "montage check-hw (cached)": [*script, "check-hw"],
        "python -m montage_core plugins": [sys.executable, "-m", "montage_core", "plugins"],
    }
    print(f"montage: {' '.join(script)}", flush=True)
    for command in contenders.values():  # untimed: fills the probe cache, warms the page cache
        run_timed(command, env)
    rows: dict[str, list[tuple[float, float]]] = {name: [] for name in contenders}
    for _ in range(args.repeat):
        for name, command in contenders.items():
            rows[name].append(run_timed(command, env))
    base_wall = min(w for w, _ in rows["import click"])
    base_cpu = min(c for _, c in rows["import click"])
    load = os.getloadavg()[0]
    print(f"\n{os.cpu_count()} cores, load {load:.2f} at the end, best of {args.repeat}")
    print_ratios(rows, base_wall, base_cpu, digits=3)
    plugins = rows["montage plugins"]
    ratio = max(min(w for w, _ in plugins) / base_wall, min(c for _, c in plugins) / base_cpu)
    print(f"target: montage plugins / import click <= {TARGET:g} (wall and CPU): "
          f"{'PASS' if ratio <= TARGET else 'MISS'} ({ratio:.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
