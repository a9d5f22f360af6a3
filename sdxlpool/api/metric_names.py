"""Prometheus metric names: the contract between the workers, the gateway, the Helm chart's alerts
and dashboard, and the people on call.

Pure constants. The worker's and sim-worker's registry (``sdxlpool.worker.metrics``), the gateway's
parser of a worker's ``/metrics`` (``sdxlpool.gateway.worker_metrics``), the gateway's own registry
(``sdxlpool.gateway.metrics``) and the tests take every name from here. Names are given as
``prometheus_client`` takes them: a counter ``X`` is exported as ``X_total``, a histogram ``X`` as
``X_bucket``/``X_sum``/``X_count`` (use :func:`exported` for the sample name of a counter).
docs/reference/metrics.md lists them with their types, labels and help, generated from the
registries themselves.
"""

from __future__ import annotations

__all__ = [
    "GATEWAY_ASYNCIO_TASKS",
    "GATEWAY_ATTEMPTS",
    "GATEWAY_BACKEND_PENDING_STEPS",
    "GATEWAY_BACKEND_UP",
    "GATEWAY_FAILOVERS",
    "GATEWAY_INFLIGHT",
    "GATEWAY_PLUGIN_SECONDS",
    "GATEWAY_QUEUE_DEPTH",
    "GATEWAY_REQUESTS",
    "GATEWAY_REQUEST_SECONDS",
    "GATEWAY_SCRAPE_AGE_SECONDS",
    "WORKER_INFERENCE_SECONDS",
    "WORKER_INFLIGHT",
    "WORKER_INFO",
    "WORKER_INFO_LABELS",
    "WORKER_LORA_LOADED",
    "WORKER_LORA_LOADED_LABELS",
    "WORKER_PENDING_STEPS",
    "WORKER_QUEUE_DEPTH",
    "WORKER_READY",
    "WORKER_REQUESTS",
    "WORKER_ROUTING_SERIES",
    "WORKER_STEP_SECONDS",
    "exported",
]

# A worker (sdxlpool worker, sdxlpool sim-worker): how busy it is, read by the gateway every scrape.
WORKER_QUEUE_DEPTH = "sdxl_worker_queue_depth"
"""gauge: requests waiting, not counting the running one"""
WORKER_INFLIGHT = "sdxl_worker_inflight"
"""gauge: requests running"""
WORKER_PENDING_STEPS = "sdxl_worker_pending_steps"
"""gauge: remaining denoising work of running + queued requests, in normalised steps
(one step of one 1024x1024 image = 1.0)"""
WORKER_STEP_SECONDS = "sdxl_worker_step_seconds"
"""gauge: moving average of wall seconds per normalised step on this GPU (0: not measured yet)"""
WORKER_READY = "sdxl_worker_ready"
"""gauge: 1 when the model is loaded"""
WORKER_INFO = "sdxl_worker_info"
"""gauge = 1, labels :data:`WORKER_INFO_LABELS`"""
WORKER_INFO_LABELS = ("gpu_model", "provider", "location", "model")
WORKER_REQUESTS = "sdxl_worker_requests"
"""counter (``_total``), label ``outcome``"""
WORKER_INFERENCE_SECONDS = "sdxl_worker_inference_seconds"
"""histogram: wall seconds of one job"""
WORKER_LORA_LOADED = "sdxl_worker_lora_loaded"
"""gauge = 1 per LoRA held loaded, labels :data:`WORKER_LORA_LOADED_LABELS` (name, alias as in
/sdapi/v1/loras); the gateway's lora_affinity scorer prefers a worker that holds a request's LoRAs"""
WORKER_LORA_LOADED_LABELS = ("lora", "alias")

WORKER_ROUTING_SERIES = (
    WORKER_QUEUE_DEPTH,
    WORKER_INFLIGHT,
    WORKER_PENDING_STEPS,
    WORKER_STEP_SECONDS,
    WORKER_READY,
)
"""What the gateway needs from every sdxlpool worker's ``/metrics`` to route to it."""

# The gateway: per backend (computed from the live pool at scrape time) and per request.
GATEWAY_BACKEND_UP = "sdxl_gateway_backend_up"
GATEWAY_SCRAPE_AGE_SECONDS = "sdxl_gateway_scrape_age_seconds"
GATEWAY_BACKEND_PENDING_STEPS = "sdxl_gateway_backend_pending_steps"
GATEWAY_REQUESTS = "sdxl_gateway_requests"
GATEWAY_REQUEST_SECONDS = "sdxl_gateway_request_seconds"
GATEWAY_ATTEMPTS = "sdxl_gateway_attempts"
GATEWAY_FAILOVERS = "sdxl_gateway_failovers"
GATEWAY_QUEUE_DEPTH = "sdxl_gateway_queue_depth"
GATEWAY_INFLIGHT = "sdxl_gateway_inflight"
GATEWAY_PLUGIN_SECONDS = "sdxl_gateway_plugin_seconds"
GATEWAY_ASYNCIO_TASKS = "sdxl_gateway_asyncio_tasks"


def exported(counter: str) -> str:
    """The sample name a counter is exported under (``prometheus_client`` appends ``_total``)."""
    return f"{counter}_total"
