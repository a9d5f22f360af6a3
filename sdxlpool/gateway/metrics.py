"""The gateway's Prometheus metrics (names in :mod:`sdxlpool.api.metric_names`): what operators on call look at.

Per-backend series (up, scrape age, pending work) are computed from the live pool at scrape time
by a custom collector, so removed backends disappear with them. The asyncio-tasks gauge counts
the event loop's live tasks at scrape time (the soak test watches it for leaks).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from sdxlpool.api import metric_names as m
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
        up = GaugeMetricFamily(m.GATEWAY_BACKEND_UP, "1 when the backend can take requests", labels=labels)
        age = GaugeMetricFamily(m.GATEWAY_SCRAPE_AGE_SECONDS,
                                "Seconds since the backend's metrics were last scraped (-1: never)", labels=labels)
        pending = GaugeMetricFamily(m.GATEWAY_BACKEND_PENDING_STEPS,
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
        self.requests = Counter(m.GATEWAY_REQUESTS, "Requests by GPU model that served them and outcome",
                                ["gpu_model", "outcome"], registry=r)
        self.latency = Histogram(m.GATEWAY_REQUEST_SECONDS, "Wall seconds of a request through the gateway",
                                 ["gpu_model"], buckets=_LATENCY_BUCKETS, registry=r)
        self.attempts = Histogram(m.GATEWAY_ATTEMPTS, "Workers tried per request", buckets=(1, 2, 3, 4, 6),
                                  registry=r)
        self.failovers = Counter(m.GATEWAY_FAILOVERS, "Attempts abandoned on a worker, by worker and reason"
                                 " (hung, timeout, transport, bad_body, http_5xx, queue_full)",
                                 ["backend", "reason"], registry=r)
        self.queue_depth = Gauge(m.GATEWAY_QUEUE_DEPTH, "Requests waiting at the gateway for a worker with room",
                                 registry=r)
        self.inflight = Gauge(m.GATEWAY_INFLIGHT, "Requests being served by the gateway now", registry=r)
        self.plugin_seconds = Histogram(m.GATEWAY_PLUGIN_SECONDS, "Routing plugin latency", ["plugin"],
                                        buckets=(1e-5, 5e-5, 1e-4, 5e-4, 1e-3, 5e-3, 1e-2), registry=r)
        self.asyncio_tasks = Gauge(m.GATEWAY_ASYNCIO_TASKS, "asyncio tasks alive in the gateway's event loop",
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
