"""GET /v1/backends (live state of every backend) and the pool-wide A1111 catalog (see `..catalog`)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from sdxlpool._http import error_responses
from sdxlpool.gateway.catalog import refresh_outcome, union_by, union_embeddings
from sdxlpool.gateway.deps import GatewayDep
from sdxlpool.gateway.forward import NoBackend

router = APIRouter(tags=["pool"])
REFRESH_TIMEOUT = 60.0
"""Seconds each worker has to re-scan its fine-tune folders (reading every file's header)."""


@router.get("/v1/backends")
def backends(gateway: GatewayDep) -> dict[str, Any]:
    now = time.monotonic()
    out = []
    for state in gateway.pool.states():
        b, m = state.backend, state.metrics
        out.append({
            "name": b.name, "url": b.url, "gpu": b.gpu, "provider": b.provider, "location": b.location,
            "type": b.kind, "pricePerHour": b.price_per_hour,
            "available": state.available(now),
            "ready": bool(m and m.ready) if b.kind == "sdxlpool" else None,
            "scrapeAgeSeconds": round(now - state.scraped_at, 3) if state.scraped_at is not None else None,
            "queueDepth": m.queue_depth if m else None,
            "inflight": m.inflight if m else None,
            "pendingSteps": m.pending_steps if m else None,
            "stepSeconds": m.step_seconds if m else None,
            "unseenSteps": round(state.unseen_cost(now), 4),
            "lorasLoaded": sorted(m.loras) if m else None,  # names and aliases (sdxl_worker_lora_loaded)
        })
    return {"backends": out}


@router.get("/sdapi/v1/samplers")
async def samplers(gateway: GatewayDep) -> Any:
    return await gateway.any_backend_get("/sdapi/v1/samplers")


@router.get("/sdapi/v1/schedulers")
async def schedulers(gateway: GatewayDep) -> Any:
    return await gateway.any_backend_get("/sdapi/v1/schedulers")


@router.get("/sdapi/v1/sd-models")
async def sd_models(gateway: GatewayDep) -> Any:
    return await gateway.any_backend_get("/sdapi/v1/sd-models")


async def _joined(gateway: GatewayDep, path: str, join: Callable[[Sequence[Any]], Any]) -> Any:
    """Every available worker's answer to GET `path`, joined; 503 when none answers."""
    answers = [reply.body for reply in await gateway.each_backend("GET", path) if reply.ok]
    if not answers:
        raise NoBackend("no worker answered")
    return join(answers)


@router.get("/sdapi/v1/loras", responses=error_responses(503))
async def loras(gateway: GatewayDep) -> Any:
    """The LoRAs the workers offer (A1111's list: name, alias, path, metadata), joined by name."""
    return await _joined(gateway, "/sdapi/v1/loras", union_by("name"))


@router.get("/sdapi/v1/sd-vae", responses=error_responses(503))
async def sd_vae(gateway: GatewayDep) -> Any:
    """The VAEs the workers offer (model_name, filename), joined by model_name."""
    return await _joined(gateway, "/sdapi/v1/sd-vae", union_by("model_name"))


@router.get("/sdapi/v1/prompt-styles", responses=error_responses(503))
async def prompt_styles(gateway: GatewayDep) -> Any:
    """The styles the workers offer (name, prompt, negative_prompt), joined by name."""
    return await _joined(gateway, "/sdapi/v1/prompt-styles", union_by("name"))


@router.get("/sdapi/v1/embeddings", responses=error_responses(503))
async def embeddings(gateway: GatewayDep) -> Any:
    """The workers' textual-inversion embeddings: loaded by any worker is loaded."""
    return await _joined(gateway, "/sdapi/v1/embeddings", union_embeddings)


@router.post("/sdapi/v1/refresh-loras", responses={
    200: {"description": "every worker re-scanned its LoRA folder: `refreshed` names them"},
    **error_responses(502, 503)})
async def refresh_loras(gateway: GatewayDep) -> JSONResponse:
    """Every worker (available or not) re-scans its LoRA folder; answered when all have replied, 502
    naming each worker that did not refresh, and why, in `failed`."""
    replies = await gateway.each_backend("POST", "/sdapi/v1/refresh-loras", timeout=REFRESH_TIMEOUT,
                                         available_only=False)
    if not replies:
        raise NoBackend("the pool has no workers")
    status, body = refresh_outcome(replies, "LoRAs")
    return JSONResponse(body, status_code=status)
