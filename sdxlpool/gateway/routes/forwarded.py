"""The A1111 routes the gateway forwards to a worker, one handler for all: POST /sdapi/v1/txt2img,
/img2img, /extra-single-image, /extra-batch-images and /png-info (gateway/kinds.py).

Each answer carries its placement in the X-SDXL-* headers; a generation's (txt2img, img2img) also in
`info.sdxlpool` (attempts, gateway queue time). Extras and png-info answers have no `info` JSON, so
they carry the placement in the headers only, and their bodies are the worker's unchanged.

`X-SDXL-Debug-Routing: 1` adds every attempt's scheduler decision as `info.sdxlpool.routing`
(routes/_debug.py), or to the error. `X-SDXL-Strict: 1` (or `0`) sets strict mode for the request
(api/strict.py).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Body, Header, Request
from fastapi.responses import Response

from sdxlpool._http import until_disconnected
from sdxlpool.api.strict import strict_from_header
from sdxlpool.errors import RequestError
from sdxlpool.gateway.api_keys import presented_key
from sdxlpool.gateway.deps import GatewayDep
from sdxlpool.gateway.forward import Forwarded
from sdxlpool.gateway.kinds import KINDS, RequestKind
from sdxlpool.gateway.passthrough import replace_info
from sdxlpool.gateway.routes._client import placement_headers
from sdxlpool.gateway.routes._debug import error_with_routing, routing_of, wants_routing

router = APIRouter(tags=["A1111"])


def _handler(kind: RequestKind) -> Callable[..., Awaitable[Response]]:
    async def handle(
        gateway: GatewayDep,
        request: Request,
        body: dict[str, Any] = Body(...),  # noqa: B008 - FastAPI's way to take any JSON object
        x_sdxl_gpu: str | None = Header(default=None),
        x_sdxl_debug_routing: str | None = Header(default=None),
        x_sdxl_strict: str | None = Header(default=None),
    ) -> Response:
        client = request.client.host if request.client else ""
        debug_routing = wants_routing(x_sdxl_debug_routing)
        strict = strict_from_header(x_sdxl_strict, None)
        try:
            forwarded = await until_disconnected(request, gateway.route(
                kind, body, gpu_header=x_sdxl_gpu, client=client,
                api_key=presented_key(request.headers, request.query_params), debug_routing=debug_routing,
                strict=strict))
        except RequestError as exc:
            if debug_routing and routing_of(exc) is not None:
                return error_with_routing(exc)
            raise
        content, info = _with_gateway_view(forwarded) if kind.has_info else (forwarded.content, {})
        where = info.get("sdxlpool", {})
        headers = placement_headers(forwarded.state, attempts=forwarded.attempts,
                                    queue_seconds=forwarded.queue_seconds,
                                    inference_seconds=where.get("inference_seconds"),
                                    fast_mode=where.get("fast_mode"))
        return Response(content, status_code=forwarded.status_code, headers=headers, media_type="application/json")

    handle.__name__ = kind.name.replace("-", "_")
    where = "headers and `info.sdxlpool`" if kind.has_info else "headers"
    handle.__doc__ = f"A1111 {kind.name} through the pool (a worker's answer, its placement in the {where})"
    return handle


for _kind in KINDS.values():
    router.add_api_route(_kind.path, _handler(_kind), methods=["POST"], name=_kind.name)


def _with_gateway_view(forwarded: Forwarded) -> tuple[bytes, dict[str, Any]]:
    """The worker's answer with attempts, gateway queue time (and routing, when asked for) added
    to `info.sdxlpool`."""
    if forwarded.status_code >= 400:
        return forwarded.content, {}

    def add(info: dict[str, Any]) -> None:
        placement = info.setdefault("sdxlpool", {})
        if isinstance(placement, dict):
            placement["attempts"] = forwarded.attempts
            placement["gateway_queue_seconds"] = round(forwarded.queue_seconds, 4)
            if forwarded.routing is not None:
                placement["routing"] = forwarded.routing

    spliced = replace_info(forwarded.content, add)
    if spliced is not None:
        return spliced
    body = forwarded.body  # not the usual shape: the slow way, decoding it all
    try:
        info = json.loads(body["info"])
    except (KeyError, TypeError, ValueError):
        return forwarded.content, {}
    add(info)
    body["info"] = json.dumps(info)
    return json.dumps(body).encode(), info
