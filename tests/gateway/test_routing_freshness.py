"""Filter `freshness`: stale metrics are unknown capacity, used only when nothing fresher is left."""

from __future__ import annotations

import pytest

from sdxlpool.gateway.routing import Candidate, Freshness, RouteRequest
from sdxlpool.gateway.routing.testing import fake_state

NOW = 10.0


@pytest.mark.parametrize(
    ("scraped", "kept"),
    [
        pytest.param({"a": 9.9, "b": 9.0}, ["a", "b"], id="all-fresh"),
        pytest.param({"a": 9.9, "b": 5.0}, ["a"], id="stale-one-dropped"),
        pytest.param({"a": 8.0, "b": 7.0}, ["a"], id="exactly-at-the-bound-is-fresh"),
        pytest.param({"a": 1.0, "b": 5.0}, ["a", "b"], id="all-stale-all-kept"),
        pytest.param({"a": None, "b": 9.5}, ["b"], id="never-scraped-is-stale"),
        pytest.param({"a": "a1111", "b": 1.0}, ["a"], id="a1111-is-always-fresh"),
    ],
)
def test_freshness(scraped: dict, kept: list[str]) -> None:
    states = [fake_state(n, kind="a1111") if t == "a1111" else fake_state(n, scraped_at=t) for n, t in scraped.items()]
    candidates = [Candidate.of(s, NOW) for s in states]
    result = Freshness(stale_after=2.0).filter(RouteRequest(cost=1, now=NOW), candidates)
    assert [c.name for c in result] == kept


@pytest.mark.parametrize("bad", [0, -1, float("nan"), float("inf")])
def test_bound_must_be_positive(bad: float) -> None:
    with pytest.raises(ValueError, match="stale_after"):
        Freshness(stale_after=bad)
