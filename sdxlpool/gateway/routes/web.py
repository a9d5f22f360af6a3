"""The web page: GET / (index.html), GET /static/{name} (its script, style and icon; the icon also
as /favicon.ico, where browsers look for it), and GET /v1/pool (the pool per GPU model, which the
page polls for its GPU toggles).

The files live in `sdxlpool/gateway/web/` and are read with `importlib.resources`, once. Every page
response carries the security headers below: a strict Content-Security-Policy (scripts and styles
from this origin only, no inline script; images also as data: and blob: URLs, which is how results
arrive; network access to this origin and its WebSocket only), no sniffing, no referrer, no framing.
They are revalidated on every load (`no-cache` with an ETag): the files have no hashed names, and a
304 costs next to nothing.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from sdxlpool.errors import NotFound
from sdxlpool.gateway.deps import GatewayDep
from sdxlpool.gateway.pool_summary import summarise_pool

__all__ = ["router", "SECURITY_HEADERS", "CONTENT_SECURITY_POLICY"]

router = APIRouter(tags=["web"])

CONTENT_SECURITY_POLICY = "; ".join((
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data: blob:",
    "connect-src 'self' ws: wss:",  # 'self' covers same-origin WebSockets only in CSP3 browsers
    "font-src 'self'",
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
))
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}

_MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".ico": "image/vnd.microsoft.icon",
}
# A worker counts as up when it was seen alive this recently (a busy CPU worker may answer its
# scrapes late; a dead one is marked down at once by its refused connections anyway).
_UP_WITHIN_SECONDS = 10.0


@dataclass(frozen=True)
class _File:
    content: bytes
    media_type: str
    etag: str


@cache
def _file(name: str) -> _File:
    """A file of the `web` package; NotFound for anything else (no paths, no other suffixes)."""
    suffix = name[name.rfind("."):] if "." in name else ""
    if "/" in name or "\\" in name or name.startswith(".") or suffix not in _MEDIA_TYPES:
        raise NotFound(f"no static file {name!r}")
    resource = resources.files("sdxlpool.gateway.web").joinpath(name)
    if not resource.is_file():
        raise NotFound(f"no static file {name!r}")
    content = resource.read_bytes()
    return _File(content, _MEDIA_TYPES[suffix], '"' + hashlib.sha256(content).hexdigest()[:32] + '"')


def _serve(request: Request, name: str) -> Response:
    found = _file(name)
    headers = {**SECURITY_HEADERS, "Cache-Control": "no-cache", "ETag": found.etag}
    if found.etag in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers=headers)
    return Response(found.content, media_type=found.media_type, headers=headers)


@router.api_route("/", methods=["GET", "HEAD"], include_in_schema=False)
def index(request: Request) -> Response:
    return _serve(request, "index.html")


@router.api_route("/static/{name}", methods=["GET", "HEAD"], include_in_schema=False)
def static(request: Request, name: str) -> Response:
    return _serve(request, name)


@router.api_route("/favicon.ico", methods=["GET", "HEAD"], include_in_schema=False)
def favicon(request: Request) -> Response:
    return _serve(request, "favicon.ico")


@router.get("/v1/pool")
def pool(gateway: GatewayDep) -> dict[str, Any]:
    """The pool per GPU model (workers, up, busy, price), whether generating needs an API key, and
    the pool's default steps and size (the page starts from them: `up` on a CPU asks for small images)."""
    models = summarise_pool(gateway.pool.states(), time.monotonic(), stale_after=_UP_WITHIN_SECONDS,
                            pool_gpus=gateway.settings.pool_gpus)
    settings = gateway.settings
    return {"models": [m.as_json() for m in models], "api_key_required": gateway.api_keys.required,
            "defaults": {"steps": settings.default_steps, "width": settings.default_width,
                         "height": settings.default_height}}
