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
    "GATEWAY_BACKEND_PRICE_PER_HOUR",
    "GATEWAY_BACKEND_UP",
    "GATEWAY_FAILOVERS",
    "GATEWAY_DEMAND_REQUESTS",
    "GATEWAY_DEMAND_STEPS",
    "GATEWAY_INFLIGHT",
    "GATEWAY_LATENCY_TARGET_SECONDS",
    "GATEWAY_MODEL_READY_WORKERS",
    "GATEWAY_MODEL_SECONDS_PER_STEP",
    "GATEWAY_PEER_MESSAGES",
    "GATEWAY_PLUGIN_SECONDS",
    "GATEWAY_QUEUE_DEPTH",
    "GATEWAY_REQUESTS",
    "GATEWAY_REQUEST_SECONDS",
    "GATEWAY_SCRAPE_AGE_SECONDS",
    "GATEWAY_WAITING_STEPS",
    "WORKER_BATCH_IMAGES",
    "WORKER_BATCH_MAX",
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
WORKER_BATCH_IMAGES = "sdxl_worker_batch_images"
"""histogram, one observation per request: images in the model batch its images ran in (its own
batch_size, times the requests batched with it by --batch-max)"""
WORKER_BATCH_MAX = "sdxl_worker_batch_max"
"""gauge: the worker's --batch-max, how many queued same-shape requests it runs as one batch (1: no
batching). Optional for the gateway (absent: 1): its completion_time scorer counts the requests
queued there that may share a new request's batch as a smaller wait (routing/estimates.py)"""
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
# Dispatch sharing between gateway replicas (sdxlpool.gateway.peers): counter, {direction: sent |
# received, outcome: ok | error (sent) | ignored (received)}; one per datagram.
GATEWAY_PEER_MESSAGES = "sdxl_gateway_peer_messages"
# Demand, for the autoscaler and its dashboard (label `allowed`: the request's GPU models, sorted and
# comma-joined, or "any"); cost per hour is price_per_hour x backend_up, summed.
GATEWAY_DEMAND_REQUESTS = "sdxl_gateway_demand_requests"  # counter, {allowed}
GATEWAY_DEMAND_STEPS = "sdxl_gateway_demand_steps"  # counter of normalised steps arrived, {allowed}
GATEWAY_WAITING_STEPS = "sdxl_gateway_waiting_steps"  # gauge, steps waiting in the gateway queue, {allowed}
GATEWAY_MODEL_READY_WORKERS = "sdxl_gateway_model_ready_workers"  # gauge, {gpu_model}
GATEWAY_MODEL_SECONDS_PER_STEP = "sdxl_gateway_model_seconds_per_step"  # gauge, median measured, {gpu_model}
GATEWAY_BACKEND_PRICE_PER_HOUR = "sdxl_gateway_backend_price_per_hour"  # gauge, {backend, gpu_model, ...}
GATEWAY_LATENCY_TARGET_SECONDS = "sdxl_gateway_latency_target_seconds"  # gauge: the pool's p95 target


def exported(counter: str) -> str:
    """The sample name a counter is exported under (``prometheus_client`` appends ``_total``)."""
    return f"{counter}_total"
