"""Scorer `cost`: prefer cheaper GPUs (pricePerHour) until they are too busy.

Inputs: each backend's `pricePerHour` (backends file, or the pool's spec), its measured seconds
per normalised step (for `basis: step`) and the expected completion times of the
`completion_time` scorer::

    eta(b)     = (pending_steps + unseen_steps + cost) x step_seconds      (see completion_time)
    bound      = max(within_seconds, max_slowdown x min over candidates of eta)
    within(b)  = eta(b) <= bound
    price(b)   = pricePerHour(b)                        basis "hour" (the default)
               = pricePerHour(b) x step_seconds(b)      basis "step": dollars per normalised step,
                                                        up to a constant (1/3600)
    score(b)   = cheapest price among the `within` candidates / price(b)   if within(b)
               = 0                                                         otherwise

So the cheapest GPU that would finish within the bound scores 1.0, dearer ones less, and a cheap
GPU that is busier than the bound scores 0 and stops attracting work. Without `within_seconds`
the bound is relative (1.5: at most 50 % later than the soonest); with it, a latency budget in
seconds: any backend that would finish within it counts, however much sooner another would
(cheapest within the budget, else soonest). `basis: step` compares what a request costs rather
than what an hour costs: an H100 at 2.49 $/h that runs a step in 0.085 s is cheaper per image
than an A100 at 1.79 $/h and 0.155 s (the autoscaler's `sdxlpool.scaling.policy` orders models the
same way). A backend without a price counts as the dearest known pricePerHour (times its own step
time for `basis: step`). When no candidate has a price, or all prices are equal, every candidate
scores 1.0 (neutral). Unknown step times fall back as in `completion_time`.

Off by default. To enable it, give it a weight comparable to `completion_time`'s (1.0) or above:
then a cheaper backend within the bound wins over a faster dearer one. `default_scheduler(
latency_target=T)` adds it with `withinSeconds: 0.7 x T, basis: step`, weight 3 (scheduler.py
says why).

Config: `{type: cost, weight: 1.0, maxSlowdown: 1.5}`;
`{type: cost, weight: 3.0, withinSeconds: 15, basis: step}`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from sdxlpool.gateway.routing.estimates import DEFAULT_STEP_SECONDS, fallback_step_seconds
from sdxlpool.gateway.routing.scorers.completion_time import _check_step_seconds, completion_seconds
from sdxlpool.gateway.routing.types import Candidate, RouteRequest

__all__ = ["Cost"]

BASES = ("hour", "step")


@dataclass(frozen=True, kw_only=True)
class Cost:
    max_slowdown: float = 1.5  # a cheaper backend counts while its eta <= this x the soonest
    within_seconds: float | None = None  # ... or while its eta <= this many seconds (a latency budget)
    basis: Literal["hour", "step"] = "hour"  # compare pricePerHour, or pricePerHour x step_seconds
    default_step_seconds: float = DEFAULT_STEP_SECONDS
    name: str = "cost"

    def __post_init__(self) -> None:
        if not math.isfinite(self.max_slowdown) or self.max_slowdown < 1:
            raise ValueError(f"max_slowdown: must be a number >= 1, got {self.max_slowdown!r}")
        if self.within_seconds is not None and (
                isinstance(self.within_seconds, bool) or not isinstance(self.within_seconds, int | float)
                or not math.isfinite(self.within_seconds) or self.within_seconds <= 0):
            raise ValueError(f"within_seconds: must be a number of seconds > 0, got {self.within_seconds!r}")
        if self.basis not in BASES:
            raise ValueError(f"basis: must be one of {', '.join(BASES)}, got {self.basis!r}")
        _check_step_seconds(self.default_step_seconds)

    def score(self, request: RouteRequest, candidates: list[Candidate]) -> dict[str, float]:
        known = [c.backend.price_per_hour for c in candidates if c.backend.price_per_hour is not None]
        dearest = max(known, default=0.0)
        price = {c.name: dearest if c.backend.price_per_hour is None else c.backend.price_per_hour
                 for c in candidates}
        if self.basis == "step":
            price = {c.name: price[c.name] * _step_seconds(c, candidates, self.default_step_seconds)
                     for c in candidates}
        if not known or len(set(price.values())) <= 1:
            return {c.name: 1.0 for c in candidates}  # no opinion
        etas = completion_seconds(request, candidates, self.default_step_seconds)
        bound = max(min(etas.values()) * self.max_slowdown, self.within_seconds or 0.0)
        within = [name for name, eta in etas.items() if eta <= bound]
        cheapest = min(price[name] for name in within)
        return {c.name: _ratio(cheapest, price[c.name]) if c.name in within else 0.0 for c in candidates}


def _step_seconds(candidate: Candidate, peers: list[Candidate], default: float) -> float:
    seconds = candidate.step_seconds
    return seconds if seconds is not None else fallback_step_seconds(candidate.backend.gpu, peers, default)


def _ratio(cheapest: float, price: float) -> float:
    return 1.0 if price <= cheapest else cheapest / price
