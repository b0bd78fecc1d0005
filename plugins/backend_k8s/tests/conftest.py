"""Fixtures of the Kubernetes backend's tests (defined in :mod:`k8s_fakes`)."""

from k8s_fakes import denied, kube, registry, server_version  # noqa: F401  (pytest finds fixtures by name here)
