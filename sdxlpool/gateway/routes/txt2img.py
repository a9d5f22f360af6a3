"""POST /sdapi/v1/txt2img through the pool, with the placement in headers and `info`."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Body, Header, Request
from fastapi.responses import JSONResponse

from sdxlpool.gateway.deps import GatewayDep

router = APIRouter(prefix="/sdapi/v1", tags=["txt2img"])
_DISCONNECT_POLL_SECONDS = 0.25


@router.post("/txt2img")
async def txt2img(
    gateway: GatewayDep,
    request: Request,
    body: dict[str, Any] = Body(...),  # noqa: B008 - FastAPI's way to take any JSON object
    x_sdxl_gpu: str | None = Header(default=None),
) -> JSONResponse:
    client = request.client.host if request.client else ""
    task = asyncio.ensure_future(gateway.txt2img(body, gpu_header=x_sdxl_gpu, client=client))
    while True:
        done, _ = await asyncio.wait({task}, timeout=_DISCONNECT_POLL_SECONDS)
        if done:
            break
        if await request.is_disconnected():  # cancels the attempt, which stops the job on the worker
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            raise asyncio.CancelledError("client disconnected")
    forwarded = task.result()
    headers = {"X-SDXL-Attempts": str(forwarded.attempts)}
    if forwarded.state is not None:
        backend = forwarded.state.backend
        headers.update({"X-SDXL-GPU-Model": backend.gpu, "X-SDXL-Provider": backend.provider,
                        "X-SDXL-Location": backend.location, "X-SDXL-Worker": backend.name,
                        "X-SDXL-Queue-Seconds": f"{forwarded.queue_seconds:.4f}"})
        placement = _placement(forwarded.body)
        if "inference_seconds" in placement:
            headers["X-SDXL-Inference-Seconds"] = str(placement["inference_seconds"])
    return JSONResponse(forwarded.body, status_code=forwarded.status_code,
                        headers={k: _latin1(v) for k, v in headers.items()})


def _placement(body: Any) -> dict[str, Any]:
    import json

    try:
        return json.loads(body["info"]).get("sdxlpool", {})
    except (KeyError, TypeError, ValueError):
        return {}


def _latin1(value: str) -> str:
    # HTTP header values are latin-1; a provider or location may not be.
    return value.encode("latin-1", "replace").decode("latin-1")
