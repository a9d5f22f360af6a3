"""/healthz (the process is alive), /readyz (the model is loaded), /metrics (Prometheus)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from sdxlpool.worker.deps import StateDep

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", responses={200: {"content": {"application/json": {"schema": {"type": "object"}}}}})
def readyz(state: StateDep) -> JSONResponse:
    service = state.service
    if service is None or not service.ready:
        detail = f"failed: {state.error}" if state.error else "loading the model"
        return JSONResponse({"error": "not_ready", "detail": detail}, status_code=503)
    return JSONResponse({"status": "ready", "model": service.checkpoints.current.title})


@router.get("/metrics", response_class=Response,
            responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}},
                             "description": "Prometheus text exposition format"}})
def metrics(state: StateDep) -> Response:
    if state.service is None:  # still loading: say so in the one metric that exists already
        body = b"# HELP sdxl_worker_ready 1 when the model is loaded\n# TYPE sdxl_worker_ready gauge\nsdxl_worker_ready 0.0\n"
        return Response(body, media_type=CONTENT_TYPE_LATEST)
    return Response(generate_latest(state.service.metrics.registry), media_type=CONTENT_TYPE_LATEST)
