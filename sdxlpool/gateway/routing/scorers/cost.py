"""Scorer `cost`: prefer cheaper GPUs (pricePerHour) until they are too busy.

Inputs: each backend's `pricePerHour` (backends file, or the pool's spec) and the expected
completion times of the `completion_time` scorer::

    eta(b)     = (pending_steps + unseen_steps + cost) x step_seconds      (see completion_time)
    within(b)  = eta(b) <= max_slowdown x min over candidates of eta
    score(b)   = cheapest price among the `within` candidates / price(b)   if within(b)
               = 0                                                         otherwise

So the cheapest GPU that would finish within `max_slowdown` (1.5: at most 50 % later than the
soonest) scores 1.0, dearer ones less, and a cheap GPU that is busier than that bound scores 0 and
stops attracting work. A backend without a price counts as the dearest known price. When no
candidate has a price, or all prices are equal, every candidate scores 1.0 (neutral).

Off by default. To enable it, give it a weight comparable to `completion_time`'s (1.0): then a
cheaper backend within the bound wins over a faster dearer one.

Config: `{type: cost, weight: 1.0, maxSlowdown: 1.5}`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from sdxlpool.gateway.routing.estimates import DEFAULT_STEP_SECONDS
from sdxlpool.gateway.routing.scorers.completion_time import _check_step_seconds, completion_seconds
from sdxlpool.gateway.routing.types import Candidate, RouteRequest

__all__ = ["Cost"]


@dataclass(frozen=True, kw_only=True)
class Cost:
    max_slowdown: float = 1.5  # a cheaper backend counts while its eta <= this x the soonest
    default_step_seconds: float = DEFAULT_STEP_SECONDS
    name: str = "cost"

    def __post_init__(self) -> None:
        if not math.isfinite(self.max_slowdown) or self.max_slowdown < 1:
            raise ValueError(f"max_slowdown: must be a number >= 1, got {self.max_slowdown!r}")
        _check_step_seconds(self.default_step_seconds)

    def score(self, request: RouteRequest, candidates: list[Candidate]) -> dict[str, float]:
        known = [c.backend.price_per_hour for c in candidates if c.backend.price_per_hour is not None]
        dearest = max(known, default=0.0)
        price = {c.name: dearest if c.backend.price_per_hour is None else c.backend.price_per_hour
                 for c in candidates}
        if not known or len(set(price.values())) <= 1:
            return {c.name: 1.0 for c in candidates}  # no opinion
        etas = completion_seconds(request, candidates, self.default_step_seconds)
        bound = min(etas.values()) * self.max_slowdown
        within = [name for name, eta in etas.items() if eta <= bound]
        cheapest = min(price[name] for name in within)
        return {c.name: _ratio(cheapest, price[c.name]) if c.name in within else 0.0 for c in candidates}


def _ratio(cheapest: float, price: float) -> float:
    return 1.0 if price <= cheapest else cheapest / price
