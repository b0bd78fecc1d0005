"""Kubernetes backend for montage: each stage as an Indexed Job (one index per shard) on a shared
volume, per-index retry, pod logs and diagnoses by job id, pre-flight checks, cluster defaults
(``montage config --show``), GPU-vendor placement, ``--dry-run`` manifests, ``montage cancel`` and
``montage k8s cleanup``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from montage_core.hookspecs import Deferred, hookimpl


def availability() -> str | None:
    """Why the backend cannot run here, or ``None`` (``KubernetesBackend.availability``).

    Kept here so that ``montage plugins`` can ask it without importing the backend's modules
    (about 1,600 lines); the client is looked up, not imported."""
    import importlib.util

    if importlib.util.find_spec("kubernetes") is None:
        return "the kubernetes client is not installed; pip install montage-backend-k8s"
    from .config import cluster_credentials

    return cluster_credentials()


@hookimpl
def montage_register_backends(register: Callable[[Any], None]) -> None:
    # Listings read what is declared here; a job imports .backend (MontageManager.new_backend).
    register(Deferred("montage_backend_k8s.backend:KubernetesBackend", name="k8s",
                      description="Kubernetes: one Indexed Job per stage on a shared RWX volume (montage config --show)",
                      availability=availability, remote_nodes=True, supports_dry_run=True))


@hookimpl
def montage_register_preflight_checks(register: Callable[[Any], None]) -> None:
    register(Deferred("montage_backend_k8s.preflight:ClusterPreflight", name="k8s",
                      description="API access and RBAC, namespace/service account/PVC, registry and image, the shared volume",
                      applies_to=lambda backend: backend == "k8s"))


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

    @click.command("logs")
    @click.argument("job_id")
    @click.option("--events", is_flag=True, help="Keep the workers' progress event lines.")
    def logs_command(job_id: str, events: bool) -> None:
        """Logs of every pod of a Kubernetes job (all stages and retries), with a diagnosis per failed pod."""
        from montage_core.errors import MontageError
        from montage_core.jobstore import JobStore

        from .logs import format_logs, get_pod_logs, stored_pod_logs

        store = JobStore()
        if store.job(job_id) is None:
            raise MontageError(f"no job {job_id!r} in {store.path} (montage serve lists the jobs)")
        try:
            found = get_pod_logs(job_id)
        except Exception as exc:  # the cluster is gone or unreachable: the copies kept at run time
            click.echo(f"warning: cluster not reachable ({type(exc).__name__}); showing stored logs", err=True)
            found = []
        if not found:
            found = stored_pod_logs(job_id, store)
        if not found:
            raise MontageError(f"job {job_id} has no pod logs (it ran on the {store.job(job_id)['backend']} backend?)")
        click.echo(format_logs(found, events=events))

    cli.add_command(logs_command)

    @click.command("k8s-probe-storage", hidden=True)
    @click.argument("path")
    def probe_storage_command(path: str) -> None:
        """Inside a pod: write, read and delete a probe file at PATH; one JSON line with the report."""
        import json
        import sys

        from .storage import probe_storage

        report = probe_storage(path)
        click.echo(json.dumps({"montage_storage": {**report.to_dict(), "describe": report.describe()}}))
        sys.exit(0 if report.ok else 1)

    cli.add_command(probe_storage_command)

    @click.group("k8s")
    def k8s_group() -> None:
        """Kubernetes backend housekeeping."""

    @k8s_group.command("cleanup")
    @click.option("--older-than", default=24.0, show_default=True, metavar="HOURS",
                  help="Only folders of jobs that finished at least this long ago.")
    @click.option("--dry-run", is_flag=True, help="List the folders that would be removed; remove nothing.")
    def cleanup_command(older_than: float, dry_run: bool) -> None:
        """Remove the folders finished jobs (done, failed, cancelled) left on the shared volume."""
        from montage_core.jobstore import JobStore

        from .cleanup import cleanup
        from .config import resolve

        for line in cleanup(resolve()["local_mount"].value, JobStore(), older_than, dry_run):
            click.echo(line)

    cli.add_command(k8s_group)
