"""Scorer `completion_time`: the backend that will finish this request soonest scores 1.0; a long queue
costs more than its length.

Inputs: the worker metrics `sdxl_worker_pending_steps`, `sdxl_worker_step_seconds` and
`sdxl_worker_batch_max` (optional, 1 when absent), the gateway's own not-yet-scraped dispatches,
and the request's normalised steps::

    wait(b)    = (pending_steps(b) + unseen_steps(b)) x step_seconds(b)   the work ahead of it
    service(b) = cost x step_seconds(b)                                   the request itself
    eta(b)     = wait(b) + service(b)                                     expected completion
    slack      = wait_slack x min over candidates of service               one short job's worth
    extra(b)   = max(0, wait(b) - slack - (batch_max(b) - 1) x service(b))
    c(b)       = eta(b) + (wait_weight - 1) x extra(b)
    score(b)   = min over candidates of c / c(b)

With `wait_weight` 1 (the plugin's default) this is the soonest expected completion: a backend
expected to take twice as long as the best scores 0.5. Greater than 1, a second of waiting beyond
the slack counts `wait_weight` seconds, because a queue is shared: a request that joins a busy fast
worker delays everyone who will join that queue after it, while one that starts at once on an
idle slower worker delays nobody. Pure soonest completion fills the fast workers' queues until
waiting there takes as long as the slowest idle worker would, so at 80 % load nearly every request
waits about that long and the median is as bad as the tail (issue 19: `benchmarks/routing_model.py`
measured p50 0.80 s against least-in-flight's 0.39 s, and 0.86 s with exact knowledge of every
queue). The slack keeps a short queue (one job of this size on the fastest candidate) free: at low
load a fast worker that is just finishing is still the better choice. The default profile uses
wait_weight 5 and wait_slack 1 (`DEFAULT_WAIT_WEIGHT`; docs/benchmarks.md "Routing in a model" has
the sweep).

On a worker that batches (`--batch-max` B > 1) up to B - 1 requests queued ahead may run in the
same batch as this one, so that much of its queue is free like the slack: without this the
weight sent requests from a batching fast worker's short queue to idle slow workers (p95 1.20 s
instead of soonest's 0.69 s at 80 % in the routing model; now 0.68 s). The arithmetic and why:
`extra_wait_seconds` in routing/estimates.py.

When every candidate ties (an idle, uniform pool) all score 1.0, so the scorer shifts nothing and
the picker breaks the tie at random. Unknown `step_seconds` (0 before the worker's first job, or a
plain A1111 server) falls back to the median measured step time of the candidates with the same
GPU model, else of all candidates, else `default_step_seconds` (routing/estimates.py). Stale
metrics are used as last seen: their pending work plus everything the gateway sent since that
scrape (the `freshness` filter decides whether stale backends compete at all). The decision's
`expected_seconds` is the plain eta, whatever the weights.

Config: `{type: completion_time, weight: 1.0, waitWeight: 1.0, waitSlack: 1.0, defaultStepSeconds: 0.1}`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from sdxlpool.gateway.routing.estimates import (
    DEFAULT_STEP_SECONDS,
    candidate_completion_seconds,
    candidate_wait_and_service_seconds,
    extra_wait_seconds,
)
from sdxlpool.gateway.routing.types import Candidate, RouteRequest

__all__ = ["CompletionTime", "completion_seconds"]


@dataclass(frozen=True, kw_only=True)
class CompletionTime:
    wait_weight: float = 1.0
    wait_slack: float = 1.0
    default_step_seconds: float = DEFAULT_STEP_SECONDS
    name: str = "completion_time"

    def __post_init__(self) -> None:
        _check_step_seconds(self.default_step_seconds)
        if isinstance(self.wait_weight, bool) or not isinstance(self.wait_weight, int | float) \
                or not math.isfinite(self.wait_weight) or self.wait_weight < 1:
            raise ValueError(f"wait_weight: must be a number >= 1, got {self.wait_weight!r}")
        if isinstance(self.wait_slack, bool) or not isinstance(self.wait_slack, int | float) \
                or not math.isfinite(self.wait_slack) or self.wait_slack < 0:
            raise ValueError(f"wait_slack: must be a number >= 0, got {self.wait_slack!r}")

    def score(self, request: RouteRequest, candidates: list[Candidate]) -> dict[str, float]:
        parts = {c.name: (*candidate_wait_and_service_seconds(c, request.cost, candidates, self.default_step_seconds),
                          c.batch_max) for c in candidates}
        slack = self.wait_slack * min((service for _, service, _ in parts.values()), default=0.0)
        costs = {name: wait + service
                 + (self.wait_weight - 1) * extra_wait_seconds(wait, service, slack=slack, batch_max=batch_max)
                 for name, (wait, service, batch_max) in parts.items()}
        best = min(costs.values(), default=0.0)
        return {name: 1.0 if cost <= best else best / cost for name, cost in costs.items()}


def completion_seconds(request: RouteRequest, candidates: list[Candidate],
                       default_step_seconds: float = DEFAULT_STEP_SECONDS) -> dict[str, float]:
    """Expected completion seconds of the request on each candidate, by backend name."""
    return {c.name: candidate_completion_seconds(c, request.cost, candidates, default_step_seconds)
            for c in candidates}


def _check_step_seconds(value: float) -> None:
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"default_step_seconds: must be a number of seconds > 0, got {value!r}")
