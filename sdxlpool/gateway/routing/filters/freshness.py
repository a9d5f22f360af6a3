"""Filter `freshness`: prefer backends whose load we actually know.

An sdxlpool worker whose last good scrape is older than `stale_after` seconds (scrapes time out or
fail while the worker still answers requests) is unknown capacity. This filter keeps only the
fresh candidates when there is at least one, and all of them otherwise: a stale backend is used
only when nothing fresher is left. It never empties the list.

A plain A1111 server has no metrics to go stale: its load is the gateway's own in-flight count,
always current, so it counts as fresh.

Config: `{type: freshness, staleAfter: 2.0}`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from sdxlpool.gateway.routing.types import Candidate, RouteRequest

__all__ = ["Freshness"]


@dataclass(frozen=True, kw_only=True)
class Freshness:
    stale_after: float = 2.0  # seconds
    name: str = "freshness"

    def __post_init__(self) -> None:
        if not math.isfinite(self.stale_after) or self.stale_after <= 0:
            raise ValueError(f"stale_after: must be a number of seconds > 0, got {self.stale_after!r}")

    def filter(self, request: RouteRequest, candidates: list[Candidate]) -> list[Candidate]:
        fresh = [c for c in candidates if self.is_fresh(c)]
        return fresh or list(candidates)

    def is_fresh(self, candidate: Candidate) -> bool:
        if candidate.backend.kind == "a1111":
            return True
        return candidate.scrape_age is not None and candidate.scrape_age <= self.stale_after
