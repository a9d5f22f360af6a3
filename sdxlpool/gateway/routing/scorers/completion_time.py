"""Scorer `completion_time`: the backend that will finish this request soonest scores 1.0.

Inputs: the worker metrics `sdxl_worker_pending_steps` and `sdxl_worker_step_seconds`, the
gateway's own not-yet-scraped dispatches, and the request's normalised steps::

    eta(b)   = (pending_steps(b) + unseen_steps(b) + cost) x step_seconds(b)
    score(b) = min over candidates of eta / eta(b)

Scores are proportional to speed of completion: a backend expected to take twice as long as the
best scores 0.5. When every candidate ties (an idle, uniform pool) all score 1.0, so the scorer
shifts nothing and the picker breaks the tie at random. Unknown `step_seconds` (0 before the
worker's first job, or a plain A1111 server) falls back to the median measured step time of the
candidates with the same GPU model, else of all candidates, else `default_step_seconds`
(routing/estimates.py). Stale metrics are used as last seen: their pending work plus everything
the gateway sent since that scrape (the `freshness` filter decides whether stale backends compete
at all).

Config: `{type: completion_time, weight: 1.0, defaultStepSeconds: 0.1}`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from sdxlpool.gateway.routing.estimates import DEFAULT_STEP_SECONDS, candidate_completion_seconds
from sdxlpool.gateway.routing.types import Candidate, RouteRequest

__all__ = ["CompletionTime", "completion_seconds"]


@dataclass(frozen=True, kw_only=True)
class CompletionTime:
    default_step_seconds: float = DEFAULT_STEP_SECONDS
    name: str = "completion_time"

    def __post_init__(self) -> None:
        _check_step_seconds(self.default_step_seconds)

    def score(self, request: RouteRequest, candidates: list[Candidate]) -> dict[str, float]:
        etas = completion_seconds(request, candidates, self.default_step_seconds)
        best = min(etas.values(), default=0.0)
        return {name: 1.0 if eta <= best else best / eta for name, eta in etas.items()}


def completion_seconds(request: RouteRequest, candidates: list[Candidate],
                       default_step_seconds: float = DEFAULT_STEP_SECONDS) -> dict[str, float]:
    """Expected completion seconds of the request on each candidate, by backend name."""
    return {c.name: candidate_completion_seconds(c, request.cost, candidates, default_step_seconds)
            for c in candidates}


def _check_step_seconds(value: float) -> None:
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"default_step_seconds: must be a number of seconds > 0, got {value!r}")
