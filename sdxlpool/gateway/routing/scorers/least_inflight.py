"""Scorer `least_inflight`: fewer requests in flight from this gateway scores higher.

The classic least-connections balancer (nginx `least_conn`, HAProxy `leastconn`), for comparison
with `completion_time`. It uses only the gateway's own count of the requests it has sent to the
backend and not yet seen end (`BackendState.inflight`); worker metrics, speeds and request sizes
are ignored::

    score(b) = 1 / (1 + inflight(b))

An idle backend scores 1.0, one with a request in flight 0.5, two 1/3. With the `best` picker the
least loaded backend wins and ties are drawn at random.

Config: `{type: least_inflight, weight: 1.0}` (no parameters).
"""

from __future__ import annotations

from dataclasses import dataclass

from sdxlpool.gateway.routing.types import Candidate, RouteRequest

__all__ = ["LeastInflight"]


@dataclass(frozen=True, kw_only=True)
class LeastInflight:
    name: str = "least_inflight"

    def score(self, request: RouteRequest, candidates: list[Candidate]) -> dict[str, float]:
        return {c.name: 1.0 / (1 + c.state.inflight) for c in candidates}
