"""The gateway's Prometheus metrics (names in :mod:`sdxlpool.api.metric_names`): what operators on call look at.

Per-backend series (up, scrape age, pending work) are computed from the live pool at scrape time
by a custom collector, so removed backends disappear with them; so are the autoscaler's series
(`_DemandCollector`: steps waiting per class of allowed GPU models, ready workers and measured
seconds per step per GPU model, each backend's price, the latency target). Demand counters count
each request that passed its checks, by class (`allowed`: its GPU slugs sorted and joined by ",",
or "any"). The asyncio-tasks gauge counts
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
from sdxlpool.gateway.demand import DemandTracker, class_label, model_states
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


class _DemandCollector(Collector):
    def __init__(self, pool: BackendPool, demand: DemandTracker, latency_target: float | None) -> None:
        self.pool, self.demand, self.latency_target = pool, demand, latency_target

    def collect(self) -> Iterator[GaugeMetricFamily]:
        now = time.monotonic()
        waiting = GaugeMetricFamily(m.GATEWAY_WAITING_STEPS, "Normalised steps of the requests waiting in the "
                                    "gateway queue, by the GPU models they allowed", labels=["allowed"])
        for allowed, steps in sorted(self.demand.waiting_steps().items()):
            waiting.add_metric([class_label(allowed)], steps)
        yield waiting
        ready = GaugeMetricFamily(m.GATEWAY_MODEL_READY_WORKERS, "Workers of the GPU model ready to take requests",
                                  labels=["gpu_model"])
        speed = GaugeMetricFamily(m.GATEWAY_MODEL_SECONDS_PER_STEP, "Median measured seconds per normalised step "
                                  "of the GPU model's ready workers", labels=["gpu_model"])
        states = self.pool.states()
        for model in model_states(states, now, pool_gpus=self.demand.pool_gpus):
            ready.add_metric([model.gpu], float(model.ready))
            if model.seconds_per_step is not None:
                speed.add_metric([model.gpu], model.seconds_per_step)
        yield ready
        yield speed
        price = GaugeMetricFamily(m.GATEWAY_BACKEND_PRICE_PER_HOUR,
                                  "The backend's pricePerHour (backends that have one)",
                                  labels=["backend", "gpu_model", "provider", "location"])
        for state in states:
            b = state.backend
            if b.price_per_hour is not None:
                price.add_metric([b.name, b.gpu, b.provider, b.location], b.price_per_hour)
        yield price
        if self.latency_target is not None:
            yield GaugeMetricFamily(m.GATEWAY_LATENCY_TARGET_SECONDS,
                                    "The pool's p95 latency target in seconds (--latency-target; absent without one)",
                                    value=self.latency_target)


class GatewayMetrics:
    def __init__(self, pool: BackendPool, demand: DemandTracker | None = None, *,
                 latency_target: float | None = None) -> None:
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
        self.peer_messages = Counter(m.GATEWAY_PEER_MESSAGES, "Datagrams of dispatch sharing between gateway "
                                     "replicas (--peer-port): sent (ok, error) and received (ok, or ignored: "
                                     "not from a peer, malformed, unknown backend)", ["direction", "outcome"],
                                     registry=r)
        self.demand_requests = Counter(m.GATEWAY_DEMAND_REQUESTS, "Requests that passed their checks, by the GPU "
                                       "models they allowed", ["allowed"], registry=r)
        self.demand_steps = Counter(m.GATEWAY_DEMAND_STEPS, "Normalised steps of the requests that passed their "
                                    "checks, by the GPU models they allowed", ["allowed"], registry=r)
        r.register(_PoolCollector(pool))
        r.register(_DemandCollector(pool, demand if demand is not None else DemandTracker(), latency_target))

    def count_peer_messages(self, direction: str, outcome: str, count: int) -> None:
        """`count` datagrams of dispatch sharing (`sdxlpool.gateway.peers.MessageCounter`)."""
        self.peer_messages.labels(direction, outcome).inc(count)

    def demand_arrived(self, allowed: tuple[str, ...], cost: float) -> None:
        """A request of class `allowed` (`DemandTracker.arrived`'s) and `cost` normalised steps arrived."""
        label = class_label(allowed)
        self.demand_requests.labels(label).inc()
        self.demand_steps.labels(label).inc(cost)


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None
