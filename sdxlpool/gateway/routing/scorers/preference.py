"""Scorer `preference`: honour the order of the GPU models the request lists.

With `X-SDXL-GPU: A100,RTX-3090` (n = 2 models) a backend matching the model at position r
(0-based; the first one it matches) scores::

    score(b) = 1 - r / n          A100 -> 1.0, RTX-3090 -> 0.5

With no list, or a list of one model, every candidate scores 1.0 (neutral). A backend that matches
no listed model (only possible without the `gpu_allowed` filter) scores 0. Give it a small weight
(0.1): then a preferred model wins ties and near-ties, while a clearly sooner completion elsewhere
still wins.

Config: `{type: preference, weight: 0.1}`.
"""

from __future__ import annotations

from dataclasses import dataclass

from sdxlpool.gateway.routing.filters.gpu_allowed import allowed_rank
from sdxlpool.gateway.routing.types import Candidate, RouteRequest

__all__ = ["Preference"]


@dataclass(frozen=True, kw_only=True)
class Preference:
    name: str = "preference"

    def score(self, request: RouteRequest, candidates: list[Candidate]) -> dict[str, float]:
        count = len(request.allowed_gpus)
        if count <= 1:
            return {c.name: 1.0 for c in candidates}
        scores = {}
        for c in candidates:
            rank = allowed_rank(request.allowed_gpus, c.backend.gpu)
            scores[c.name] = 0.0 if rank is None else 1.0 - rank / count
        return scores
