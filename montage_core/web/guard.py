"""What stands between the web UI and other sites: Host, origin, CSRF token, access token, headers.

``montage serve`` listens on loopback by default, but any page the user opens can still send
requests there (a cross-site POST) or, through DNS rebinding, read its answers. So:

- the ``Host`` header must name the address the server is bound to (or one given with
  ``--allowed-host``): a rebinding attacker's name is refused;
- a request that changes anything must come from the UI's own origin (``Sec-Fetch-Site``,
  ``Origin``) *and* carry the per-browser CSRF token (a ``SameSite=Strict`` cookie that forms echo
  in a hidden field, scripts in ``X-CSRF-Token``);
- with ``--token`` every request needs the access token;
- every answer carries a Content-Security-Policy without inline script (the pages' scripts carry
  a per-response nonce), ``X-Content-Type-Options: nosniff`` and ``Referrer-Policy: same-origin``.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from typing import Any

from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from ..errors import MontageError

CSRF_COOKIE = "montage_csrf"
TOKEN_COOKIE = "montage_token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1"})


def allowed_hosts(bound: str, extra: Iterable[str] = ()) -> frozenset[str]:
    """Host names a request may address: the bound one (all loopback names for a loopback bind)."""
    names = {bound.strip("[]").lower(), *(h.strip("[]").lower() for h in extra)}
    if names & LOOPBACK_NAMES or bound in ("0.0.0.0", "::"):
        names |= LOOPBACK_NAMES
    return frozenset(names)


def _host_name(header: str) -> str:
    header = header.strip().lower()
    if header.startswith("["):  # [::1]:8765
        return header[1:header.find("]")] if "]" in header else header
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


def _same(a: str, b: str) -> bool:
    return secrets.compare_digest(a.encode("utf-8", "replace"), b.encode("utf-8", "replace"))


class GuardMiddleware(BaseHTTPMiddleware):
    def __init__(self, app: Any, *, hosts: frozenset[str], token: str | None):
        super().__init__(app)
        self.hosts, self.token = hosts, token

    async def dispatch(self, request: Request, call_next: Any) -> Response:
        request.state.nonce = secrets.token_urlsafe(16)
        host = _host_name(request.headers.get("host", ""))
        if host not in self.hosts:
            return _headers(PlainTextResponse(f"host {host!r} is not served here (allowed: "
                                              f"{', '.join(sorted(self.hosts))}; add one with --allowed-host)",
                                              status_code=400), request.state.nonce)
        if self.token:
            given = (request.query_params.get("token") or request.cookies.get(TOKEN_COOKIE)
                     or request.headers.get("authorization", "").removeprefix("Bearer "))
            if not _same(given or "", self.token):
                return _headers(PlainTextResponse("access token required (?token=…)", status_code=401),
                                request.state.nonce)
        if request.method not in SAFE_METHODS and not self._same_origin(request):
            return _headers(PlainTextResponse("cross-site request refused", status_code=403), request.state.nonce)
        csrf = request.cookies.get(CSRF_COOKIE) or secrets.token_urlsafe(24)
        request.state.csrf = csrf
        response = _headers(await call_next(request), request.state.nonce)
        if CSRF_COOKIE not in request.cookies:
            response.set_cookie(CSRF_COOKIE, csrf, httponly=True, samesite="strict")
        if self.token and request.query_params.get("token"):
            response.set_cookie(TOKEN_COOKIE, self.token, httponly=True, samesite="strict")
        return response

    @staticmethod
    def _same_origin(request: Request) -> bool:
        site = request.headers.get("sec-fetch-site")
        if site is not None:  # set by the browser itself, no page can forge it
            return site in ("same-origin", "none")
        origin = request.headers.get("origin")
        if origin is not None and origin != f"{request.url.scheme}://{request.headers.get('host', '')}":
            return False
        return True


def _headers(response: Response, nonce: str) -> Response:
    """The security headers every answer carries, refusals included."""
    response.headers["Content-Security-Policy"] = (
        f"default-src 'self'; script-src 'self' 'nonce-{nonce}'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; media-src 'self'; connect-src 'self'; frame-ancestors 'none'; "
        "base-uri 'none'; form-action 'self'")
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"  # "no-referrer" would make a form's Origin "null"
    response.headers["X-Frame-Options"] = "DENY"
    return response


class CrossSiteError(MontageError):
    """A state-changing request without this browser's CSRF token (answered 403)."""


def check_csrf(request: Request, form: Any = None) -> None:
    """The request carries this browser's CSRF token (form field ``csrf`` or ``X-CSRF-Token``)."""
    expected = request.cookies.get(CSRF_COOKIE, "")
    given = request.headers.get("x-csrf-token") or (str(form.get("csrf") or "") if form is not None else "")
    if not expected or not given or not _same(given, expected):
        raise CrossSiteError("the form is stale or came from another site (CSRF token missing or wrong); reload the page")
