"""Picker `first_free`: the first idle candidate in backend-name order, else a random one.

The balancer of simple Stable Diffusion pools (the "seed-style" one: hand the job to a free GPU,
and when none is free to any GPU at all), for comparison with the score-based `best`. Scores are
ignored. A candidate is free when it has no work at all as far as the gateway can tell::

    free(b) = pending_steps(b) + unseen_steps(b) == 0      (the last scrape, plus dispatches since)
              and, without metrics (type a1111, never scraped), no request in flight from the
              gateway (BackendState.inflight == 0)

Candidates are tried in backend-name order, so with light load the first backends take most of
the work, as in those pools. When none is free, one is drawn uniformly with `rng` (a
`random.Random`; pass a seeded one for reproducible tests), with no regard for speed or backlog.

Config: `{type: first_free}` (no parameters).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from sdxlpool.gateway.routing.types import Candidate, RouteRequest, Scored

__all__ = ["FirstFree", "is_free"]


@dataclass(frozen=True, kw_only=True)
class FirstFree:
    rng: random.Random = field(default_factory=random.Random, compare=False, repr=False)
    name: str = "first_free"

    def pick(self, request: RouteRequest, scored: list[Scored]) -> Candidate | None:
        if not scored:
            return None
        ordered = sorted((s.candidate for s in scored), key=lambda c: c.name)
        return next((c for c in ordered if is_free(c)), None) or self.rng.choice(ordered)


def is_free(candidate: Candidate) -> bool:
    """No pending work in the last scrape, none dispatched since, none in flight when unscraped."""
    if candidate.pending_steps + candidate.unseen_steps > 0:
        return False
    return candidate.metrics is not None or candidate.state.inflight == 0
