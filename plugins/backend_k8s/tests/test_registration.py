"""The registration declares what listings read; it must say what the backend and check themselves say."""

from __future__ import annotations

import pytest

import montage_backend_k8s
from montage_core.hookspecs import Deferred


def _registered(hook: str) -> Deferred:
    found: list[Deferred] = []
    getattr(montage_backend_k8s, hook)(found.append)
    assert len(found) == 1 and isinstance(found[0], Deferred)
    return found[0]


def test_the_declared_backend_agrees_with_the_class(monkeypatch: pytest.MonkeyPatch) -> None:
    from montage_backend_k8s.backend import KubernetesBackend

    deferred = _registered("montage_register_backends")
    real = KubernetesBackend()
    for attr in ("name", "description", "remote_nodes", "supports_dry_run"):
        assert getattr(deferred, attr) == getattr(real, attr), attr
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("KUBECONFIG", "/nonexistent/kubeconfig")
    assert deferred.availability() == real.availability() and deferred.availability()
    assert deferred.implementation_class() is KubernetesBackend


def test_the_declared_preflight_check_agrees_with_the_class() -> None:
    from montage_backend_k8s.preflight import ClusterPreflight

    deferred, real = _registered("montage_register_preflight_checks"), ClusterPreflight()
    assert (deferred.name, deferred.description) == (real.name, real.description)
    for backend in ("k8s", "local", "dask"):
        assert deferred.applies_to(backend) == real.applies_to(backend)
