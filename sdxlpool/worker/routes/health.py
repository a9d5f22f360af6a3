"""/healthz (the process is alive), /readyz (the model is loaded), /metrics (Prometheus)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from sdxlpool.api import metric_names as m
from sdxlpool.api.ports import HEALTH_PATH, METRICS_PATH, READY_PATH
from sdxlpool.worker.deps import StateDep

router = APIRouter(tags=["health"])

# While the model loads, the registry does not exist yet: say so in the one series that matters.
_NOT_READY_METRICS = (f"# HELP {m.WORKER_READY} 1 when the model is loaded\n# TYPE {m.WORKER_READY} gauge\n"
                      f"{m.WORKER_READY} 0.0\n").encode()


@router.get(HEALTH_PATH)
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(READY_PATH, responses={200: {"content": {"application/json": {"schema": {"type": "object"}}}}})
def readyz(state: StateDep, request: Request) -> JSONResponse:
    service = state.service
    if getattr(request.app.state, "draining", False):  # stopping: finishing its jobs, taking no more
        held = service.queue.snapshot() if service is not None else None
        jobs = held.inflight + held.queue_depth if held is not None else 0
        return JSONResponse({"error": "not_ready", "detail": f"draining: finishing {jobs} job(s) before exit"},
                            status_code=503)
    if service is None or not service.ready:
        detail = f"failed: {state.error}" if state.error else "loading the model"
        return JSONResponse({"error": "not_ready", "detail": detail}, status_code=503)
    compiled = service.compiled_state()  # the fast path's shapes: warm, and still warming after ready
    return JSONResponse({"status": "ready", "model": service.checkpoints.current.title,
                         "fast_mode": service.settings.fast_mode,
                         **({"compiled": compiled} if compiled is not None else {})})


@router.get(METRICS_PATH, response_class=Response,
            responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}},
                             "description": "Prometheus text exposition format"}})
def metrics(state: StateDep) -> Response:
    if state.service is None:
        body = _NOT_READY_METRICS
        return Response(body, media_type=CONTENT_TYPE_LATEST)
    return Response(generate_latest(state.service.metrics.registry), media_type=CONTENT_TYPE_LATEST)
