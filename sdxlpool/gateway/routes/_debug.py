"""`X-SDXL-Debug-Routing: 1`: a request that asks why its worker was chosen.

The answer then carries every attempt's explained scheduler decision (`routing/README.md`,
"Explaining a decision"): in `info.sdxlpool.routing` of a txt2img answer, as `routing` in a native
result, and as `routing` beside `error` and `detail` in an error answer (a 503 `no_backend` names
the filter that emptied the set there).
"""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse

from sdxlpool.api.headers import DEBUG_ROUTING_HEADER, switch_header
from sdxlpool.errors import RequestError

__all__ = ["DEBUG_ROUTING_HEADER", "wants_routing", "routing_of", "error_with_routing"]


def wants_routing(header: str | None) -> bool:
    """The X-SDXL-Debug-Routing header as a switch (1/true/yes/on, 0/false/no/off); absent = off."""
    return bool(switch_header(DEBUG_ROUTING_HEADER, header, False))


def routing_of(exc: RequestError) -> list[dict[str, Any]] | None:
    """The explained decisions an error carries; None when the request did not ask for them."""
    return getattr(exc, "routing", None)


def error_with_routing(exc: RequestError) -> JSONResponse:
    """The usual error answer (`{"error", "detail"}`, Retry-After when saturated) plus `routing`."""
    retry_after = getattr(exc, "retry_after", None)
    headers = {"Retry-After": str(retry_after)} if retry_after else {}
    return JSONResponse({"error": exc.code, "detail": exc.detail, "routing": routing_of(exc)},
                        status_code=exc.status, headers=headers)
