"""Picker `round_robin`: each request goes to the next candidate in turn, whatever the scores.

What nginx's and HAProxy's `roundrobin` do, for comparison with the score-based `best`. The
candidates are taken in backend-name order; the picker remembers the name it chose last and picks
the first candidate whose name comes after it, wrapping around to the first. Remembering a name
rather than an index keeps the rotation fair when the candidate list changes between calls (a
backend filtered out as down or already tried, one added to the backends file): the rotation
simply skips or takes in that backend at its place in the order.

It keeps state across calls (the last name), so one instance serves one gateway; the gateway runs
on one event loop, so no lock is needed.

Config: `{type: round_robin}` (no parameters).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sdxlpool.gateway.routing.types import Candidate, RouteRequest, Scored

__all__ = ["RoundRobin"]


@dataclass(kw_only=True)
class RoundRobin:
    name: str = "round_robin"
    _last: str | None = field(default=None, init=False, repr=False, compare=False)  # the name chosen last

    def pick(self, request: RouteRequest, scored: list[Scored]) -> Candidate | None:
        if not scored:
            return None
        ordered = sorted((s.candidate for s in scored), key=lambda c: c.name)
        chosen = ordered[0]
        if self._last is not None:
            chosen = next((c for c in ordered if c.name > self._last), ordered[0])
        self._last = chosen.name
        return chosen
