"""The registration declares what listings read; it must say what the backend and check themselves say."""

from __future__ import annotations

import subprocess
import sys

import montage_backend_dask
from montage_core.hookspecs import Deferred


def _registered(hook: str) -> Deferred:
    found: list[Deferred] = []
    getattr(montage_backend_dask, hook)(found.append)
    assert len(found) == 1 and isinstance(found[0], Deferred)
    return found[0]


def test_the_declared_backend_agrees_with_the_class() -> None:
    from montage_backend_dask.backend import DaskBackend

    deferred = _registered("montage_register_backends")
    real = DaskBackend()
    for attr in ("name", "description", "supports_dry_run"):
        assert getattr(deferred, attr) == getattr(real, attr), attr
    assert deferred.availability() == real.availability()
    assert deferred.implementation_class() is DaskBackend is montage_backend_dask.DaskBackend


def test_the_declared_preflight_check_agrees_with_the_class() -> None:
    from montage_backend_dask.contract import DaskContract

    deferred, real = _registered("montage_register_preflight_checks"), DaskContract()
    assert (deferred.name, deferred.description) == (real.name, real.description)
    for backend in ("k8s", "local", "dask"):
        assert deferred.applies_to(backend) == real.applies_to(backend)


def test_listing_the_plugin_imports_none_of_its_implementation() -> None:
    script = ("import sys; from montage_core.plugins import MontageManager; m = MontageManager(); "
              "b = m.backends.get('dask'); b.description, b.availability(); "
              "print(sorted(n for n in sys.modules if n.startswith(('montage_backend_dask.', 'distributed', "
              "'multiprocessing', 'concurrent.futures'))))")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
