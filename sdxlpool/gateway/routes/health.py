"""/healthz, /readyz (some backend can serve), /metrics, /v1/demand (the autoscaler's input)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from sdxlpool.api.ports import DEMAND_PATH, HEALTH_PATH, METRICS_PATH, READY_PATH
from sdxlpool.gateway.deps import GatewayDep

router = APIRouter(tags=["health"])


@router.get(HEALTH_PATH)
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(READY_PATH, responses={200: {"content": {"application/json": {"schema": {"type": "object"}}}}})
def readyz(gateway: GatewayDep) -> JSONResponse:
    if not gateway.ready:
        return JSONResponse({"error": "not_ready", "detail": "no backend is up yet"}, status_code=503)
    return JSONResponse({"status": "ready", "backends": len(gateway.pool)})


@router.get(METRICS_PATH, response_class=Response,
            responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}},
                             "description": "Prometheus text exposition format"}})
def metrics(gateway: GatewayDep) -> Response:
    return Response(generate_latest(gateway.metrics.registry), media_type=CONTENT_TYPE_LATEST)


@router.get(DEMAND_PATH, responses={200: {"content": {"application/json": {"schema": {"type": "object"}}},
                                          "description": "sdxlpool.scaling.DemandReport"}})
async def demand(gateway: GatewayDep) -> dict[str, Any]:
    """The demand the gateway sees (per class of allowed GPU models: arrivals and normalised steps
    per second over the window, requests waiting in its queue) and each GPU model's workers (known,
    ready, measured seconds per step, pending steps, price), with the observed p95; read by the
    operator's autoscaler and by `sdxlpool up`. No API key, like /metrics."""
    return gateway.demand.report(gateway.pool.states()).model_dump(mode="json")
