"""Filter `not_tried`: never send one request to the same backend twice.

`RouteRequest.exclude` holds the names of the backends an earlier attempt of this request failed
on, so failover always moves on to another worker.

Config: `{type: not_tried}` (no parameters).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from sdxlpool.gateway.routing.types import Candidate, RouteRequest

__all__ = ["NotTried"]


@dataclass(frozen=True, kw_only=True)
class NotTried:
    name: str = "not_tried"
    empty_reason: ClassVar[str] = "every backend was already tried"

    def filter(self, request: RouteRequest, candidates: list[Candidate]) -> list[Candidate]:
        if not request.exclude:
            return list(candidates)
        return [c for c in candidates if c.name not in request.exclude]
