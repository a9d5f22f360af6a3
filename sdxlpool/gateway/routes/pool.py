"""GET /v1/backends (live state of every backend) and the pool-wide A1111 read endpoints."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter

from sdxlpool.gateway.deps import GatewayDep

router = APIRouter(tags=["pool"])


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


@router.get("/sdapi/v1/options")
async def options(gateway: GatewayDep) -> Any:
    return await gateway.any_backend_get("/sdapi/v1/options")
