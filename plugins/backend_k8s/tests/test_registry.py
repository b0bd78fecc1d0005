"""The image pre-flight against a real registry (Debian's docker-registry, distribution 2.8) on loopback.

A tiny image is pushed through the registry's own HTTP API, as ``docker push`` does it: two blobs
(a config and a gzipped layer), then a schema 2 manifest naming them. What that registry cannot be
configured to do without a token-signing certificate (bearer-token auth), or is not (some other web
server), is served by small http.server handlers on loopback.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import http.server
import io
import json
import socket
import subprocess
import tarfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from k8s_fakes import REGISTRY_BIN, REPO, _free_port, _http
from montage_backend_k8s.registry import ImageRef, check_image, parse_image
from montage_core.errors import UsageError

pytestmark = pytest.mark.skipif(not REGISTRY_BIN.exists(),
                                reason="needs /usr/bin/docker-registry (Debian package docker-registry)")


def test_present_by_tag_resolves_the_digest(registry: tuple[str, str]) -> None:
    host, digest = registry
    check = check_image(f"http://{host}/{REPO}:1.0")
    assert check.ok and check.problems == []
    assert check.digest == digest
    assert check.pinned == f"{host}/{REPO}@{digest}"


def test_plain_http_registry_found_without_a_scheme(registry: tuple[str, str]) -> None:
    """https is tried first; the TLS handshake fails against a plain-HTTP registry, so http is used."""
    host, digest = registry
    check = check_image(f"{host}/{REPO}")  # no tag: latest
    assert check.ok, check.problems
    assert check.pinned == f"{host}/{REPO}@{digest}"


def test_https_only_reports_the_tls_failure(registry: tuple[str, str]) -> None:
    host, _ = registry
    (problem,) = check_image(f"{host}/{REPO}:1.0", insecure=False).problems
    assert problem.startswith(f"registry {host} does not answer its /v2/ API over https (TLS handshake failed: ")


def test_present_by_digest(registry: tuple[str, str]) -> None:
    host, digest = registry
    for image in (f"http://{host}/{REPO}@{digest}", f"{host}/{REPO}:1.0@{digest}"):
        check = check_image(image)
        assert check.ok, check.problems
        assert (check.digest, check.pinned) == (digest, f"{host}/{REPO}@{digest}")


def test_absent_tag_lists_the_tags_there(registry: tuple[str, str]) -> None:
    host, _ = registry
    check = check_image(f"http://{host}/{REPO}:9.9")
    assert not check.ok and check.digest is None and check.pinned is None
    assert check.problems == [(f"image {host}/{REPO}:9.9 is not in registry {host}: push it "
                               f"(docker push {host}/{REPO}:9.9) or fix MONTAGE_IMAGE (tags there: 1.0, latest)")]


def test_absent_digest(registry: tuple[str, str]) -> None:
    host, _ = registry
    (problem,) = check_image(f"http://{host}/{REPO}@sha256:{'0' * 64}").problems
    assert f"is not in registry {host}" in problem and "(tags there: 1.0, latest)" in problem


def test_absent_repository(registry: tuple[str, str]) -> None:
    host, _ = registry
    (problem,) = check_image(f"http://{host}/other/montage:1.0").problems
    assert problem == (f"image {host}/other/montage:1.0 is not in registry {host}: push it "
                       f"(docker push {host}/other/montage:1.0) or fix MONTAGE_IMAGE "
                       "(no repository other/montage there)")


def test_registry_down() -> None:
    port = _free_port()  # nothing listens there
    for image in (f"http://127.0.0.1:{port}/montage:1.0", f"127.0.0.1:{port}/montage:1.0"):
        (problem,) = check_image(image, timeout=2).problems
        assert problem.startswith(f"registry 127.0.0.1:{port} does not answer its /v2/ API over ")
        assert "(connection refused): start the registry or point REGISTRY at the right host" in problem


class _TokenRegistry(http.server.BaseHTTPRequestHandler):
    """A registry with bearer-token auth (as Docker Hub or Harbor): its token service grants ``GRANT``."""

    GRANT = ""

    def do_GET(self) -> None:  # http.server's naming
        if self.path.startswith("/token?"):
            asked = "scope=repository%3Ateam%2Fmontage%3Apull" in self.path and "service=fake" in self.path
            self._answer(200 if asked and self.GRANT else 401, {}, json.dumps({"token": self.GRANT}).encode())
        elif self.headers.get("Authorization") != "Bearer secret-token":
            realm = f"http://{self.headers['Host']}/token"
            self._answer(401, {"WWW-Authenticate": f'Bearer realm="{realm}",service="fake"'})
        else:
            self._answer(200, {"Docker-Content-Digest": "sha256:" + "ab" * 32}, b"{}")

    def do_HEAD(self) -> None:
        self.do_GET()

    def _answer(self, status: int, headers: dict[str, str], body: bytes = b"") -> None:
        self.send_response(status)
        for name, value in {**headers, "Content-Length": str(len(body))}.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


class _NotARegistry(_TokenRegistry):
    """Some other web server on the registry's address."""

    def do_GET(self) -> None:
        self._answer(404, {}, b"not found")


@contextlib.contextmanager
def _serve(handler: type[http.server.BaseHTTPRequestHandler]) -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    try:
        yield server.server_port
    finally:
        server.shutdown()
        server.server_close()


def test_not_a_registry() -> None:
    with _serve(_NotARegistry) as port:
        (problem,) = check_image(f"http://127.0.0.1:{port}/team/montage:1.0").problems
    assert problem == (f"127.0.0.1:{port} answered 404 at /v2/: it is not a Docker Registry HTTP API v2; "
                       "point REGISTRY at the registry's host:port")


@pytest.mark.parametrize("grant", ["secret-token", ""])
def test_bearer_token_flow(grant: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_TokenRegistry, "GRANT", grant)
    with _serve(_TokenRegistry) as port:
        check = check_image(f"http://127.0.0.1:{port}/team/montage:1.0")
    if grant:
        assert check.ok, check.problems
        assert check.pinned == f"127.0.0.1:{port}/team/montage@sha256:{'ab' * 32}"
    else:
        assert check.problems == [(f"registry 127.0.0.1:{port} needs credentials for team/montage: create "
                                   "an imagePullSecret for it and name it in the service account, or make the "
                                   "repository public")]


@pytest.mark.parametrize(("image", "expected"), [
    ("127.0.0.1:5000/montage:0.1.0", ImageRef("127.0.0.1:5000", "montage", "0.1.0", None)),
    ("registry.registry.svc.cluster.local:5000/team/montage", ImageRef(
        "registry.registry.svc.cluster.local:5000", "team/montage", None, None)),
    ("localhost/montage@sha256:" + "a" * 64, ImageRef("localhost", "montage", None, "sha256:" + "a" * 64)),
    ("host:5000/a/b:tag@sha256:" + "b" * 64, ImageRef("host:5000", "a/b", "tag", "sha256:" + "b" * 64)),
    ("http://127.0.0.1:5000/montage:1", ImageRef("127.0.0.1:5000", "montage", "1", None, "http")),
    ("https://ghcr.io/org/montage:1", ImageRef("ghcr.io", "org/montage", "1", None, "https")),
])
def test_parse_image(image: str, expected: ImageRef) -> None:
    ref = parse_image(image)
    assert ref == expected
    assert ref.reference() == (expected.digest or expected.tag or "latest")
    assert ref.pinned("sha256:" + "c" * 64) == f"{expected.registry}/{expected.repository}@sha256:{'c' * 64}"


@pytest.mark.parametrize("image", ["montage:1.0", "team/montage:1.0", "montage", "http://montage"])
def test_parse_image_needs_a_registry_host(image: str) -> None:
    with pytest.raises(UsageError, match=r"names no registry host: write it as HOST\[:PORT\]/REPOSITORY"):
        parse_image(image)


@pytest.mark.parametrize("image", ["127.0.0.1:5000/Montage:1", "127.0.0.1:5000/montage@sha256:short",
                                   "127.0.0.1:5000/montage:"])
def test_parse_image_rejects_bad_references(image: str) -> None:
    with pytest.raises(UsageError, match="is not a valid reference"):
        parse_image(image)
