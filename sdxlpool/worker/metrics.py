"""The worker's Prometheus metrics. The names are a contract with the gateway (:mod:`sdxlpool.api.metric_names`).

Gauges are computed from the job queue at scrape time (`set_function`), never pushed, so a scrape
always sees the queue exactly as it is, with no window where two updates disagree. Each app gets its
own registry so several workers can live in one test process.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from sdxlpool.api import metric_names as m
from sdxlpool.worker.jobs import JobQueue

__all__ = ["WorkerMetrics", "OUTCOMES"]

disable_created_metrics()  # *_created series double the scrape for nothing the gateway or alerts use

# requests_total{outcome}: every request ends in exactly one of these.
OUTCOMES = ("success", "interrupted", "invalid", "rejected", "error", "cancelled")
_INFERENCE_BUCKETS = (0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60, 120, 300)
_BATCH_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 32, 64)


class WorkerMetrics:
    def __init__(
        self, queue: JobQueue, *, ready: Callable[[], bool], info: dict[str, str],
        loaded_loras: Callable[[], Iterable[tuple[str, str]]] = tuple,
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        Gauge(m.WORKER_QUEUE_DEPTH, "Requests waiting, not counting the running one", registry=r
              ).set_function(lambda: queue.snapshot().queue_depth)
        Gauge(m.WORKER_INFLIGHT, "Requests running", registry=r
              ).set_function(lambda: queue.snapshot().inflight)
        Gauge(m.WORKER_PENDING_STEPS,
              "Remaining denoising work of running and queued requests, in normalised steps "
              "(one step of one 1024x1024 image = 1.0)", registry=r
              ).set_function(lambda: queue.snapshot().pending_steps)
        Gauge(m.WORKER_STEP_SECONDS,
              "Moving average of wall seconds per normalised step on this GPU (0 = not measured yet)",
              registry=r).set_function(lambda: queue.snapshot().step_seconds)
        Gauge(m.WORKER_READY, "1 when the model is loaded", registry=r
              ).set_function(lambda: 1.0 if ready() else 0.0)
        Gauge(m.WORKER_BATCH_MAX,
              "Queued same-shape requests this worker runs as one batch at most (--batch-max; 1 = no batching)",
              registry=r).set_function(lambda: queue.batch_max)
        self.info = Gauge(m.WORKER_INFO, "Static facts about this worker (value is always 1)",
                          m.WORKER_INFO_LABELS, registry=r)
        self._info_labels: dict[str, str] | None = None
        self.set_info(info)
        self.requests = Counter(m.WORKER_REQUESTS, "txt2img requests by outcome", ["outcome"], registry=r)
        for outcome in OUTCOMES:
            self.requests.labels(outcome)  # export zeros, so rate() works from the first request
        self.inference_seconds = Histogram(m.WORKER_INFERENCE_SECONDS, "Wall seconds of a job on the GPU",
                                           buckets=_INFERENCE_BUCKETS, registry=r)
        self.batch_images = Histogram(m.WORKER_BATCH_IMAGES,
                                      "Per request: images in the model batch its images ran in "
                                      "(its batch_size x the requests batched with it)",
                                      buckets=_BATCH_BUCKETS, registry=r)
        r.register(_LoadedLoras(loaded_loras))

    def set_info(self, labels: dict[str, str]) -> None:
        """Replace the info series (the model label changes when sd_model_checkpoint does)."""
        if self._info_labels is not None:
            self.info.remove(*self._info_labels.values())
        self._info_labels = {k: labels.get(k, "") for k in m.WORKER_INFO_LABELS}
        self.info.labels(**self._info_labels).set(1)


class _LoadedLoras(Collector):
    """sdxl_worker_lora_loaded{lora, alias} = 1 per LoRA held loaded, read at scrape time."""

    _labelnames = m.WORKER_LORA_LOADED_LABELS  # where prometheus_client's own metrics keep them (reference docs)

    def __init__(self, loaded: Callable[[], Iterable[tuple[str, str]]]) -> None:
        self._loaded = loaded

    def describe(self) -> Iterator[GaugeMetricFamily]:
        yield self._family()

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = self._family()
        for name, alias in self._loaded():
            family.add_metric([name, alias], 1.0)
        yield family

    @staticmethod
    def _family() -> GaugeMetricFamily:
        return GaugeMetricFamily(m.WORKER_LORA_LOADED,
                                 "1 for each LoRA this worker holds loaded (a request naming it skips the load)",
                                 labels=list(m.WORKER_LORA_LOADED_LABELS))
