"""The three plugin contracts (llm-d's `Filter`, `Scorer`, `Picker`): one method each.

A plugin is any object with a `name` (used in metrics, decisions and config) and that method. It
must be pure and quick: no I/O, no sleeping, nothing kept between calls that `now` does not
explain. The scheduler (`scheduler.py`) calls them in order; weights and clamping live there, not
in the plugins.
"""

from __future__ import annotations

from typing import Protocol

from sdxlpool.gateway.routing.types import Candidate, RouteRequest, Scored

__all__ = ["Filter", "Scorer", "Picker"]


class Filter(Protocol):
    """Keeps the candidates that may serve the request, in their order.

    Returning an empty list stops the run: the request cannot be placed, and the decision names
    this filter. A filter may set a class attribute `empty_reason` (a few words) for that message.
    """

    @property
    def name(self) -> str: ...

    def filter(self, request: RouteRequest, candidates: list[Candidate]) -> list[Candidate]: ...


class Scorer(Protocol):
    """Scores every candidate in [0, 1], higher is better, keyed by backend name.

    A missing candidate counts as 0, values outside [0, 1] are clamped by the scheduler. When the
    scorer has no opinion (every candidate ties), it returns the same score for all, 1.0 by
    convention, so its weight shifts no decision.
    """

    @property
    def name(self) -> str: ...

    def score(self, request: RouteRequest, candidates: list[Candidate]) -> dict[str, float]: ...


class Picker(Protocol):
    """Chooses one candidate from the weighted totals (None only when given none)."""

    @property
    def name(self) -> str: ...

    def pick(self, request: RouteRequest, scored: list[Scored]) -> Candidate | None: ...
