"""The gateway's Prometheus metrics (sdxl_gateway_*): what operators on call look at.

Per-backend series (up, scrape age, pending work) are computed from the live pool at scrape time
by a custom collector, so removed backends disappear with them. `sdxl_gateway_asyncio_tasks` counts
the event loop's live tasks at scrape time (the soak test watches it for leaks).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from sdxlpool.gateway.pool import BackendPool

__all__ = ["GatewayMetrics", "OUTCOMES"]

disable_created_metrics()

OUTCOMES = ("success", "client_error", "invalid", "no_backend", "failed", "cancelled", "rate_limited",
            "saturated", "unauthorized")
_LATENCY_BUCKETS = (0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60, 120, 300)


class _PoolCollector(Collector):
    def __init__(self, pool: BackendPool) -> None:
        self.pool = pool

    def collect(self) -> Iterator[GaugeMetricFamily]:
        now = time.monotonic()
        labels = ["backend", "gpu_model", "provider", "location"]
        up = GaugeMetricFamily("sdxl_gateway_backend_up", "1 when the backend can take requests", labels=labels)
        age = GaugeMetricFamily("sdxl_gateway_scrape_age_seconds",
                                "Seconds since the backend's metrics were last scraped (-1: never)", labels=labels)
        pending = GaugeMetricFamily("sdxl_gateway_backend_pending_steps",
                                    "Pending normalised steps: last scrape plus what the gateway sent since",
                                    labels=labels)
        for state in self.pool.states():
            b = state.backend
            values = [b.name, b.gpu, b.provider, b.location]
            metrics = state.metrics
            up.add_metric(values, 1.0 if state.available(now) and (metrics is None or metrics.ready
                                                                    or b.kind == "a1111") else 0.0)
            age.add_metric(values, now - state.scraped_at if state.scraped_at is not None else -1.0)
            pending.add_metric(values, (metrics.pending_steps if metrics else 0.0) + state.unseen_cost(now))
        yield up
        yield age
        yield pending


class GatewayMetrics:
    def __init__(self, pool: BackendPool) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("sdxl_gateway_requests", "Requests by GPU model that served them and outcome",
                                ["gpu_model", "outcome"], registry=r)
        self.latency = Histogram("sdxl_gateway_request_seconds", "Wall seconds of a request through the gateway",
                                 ["gpu_model"], buckets=_LATENCY_BUCKETS, registry=r)
        self.attempts = Histogram("sdxl_gateway_attempts", "Workers tried per request", buckets=(1, 2, 3, 4, 6),
                                  registry=r)
        self.failovers = Counter("sdxl_gateway_failovers", "Attempts abandoned on a worker, by worker and reason"
                                 " (hung, timeout, transport, bad_body, http_5xx, queue_full)",
                                 ["backend", "reason"], registry=r)
        self.queue_depth = Gauge("sdxl_gateway_queue_depth", "Requests waiting at the gateway for a worker with room",
                                 registry=r)
        self.inflight = Gauge("sdxl_gateway_inflight", "Requests being served by the gateway now", registry=r)
        self.plugin_seconds = Histogram("sdxl_gateway_plugin_seconds", "Routing plugin latency", ["plugin"],
                                        buckets=(1e-5, 5e-5, 1e-4, 5e-4, 1e-3, 5e-3, 1e-2), registry=r)
        self.asyncio_tasks = Gauge("sdxl_gateway_asyncio_tasks", "asyncio tasks alive in the gateway's event loop",
                                   registry=r)
        loop = _running_loop()
        if loop is not None:  # created in the app's lifespan; /metrics is served from a worker thread
            self.asyncio_tasks.set_function(lambda: len(asyncio.all_tasks(loop)))
        r.register(_PoolCollector(pool))


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None
