"""Scorer `lora_affinity`: prefer a worker that already holds the request's LoRAs, when it is close.

Inputs: the LoRAs the request's prompt names (`<lora:name:w>`, read by `sdxlpool.prompts.extract_networks`
into `RouteRequest.loras`), each worker's `sdxl_worker_lora_loaded{lora, alias}` series (the LoRAs
it holds loaded, by name and alias), and the expected completion times of `completion_time`::

    held(b)   = share of the request's LoRAs that b holds loaded (0 .. 1)
    eta(b)    = (pending_steps + unseen_steps + cost) x step_seconds      (see completion_time)
    score(b)  = held(b)   if eta(b) <= max_slowdown x min over candidates of eta
              = 0         otherwise

A worker that holds them skips loading them (a file read and the adapters' set-up, a second or
more for a real SDXL LoRA). Neutral (every candidate 1.0) when the request names no LoRA or every
candidate holds the same share (none of them, typically). With the default profile's weight (0.2
beside `completion_time`'s 1.0) a holder wins while its eta is within about 25 % of the soonest;
`max_slowdown` caps the preference however large the weight.

Config: `{type: lora_affinity, weight: 0.2, maxSlowdown: 1.5}`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from sdxlpool.gateway.routing.estimates import DEFAULT_STEP_SECONDS
from sdxlpool.gateway.routing.scorers.completion_time import _check_step_seconds, completion_seconds
from sdxlpool.gateway.routing.types import Candidate, RouteRequest

__all__ = ["LoraAffinity"]


@dataclass(frozen=True, kw_only=True)
class LoraAffinity:
    max_slowdown: float = 1.5  # a holder counts while its eta <= this x the soonest
    default_step_seconds: float = DEFAULT_STEP_SECONDS
    name: str = "lora_affinity"

    def __post_init__(self) -> None:
        if not math.isfinite(self.max_slowdown) or self.max_slowdown < 1:
            raise ValueError(f"max_slowdown: must be a number >= 1, got {self.max_slowdown!r}")
        _check_step_seconds(self.default_step_seconds)

    def score(self, request: RouteRequest, candidates: list[Candidate]) -> dict[str, float]:
        wanted = request.loras
        held = {c.name: len(wanted & c.metrics.loras) / len(wanted) if wanted and c.metrics is not None else 0.0
                for c in candidates}
        if len(set(held.values())) <= 1:
            return {c.name: 1.0 for c in candidates}  # no opinion
        etas = completion_seconds(request, candidates, self.default_step_seconds)
        bound = min(etas.values()) * self.max_slowdown
        return {name: share if etas[name] <= bound else 0.0 for name, share in held.items()}
