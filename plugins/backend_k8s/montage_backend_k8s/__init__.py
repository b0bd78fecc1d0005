"""Kubernetes support for montage: cluster settings (``montage config --show``), Indexed Job
manifests with per-index retry, and pod failure diagnoses. The ``k8s`` backend itself (submit,
follow, resubmit failed indexes) builds on these."""

from __future__ import annotations

from typing import Any

from montage_core.hookspecs import hookimpl


@hookimpl
def montage_register_commands(cli: Any) -> None:
    import click

    @click.command("config")
    @click.option("--show", is_flag=True, required=True, help="Print every resolved cluster setting and its source.")
    @click.option("--namespace", default=None)
    @click.option("--registry", default=None)
    @click.option("--pvc", default=None)
    @click.option("--image", default=None)
    def config_command(show: bool, namespace: str | None, registry: str | None, pvc: str | None,
                       image: str | None) -> None:
        """Cluster settings for the Kubernetes backend, and where each value came from."""
        from .config import describe, resolve

        for line in describe(resolve({"namespace": namespace, "registry": registry, "pvc": pvc, "image": image})):
            click.echo(line)

    cli.add_command(config_command)
