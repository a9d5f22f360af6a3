"""Filter `not_tried`: failover never returns to a backend this request already failed on."""

from __future__ import annotations

import pytest

from sdxlpool.gateway.routing import Candidate, NotTried, RouteRequest
from sdxlpool.gateway.routing.testing import fake_state


@pytest.mark.parametrize(
    ("exclude", "kept"),
    [
        pytest.param(frozenset(), ["a", "b", "c"], id="first-attempt"),
        pytest.param(frozenset({"b"}), ["a", "c"], id="second-attempt"),
        pytest.param(frozenset({"a", "c", "gone"}), ["b"], id="unknown-names-ignored"),
        pytest.param(frozenset({"a", "b", "c"}), [], id="all-tried"),
    ],
)
def test_not_tried(exclude: frozenset[str], kept: list[str]) -> None:
    candidates = [Candidate.of(fake_state(n), 0.0) for n in ("a", "b", "c")]
    assert [c.name for c in NotTried().filter(RouteRequest(cost=1, exclude=exclude), candidates)] == kept
