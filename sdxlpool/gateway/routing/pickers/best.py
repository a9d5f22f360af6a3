"""Picker `best`: the highest weighted total wins; ties are broken at random.

Candidates whose totals are within `tolerance` (1e-9) of the best tie, and one of them is drawn
with `rng` (a `random.Random`; pass a seeded one for reproducible tests). Never "first in the
file": an idle, uniform pool must not send every request to the same worker.

Config: `{type: best}` (no parameters).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from sdxlpool.gateway.routing.types import Candidate, RouteRequest, Scored

__all__ = ["Best"]


@dataclass(frozen=True, kw_only=True)
class Best:
    rng: random.Random = field(default_factory=random.Random, compare=False, repr=False)
    tolerance: float = 1e-9
    name: str = "best"

    def pick(self, request: RouteRequest, scored: list[Scored]) -> Candidate | None:
        if not scored:
            return None
        top = max(s.score for s in scored)
        tied = [s.candidate for s in scored if s.score >= top - self.tolerance]
        return tied[0] if len(tied) == 1 else self.rng.choice(tied)
