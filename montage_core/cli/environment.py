"""Commands about the installation and this machine: plugins, styles, encoders, caches, pre-flight, scaffolding."""

from __future__ import annotations

import json
from pathlib import Path

import click

from .app import cli
from .options import backend_options, open_backend


@cli.command()
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
def styles(fmt: str) -> None:
    """List the registered styles: pacing, transition, grade, required analyzers, parameters with default and range."""
    from ..plugins import get_manager

    manager = get_manager()
    rows = [{"name": s.name, "plugin": manager.styles.origin(s.name), "description": s.description,
             "pacing": {k: list(v) for k, v in s.pacing.items()},
             "transition": {"kind": s.transition.kind, "duration": s.transition.duration}, "grade": s.grade,
             "requires": list(s.requires),
             "params": {k: {"default": p.default, "minimum": p.minimum, "maximum": p.maximum, "help": p.help}
                        for k, p in s.params.items()}}
            for s in sorted(manager.styles, key=lambda s: s.name)]
    if fmt == "json":
        click.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        return

    def number(value: object) -> str:
        return f"{value:g}" if isinstance(value, (int, float)) else str(value)

    for row in rows:
        pacing = ", ".join(f"{k} {a}-{b}" for k, (a, b) in row["pacing"].items())
        click.echo(f"{row['name']:14s} {row['description']}")
        click.echo(f"{'':14s} beats per cut: {pacing}; transition: {row['transition']['kind']}"
                   + (f" {row['transition']['duration']:g}s" if row["transition"]["duration"] else ""))
        if row["grade"]:
            click.echo(f"{'':14s} grade: {row['grade']}")
        if row["requires"]:
            click.echo(f"{'':14s} analyzers: {', '.join(row['requires'])}")
        for name, p in row["params"].items():
            click.echo(f"{'':14s} --set {name}={number(p['default'])}  "
                       f"(range {number(p['minimum'])}..{number(p['maximum'])})" + (f"  {p['help']}" if p["help"] else ""))


@cli.command()
@click.option("--format", "fmt", type=click.Choice(["json", "table"]), default="json", show_default=True)
@click.option("--all", "show_all", is_flag=True, help="Include the built-in plugins.")
def plugins(fmt: str, show_all: bool) -> None:
    """List installed plugins: version, hooks, what each registered, availability."""
    from ..plugininfo import plugin_rows

    rows = plugin_rows(show_all)
    if fmt == "json":
        click.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    if not rows:
        click.echo("no plugins installed (the built-in ones: montage plugins --all; more: montage install --list)")
    for row in rows:
        status = "ok" if row["available"] else f"unavailable: {row['reason']}"
        registered = "; ".join(f"{k}: {', '.join(v)}" for k, v in row["registered"].items())
        click.echo(f"{row['name']:22s} {row['version']:8s} {status}")
        if registered:
            click.echo(f"{'':22s} {registered}")
        for obj in row.get("objects", []):
            if not obj["available"]:
                click.echo(f"{'':22s} {obj['kind']} {obj['name']}: unavailable: {obj['reason']}")


@cli.command()
@click.argument("names", nargs=-1)
@click.option("--list", "show_list", is_flag=True, help="List the plugins this project publishes.")
def install(names: tuple[str, ...], show_list: bool) -> None:
    """Install plugins into montage's own environment (pip): a catalogue name such as wes_anderson or
    montage-backend-dask, or anything pip takes."""
    from ..catalogue import CATALOGUE, pip
    from ..errors import MontageError, UsageError

    if show_list or not names:
        for plugin in CATALOGUE:
            provides = "; ".join(f"{kind}: {', '.join(v)}" for kind, v in plugin.provides.items())
            click.echo(f"{plugin.distribution:28s} {plugin.summary} ({provides})")
        if not names and not show_list:
            raise UsageError("give the plugins to install (the list above)")
        return
    if status := pip("install", list(names)):
        raise MontageError(f"pip could not install {', '.join(names)} (exit status {status})")


@cli.command()
@click.argument("names", nargs=-1, required=True)
def uninstall(names: tuple[str, ...]) -> None:
    """Uninstall plugins from montage's environment (pip)."""
    from ..catalogue import pip
    from ..errors import MontageError

    if status := pip("uninstall", list(names)):
        raise MontageError(f"pip could not uninstall {', '.join(names)} (exit status {status})")


@cli.command("check-hw")
@click.option("--json", "as_json", is_flag=True)
@click.option("--refresh", is_flag=True, help="Probe again instead of using this host's cached result.")
def check_hw(as_json: bool, refresh: bool) -> None:
    """Probe every accelerator and device; show the encoder chain a run would use."""
    from dataclasses import asdict

    from ..accel import analysis_decoder, describe_probe, encoder_chain, probe_all
    from ..plugins import get_manager

    accelerators = list(get_manager().accelerators)
    probes = probe_all(accelerators, refresh=refresh)
    chain = [a.name for a, _ in encoder_chain(accelerators)]  # raises (exit 1) when no encoder works
    decoder, _ = analysis_decoder(accelerators, probes)
    if as_json:
        click.echo(json.dumps({"accelerators": [asdict(p) for p in probes.values()], "chain": chain,
                               "analysis_decoder": decoder}, indent=2))
        return
    for probe in probes.values():
        status = "ok" if probe.available else "unavailable"
        click.echo(f"{probe.name:10s} {status:12s} {probe.reason}")
        for line in describe_probe(probe):
            click.echo(line)
    click.echo(f"encoder chain: {' → '.join(chain)}")
    click.echo(f"analysis decode: {decoder}")


@cli.command()
@click.option("--clear", is_flag=True, help="Delete cached analyses, ranges, rendered segments and compiled kernels.")
@click.option("--clear-jit", is_flag=True, help="Delete only the compiled (JIT) kernels; they are rebuilt on next use.")
def cache(clear: bool, clear_jit: bool) -> None:
    """Show (or clear) montage's cache: analyses by content hash, rendered segments, compiled kernels."""
    from ..analysis import cache as analysis_cache
    from ..config import cache_dir
    from ..jit import clear_jit_cache, jit_cache_dir

    if clear or clear_jit:
        kernels = clear_jit_cache()
        click.echo(f"removed {kernels} compiled kernel files from {jit_cache_dir()}")
        if clear:
            click.echo(f"removed {analysis_cache.clear()} cached files from {cache_dir()}")
        return
    for area, (count, size) in analysis_cache.usage().items():
        click.echo(f"{area:10s} {count:6d} files {size / 2**20:9.1f} MiB")
    jit_files = [p for p in jit_cache_dir().rglob("*") if p.is_file()] if jit_cache_dir().is_dir() else []
    click.echo(f"{'jit':10s} {len(jit_files):6d} files {sum(p.stat().st_size for p in jit_files) / 2**20:9.1f} MiB"
               f" ({jit_cache_dir()})")
    click.echo(f"in {cache_dir()}")


@cli.command()
@backend_options
def preflight(backend: str, scheduler: str | None, workers: int | None) -> None:
    """Check a backend before submitting work: each problem on one line with its fix; exit 1 if any."""
    from ..job import run_preflight
    from ..plugins import get_manager

    manager = get_manager()
    chosen = open_backend(manager, backend, scheduler, workers, preflight=False)
    checks = [c.name for c in manager.preflight_checks if c.applies_to(backend)]
    run_preflight(manager, chosen, {})  # problems: main() prints one error line each and exits 1
    click.echo(f"pre-flight passed for backend {backend} ({', '.join(checks) or 'no checks registered'})")


@cli.command("new-plugin")
@click.argument("kind")
@click.argument("name")
@click.option("--dir", "folder", default=".", show_default=True, type=click.Path(file_okay=False),
              help="Where to create montage-NAME/.")
def new_plugin(kind: str, name: str, folder: str) -> None:
    """Create a plugin package: KIND is style, analyzer, accelerator, planner or backend."""
    from ..scaffold import new_plugin as scaffold

    root = scaffold(kind, name, Path(folder))
    click.echo(f"created {root}/ — next: pip install -e {root} && python -m pytest {root}/tests")
