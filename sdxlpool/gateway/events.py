"""What a streaming client sees of one generation: the events of WebSocket `/v1/ws` and of
`POST /v1/generate` with `Accept: application/x-ndjson`.

    queued    {position}                 admitted to the gateway; `position` requests wait ahead
    starting  {gpu_models, gpu_names, waited_seconds}
                                         no worker of its GPU models is ready: it waits while the
                                         autoscaler starts one of these (scale from zero); sent
                                         once, then `assigned`, or `error` no_worker_started
    assigned  {gpu_model, gpu_name, provider, location, worker, attempt}
                                         a worker took it (again after a failover, attempt 2, ...)
    progress  {step, steps, progress, eta_seconds}
                                         denoising step k of n, from the worker's /progress
    done      {images, image, seed, gpu_model, ..., timings{queue_seconds, inference_seconds,
               total_seconds}, info}     the result (`result()` below, also the body of
                                         POST /v1/generate)
    error     {status, error, detail, retry_after?}
                                         the same code and text as the HTTP error would carry

Every event is a JSON object with `event` naming it. Pure functions: no I/O.

The attempt loop (forward.py) knows nothing of these dicts: it reports typed records
(attempts.py), and `stream_listener(sink)` is the one adapter that turns them into `assigned` and
`progress` events. An `error` carries `routing` only when the request asked for it
(`debug_routing`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from sdxlpool.api.gpu import display_name
from sdxlpool.errors import RequestError
from sdxlpool.gateway.attempts import AttemptStarted, ForwardEvent, ForwardListener, ProgressSeen
from sdxlpool.gateway.backends import BackendState

__all__ = ["EventSink", "queued", "starting", "assigned", "progress", "result", "done", "error", "placement", "stream_listener"]

EventSink = Callable[[dict[str, Any]], None]


def stream_listener(sink: EventSink) -> ForwardListener:
    """The attempt loop's records as the client's events: a worker took it -> `assigned`, a new
    step of its job -> `progress`. A failed attempt is not an event: the next `assigned` (attempt
    2, ...) shows the failover, an `error` the end."""

    def listen(record: ForwardEvent) -> None:
        if isinstance(record, AttemptStarted):
            sink(assigned(record.state, record.attempt))
        elif isinstance(record, ProgressSeen):
            sink(progress(record.step, record.steps, record.fraction, record.eta_seconds))

    return listen


def queued(position: int) -> dict[str, Any]:
    return {"event": "queued", "position": position}


def starting(gpu_models: tuple[str, ...], waited_seconds: float) -> dict[str, Any]:
    return {"event": "starting", "gpu_models": list(gpu_models),
            "gpu_names": [display_name(gpu) for gpu in gpu_models], "waited_seconds": round(waited_seconds, 3)}


def assigned(state: BackendState, attempt: int) -> dict[str, Any]:
    backend = state.backend
    return {"event": "assigned", "gpu_model": backend.gpu, "gpu_name": backend.gpu_display,
            "provider": backend.provider, "location": backend.location, "worker": backend.name,
            "attempt": attempt}


def progress(step: int, steps: int, fraction: float, eta_seconds: float | None) -> dict[str, Any]:
    return {"event": "progress", "step": step, "steps": steps, "progress": round(fraction, 4),
            "eta_seconds": None if eta_seconds is None else round(eta_seconds, 3)}


def placement(body: Any) -> dict[str, Any]:
    """The `sdxlpool` object of a worker's info JSON (GPU, provider, inference seconds, ...)."""
    try:
        found = json.loads(body["info"]).get("sdxlpool", {})
    except (KeyError, TypeError, ValueError, AttributeError):
        return {}
    return found if isinstance(found, dict) else {}


def result(body: dict[str, Any], state: BackendState, *, attempts: int, queue_seconds: float,
           total_seconds: float) -> dict[str, Any]:
    """A finished generation in the native API's shape (worker's A1111 answer + where and how long)."""
    try:
        info = json.loads(body.get("info") or "{}")
    except (TypeError, ValueError):
        info = {}
    where = placement(body)
    images = body.get("images") or []
    backend = state.backend
    return {
        "images": images,
        "image": images[0] if images else None,
        "seed": info.get("seed"),
        "gpu_model": backend.gpu,
        "gpu_name": backend.gpu_display,
        "provider": backend.provider,
        "location": backend.location,
        "worker": backend.name,
        "attempts": attempts,
        "timings": {"queue_seconds": round(queue_seconds, 4),
                    "inference_seconds": where.get("inference_seconds"),
                    "total_seconds": round(total_seconds, 4)},
        "info": info,
    }


def done(native: dict[str, Any]) -> dict[str, Any]:
    return {"event": "done", **native}


def error(exc: RequestError) -> dict[str, Any]:
    event: dict[str, Any] = {"event": "error", "status": exc.status, "error": exc.code, "detail": exc.detail}
    retry_after = getattr(exc, "retry_after", None)
    if retry_after is not None:
        event["retry_after"] = retry_after
    routing = getattr(exc, "routing", None)  # only when the request asked for it
    if routing is not None:
        event["routing"] = routing
    return event
