"""Pre-flight for the worker image: does the registry answer its HTTP API v2, and is the image there?

A Job whose image cannot be pulled only fails minutes later as ``ImagePullBackOff`` on some node.
Asking the registry first turns that into one line before anything is submitted, and resolving
the tag to a digest here pins every pod of a run to the same image even if the tag moves meanwhile.
Only the standard library is used so that the check runs in a bare worker image too.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import re
import socket
import ssl
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from email.message import Message

from montage_core.errors import UsageError

# Index types first: a multi-arch image's tag points at an index, and its digest is what to pin.
MANIFEST_TYPES = ("application/vnd.oci.image.index.v1+json, "
                  "application/vnd.docker.distribution.manifest.list.v2+json, "
                  "application/vnd.oci.image.manifest.v1+json, "
                  "application/vnd.docker.distribution.manifest.v2+json")
LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")
_DIGEST = re.compile(r"^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]{32,}$")
_REPOSITORY = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$")


@dataclass(frozen=True)
class ImageRef:
    registry: str  # host[:port]
    repository: str  # "montage" or "team/montage"
    tag: str | None
    digest: str | None  # "sha256:..."
    scheme: str = ""  # "http"/"https" when the image string said so, else "" (found out by asking)

    def reference(self) -> str:
        """What the manifest URL names: a digest wins over a tag, as it does for ``docker pull``."""
        return self.digest or self.tag or "latest"

    def pinned(self, digest: str) -> str:
        return f"{self.registry}/{self.repository}@{digest}"


def parse_image(image: str) -> ImageRef:
    """``[http(s)://]host[:port]/repo[:tag][@digest]``; the host is required because pods pull from it."""
    rest, scheme = image.strip(), ""
    for prefix in ("http://", "https://"):
        if rest.startswith(prefix):
            scheme, rest = prefix[:-3], rest[len(prefix):]
    host, _, rest = rest.partition("/")
    # Docker's own rule: the first component is a host only if it has a dot, a port or is localhost.
    if not rest or not ("." in host or ":" in host or host == "localhost"):
        raise UsageError(f"image {image!r} names no registry host: write it as HOST[:PORT]/REPOSITORY[:TAG], "
                         "e.g. 127.0.0.1:5000/montage:latest")
    rest, _, digest = rest.partition("@")
    tag = None
    if ":" in rest.rpartition("/")[2]:
        rest, _, tag = rest.rpartition(":")
    if not _REPOSITORY.match(rest) or (digest and not _DIGEST.match(digest)) or tag == "":
        raise UsageError(f"image {image!r} is not a valid reference: the repository must be lower case "
                         "and the digest look like sha256:<64 hex digits>")
    return ImageRef(host, rest, tag, digest or None, scheme)


@dataclass
class ImageCheck:
    image: str
    digest: str | None = None  # manifest digest the registry serves for the reference
    pinned: str | None = None  # registry/repository@digest, what the Job should name
    problems: list[str] = field(default_factory=list)  # one line each; empty means the image can be pulled

    @property
    def ok(self) -> bool:
        return not self.problems


class _CheckError(Exception):
    """One line for ImageCheck.problems; raised inside this module only, never out of check_image."""


def _why(exc: BaseException, timeout: float) -> str:
    """The network failure in a few words (urllib wraps the socket error in URLError.reason)."""
    reason = getattr(exc, "reason", exc)
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused"
    if isinstance(reason, TimeoutError):
        return f"no answer within {timeout:g}s"
    if isinstance(reason, ssl.SSLError):
        return f"TLS handshake failed: {reason.reason or reason}"
    if isinstance(reason, socket.gaierror):
        return f"cannot resolve host: {reason.strerror}"
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror.lower()
    return " ".join(str(reason).split()) or type(reason).__name__


class _Registry:
    """One registry base URL plus the bearer token, if the registry wanted one."""

    def __init__(self, ref: ImageRef, timeout: float, insecure: bool | None):
        self.ref, self.timeout, self.token = ref, timeout, ""
        context = ssl.create_default_context()
        if insecure:  # self-signed registries, as Docker's "insecure-registries" allows
            context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        handlers: list[urllib.request.BaseHandler] = [urllib.request.HTTPSHandler(context=context)]
        if ref.registry.rpartition(":")[0] in LOOPBACK or ref.registry in LOOPBACK:
            handlers.append(urllib.request.ProxyHandler({}))  # a proxy from the environment cannot reach our loopback
        self.opener = urllib.request.build_opener(*handlers)
        self.base = ""

    def get(self, url: str, method: str = "GET", accept: str = "") -> tuple[int, Message, bytes]:
        """Status, headers and body; HTTP errors are answers, network errors raise (URLError/OSError)."""
        headers = {"Accept": accept} if accept else {}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        request = urllib.request.Request(url, method=method, headers=headers)
        try:
            with self.opener.open(request, timeout=self.timeout) as resp:
                return resp.status, resp.headers, resp.read()
        except urllib.error.HTTPError as err:
            with err:
                return err.code, err.headers, err.read()

    def connect(self, insecure: bool | None) -> tuple[int, Message]:
        """GET /v2/ over the image's scheme, else https, else plain http when TLS is not spoken there."""
        reg = self.ref.registry
        schemes = [self.ref.scheme] if self.ref.scheme else ["http"] if insecure else ["https", "http"]
        for scheme in schemes:
            self.base = f"{scheme}://{reg}"
            try:
                status, headers, _ = self.get(f"{self.base}/v2/")
                return status, headers
            except (OSError, ValueError, http.client.HTTPException) as exc:
                reason = getattr(exc, "reason", exc)
                plain_http = isinstance(reason, ssl.SSLError) and not isinstance(reason, ssl.SSLCertVerificationError)
                if scheme == "https" and plain_http and insecure is None and len(schemes) > 1:
                    continue  # the registry speaks plain HTTP (a cluster-internal one usually does)
                if isinstance(reason, ssl.SSLCertVerificationError):
                    raise _CheckError(f"registry {reg} presents a TLS certificate that is not trusted "
                                      f"({reason.verify_message}): add its CA to the trust store or allow it as "
                                      "insecure") from None
                raise _CheckError(f"registry {reg} does not answer its /v2/ API over {scheme} "
                                  f"({_why(exc, self.timeout)}): start the registry or point REGISTRY at the right "
                                  "host") from None
        raise AssertionError("unreachable")

    def login(self, challenge: str) -> None:
        """Anonymous pull token from a ``Bearer realm=...,service=...`` challenge (Docker Hub, Harbor, GitLab)."""
        params = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
        need = (f"registry {self.ref.registry} needs credentials for {self.ref.repository}: create an "
                "imagePullSecret for it and name it in the service account, or make the repository public")
        if not challenge.lower().startswith("bearer") or "realm" not in params:
            raise _CheckError(need)
        query = {"scope": f"repository:{self.ref.repository}:pull"}
        if "service" in params:
            query["service"] = params["service"]
        try:
            status, _, body = self.get(f"{params['realm']}?{urllib.parse.urlencode(query)}")
            answer = json.loads(body) if status == 200 else {}
        except (OSError, ValueError, http.client.HTTPException):
            answer = {}
        self.token = (answer.get("token") or answer.get("access_token") or "") if isinstance(answer, dict) else ""
        if not self.token:
            raise _CheckError(need)


def _check(ref: ImageRef, image: str, timeout: float, insecure: bool | None) -> ImageCheck:
    reg, repo = ref.registry, ref.repository
    client = _Registry(ref, timeout, insecure)
    status, headers = client.connect(insecure)
    if status == 401:
        client.login(headers.get("WWW-Authenticate", ""))
    elif status != 200:
        raise _CheckError(f"{reg} answered {status} at /v2/: it is not a Docker Registry HTTP API v2; "
                          "point REGISTRY at the registry's host:port")
    url = f"{client.base}/v2/{repo}/manifests/{ref.reference()}"
    status, headers, body = client.get(url, "HEAD", MANIFEST_TYPES)
    if status == 405:  # some registries (and proxies) do not allow HEAD on manifests
        status, headers, body = client.get(url, "GET", MANIFEST_TYPES)
    if status == 401 and not client.token:  # /v2/ was open but this repository is not
        client.login(headers.get("WWW-Authenticate", ""))
        status, headers, body = client.get(url, "GET", MANIFEST_TYPES)
    if status == 401:
        client.login("")  # a token that does not suffice: the credentials line
    if status == 404:
        push = image.split("://", 1)[-1]
        raise _CheckError(f"image {push} is not in registry {reg}: push it (docker push {push}) "
                          f"or fix MONTAGE_IMAGE{_tags(client)}")
    if status != 200:
        raise _CheckError(f"registry {reg} answered {status} for {repo}:{ref.reference()}: check the registry's logs")
    digest = headers.get("Docker-Content-Digest")
    if not digest:  # the digest is by definition the hash of the manifest bytes as served
        if not body:
            status, _, body = client.get(url, "GET", MANIFEST_TYPES)
        digest = "sha256:" + hashlib.sha256(body).hexdigest()
    if ref.digest and digest != ref.digest:
        raise _CheckError(f"registry {reg} serves digest {digest} for {image}, not the one asked for: "
                          "the registry or a proxy in front of it rewrites manifests")
    return ImageCheck(image, digest, ref.pinned(digest))


def _tags(client: _Registry) -> str:
    """``(tags there: ...)`` so that a typo in the tag is obvious; "" when the list cannot be had."""
    try:
        status, _, body = client.get(f"{client.base}/v2/{client.ref.repository}/tags/list")
        if status == 404:
            return f" (no repository {client.ref.repository} there)"
        tags = sorted(json.loads(body).get("tags") or []) if status == 200 else None
    except (OSError, ValueError, AttributeError, http.client.HTTPException):
        return ""
    if tags is None:
        return ""
    shown = ", ".join(tags[:10]) + (f", ... ({len(tags)} in all)" if len(tags) > 10 else "")
    return f" (tags there: {shown})" if tags else " (repository has no tags)"


def check_image(image: str, *, timeout: float = 5.0, insecure: bool | None = None) -> ImageCheck:
    """Ask the registry for ``image``; never raises for network trouble, returns it as problems.

    ``insecure``: None tries https then plain http when TLS is not spoken; True skips certificate checks
    and uses http unless the image says https://; False allows https only. Raises UsageError only for an
    image string that cannot be parsed at all.
    """
    ref = parse_image(image)
    try:
        return _check(ref, image, timeout, insecure)
    except _CheckError as exc:
        return ImageCheck(image, problems=[str(exc)])
    except (OSError, ValueError, http.client.HTTPException) as exc:  # a registry that went away between two requests
        line = f"registry {ref.registry} stopped answering ({_why(exc, timeout)}): check it and try again"
        return ImageCheck(image, problems=[line])
