"""The worker's Prometheus metrics. The names are a contract with the gateway (DESIGN.md).

Gauges are computed from the job queue at scrape time (`set_function`), never pushed, so a scrape
always sees the queue exactly as it is, with no window where two updates disagree. Each app gets its
own registry so several workers can live in one test process.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics

from sdxlpool.worker.jobs import JobQueue

__all__ = ["WorkerMetrics", "OUTCOMES"]

disable_created_metrics()  # *_created series double the scrape for nothing the gateway or alerts use

# requests_total{outcome}: every request ends in exactly one of these.
OUTCOMES = ("success", "interrupted", "invalid", "rejected", "error", "cancelled")
_INFERENCE_BUCKETS = (0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60, 120, 300)


class WorkerMetrics:
    def __init__(self, queue: JobQueue, *, ready: Callable[[], bool], info: dict[str, str]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        Gauge("sdxl_worker_queue_depth", "Requests waiting, not counting the running one", registry=r
              ).set_function(lambda: queue.snapshot().queue_depth)
        Gauge("sdxl_worker_inflight", "Requests running", registry=r
              ).set_function(lambda: queue.snapshot().inflight)
        Gauge("sdxl_worker_pending_steps",
              "Remaining denoising work of running and queued requests, in normalised steps "
              "(one step of one 1024x1024 image = 1.0)", registry=r
              ).set_function(lambda: queue.snapshot().pending_steps)
        Gauge("sdxl_worker_step_seconds",
              "Moving average of wall seconds per normalised step on this GPU (0 = not measured yet)",
              registry=r).set_function(lambda: queue.snapshot().step_seconds)
        Gauge("sdxl_worker_ready", "1 when the model is loaded", registry=r
              ).set_function(lambda: 1.0 if ready() else 0.0)
        self.info = Gauge("sdxl_worker_info", "Static facts about this worker (value is always 1)",
                          ["gpu_model", "provider", "location", "model"], registry=r)
        self._info_labels: dict[str, str] | None = None
        self.set_info(info)
        self.requests = Counter("sdxl_worker_requests", "txt2img requests by outcome", ["outcome"], registry=r)
        for outcome in OUTCOMES:
            self.requests.labels(outcome)  # export zeros, so rate() works from the first request
        self.inference_seconds = Histogram("sdxl_worker_inference_seconds", "Wall seconds of a job on the GPU",
                                           buckets=_INFERENCE_BUCKETS, registry=r)

    def set_info(self, labels: dict[str, str]) -> None:
        """Replace the info series (the model label changes when sd_model_checkpoint does)."""
        if self._info_labels is not None:
            self.info.remove(*self._info_labels.values())
        self._info_labels = {k: labels.get(k, "") for k in ("gpu_model", "provider", "location", "model")}
        self.info.labels(**self._info_labels).set(1)
