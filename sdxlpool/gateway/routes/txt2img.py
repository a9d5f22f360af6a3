"""POST /sdapi/v1/txt2img through the pool, with the placement in headers and `info`."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Header, Request
from fastapi.responses import JSONResponse

from sdxlpool.gateway.api_keys import presented_key
from sdxlpool.gateway.deps import GatewayDep
from sdxlpool.gateway.events import placement
from sdxlpool.gateway.routes._client import placement_headers, until_disconnected

router = APIRouter(prefix="/sdapi/v1", tags=["txt2img"])


@router.post("/txt2img")
async def txt2img(
    gateway: GatewayDep,
    request: Request,
    body: dict[str, Any] = Body(...),  # noqa: B008 - FastAPI's way to take any JSON object
    x_sdxl_gpu: str | None = Header(default=None),
) -> JSONResponse:
    client = request.client.host if request.client else ""
    forwarded = await until_disconnected(request, gateway.txt2img(
        body, gpu_header=x_sdxl_gpu, client=client, api_key=presented_key(request.headers, request.query_params)))
    headers = placement_headers(forwarded.state, attempts=forwarded.attempts, queue_seconds=forwarded.queue_seconds,
                                inference_seconds=placement(forwarded.body).get("inference_seconds"))
    return JSONResponse(forwarded.body, status_code=forwarded.status_code, headers=headers)
