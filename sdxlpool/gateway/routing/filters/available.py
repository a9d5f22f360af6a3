"""Filter `available`: backends that can take a request now.

Keeps a candidate when its circuit breaker lets requests through (closed, or half-open with no
probe under way) and, for an sdxlpool worker, its last scrape says `sdxl_worker_ready 1`. A plain
A1111 server (`type: a1111`) has no metrics; the circuit breaker alone decides. An sdxlpool worker
never scraped successfully is not available: nothing says its model is loaded.

Config: `{type: available}` (no parameters).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from sdxlpool.gateway.routing.types import Candidate, RouteRequest

__all__ = ["Available"]


@dataclass(frozen=True, kw_only=True)
class Available:
    name: str = "available"
    empty_reason: ClassVar[str] = "down (circuit breaker open) or model not loaded"

    def filter(self, request: RouteRequest, candidates: list[Candidate]) -> list[Candidate]:
        return [c for c in candidates if c.available and _ready(c)]


def _ready(candidate: Candidate) -> bool:
    if candidate.backend.kind == "a1111":
        return True
    return candidate.metrics is not None and candidate.metrics.ready
