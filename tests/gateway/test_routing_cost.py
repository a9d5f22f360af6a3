"""Scorer `cost`: cheaper pricePerHour scores higher while its eta is within max_slowdown of the best."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from sdxlpool.gateway.routing import (
    Candidate,
    Cost,
    RouteRequest,
    default_scheduler,
    expected_completion_seconds,
)
from sdxlpool.gateway.routing.testing import fake_state

COST = 25.0


@pytest.mark.parametrize(
    ("states", "scores"),
    [
        pytest.param([fake_state("a"), fake_state("b")], {"a": 1.0, "b": 1.0}, id="no-prices-neutral"),
        pytest.param([fake_state("a", price_per_hour=1.0), fake_state("b", price_per_hour=1.0, pending_steps=500)],
                     {"a": 1.0, "b": 1.0}, id="equal-prices-neutral-even-when-busy"),
        pytest.param([fake_state("dear", price_per_hour=2.0, step_seconds=0.1),
                      fake_state("cheap", price_per_hour=1.0, step_seconds=0.14)],
                     {"dear": 0.5, "cheap": 1.0}, id="cheaper-within-the-bound-scores-higher"),
        pytest.param([fake_state("dear", price_per_hour=2.0, step_seconds=0.1),
                      fake_state("cheap", price_per_hour=1.0, step_seconds=0.1, pending_steps=COST)],
                     {"dear": 1.0, "cheap": 0.0}, id="cheap-but-busier-than-the-bound-scores-0"),
        pytest.param([fake_state("dear", price_per_hour=3.0), fake_state("mid", price_per_hour=1.5),
                      fake_state("cheap", price_per_hour=1.0, pending_steps=100)],
                     {"dear": 0.5, "mid": 1.0, "cheap": 0.0}, id="cheapest-within-the-bound-is-the-reference"),
        pytest.param([fake_state("unpriced"), fake_state("a", price_per_hour=2.0), fake_state("b", price_per_hour=1.0)],
                     {"unpriced": 0.5, "a": 0.5, "b": 1.0}, id="no-price-counts-as-the-dearest"),
        pytest.param([fake_state("free", price_per_hour=0.0), fake_state("paid", price_per_hour=1.0)],
                     {"free": 1.0, "paid": 0.0}, id="free-gpu"),
    ],
)
def test_cost(states, scores: dict[str, float]) -> None:
    candidates = [Candidate.of(s, 0.0) for s in states]
    assert Cost(max_slowdown=1.5).score(RouteRequest(cost=COST), candidates) == pytest.approx(scores)


@pytest.mark.parametrize("bad", [0.9, float("nan")])
def test_max_slowdown_is_at_least_1(bad: float) -> None:
    with pytest.raises(ValueError, match="max_slowdown"):
        Cost(max_slowdown=bad)


@pytest.mark.parametrize(
    ("cost_weight", "max_slowdown", "cheap_served"),
    [
        pytest.param(0.0, 1.5, 3, id="off-speed-alone"),
        pytest.param(1.0, 1.5, 4, id="on-cheap-gpu-until-50-percent-later"),
        pytest.param(1.0, 3.0, 5, id="on-looser-bound-more-to-the-cheap-gpu"),
    ],
)
def test_a_pool_prefers_cheaper_gpus_until_they_are_busier_than_the_bound(
        cost_weight: float, max_slowdown: float, cheap_served: int) -> None:
    # 25 steps take 1.25 s on the H100, 2.0 s on the RTX 4090, which costs a sixth as much.
    states = [fake_state("dear", "H100", price_per_hour=3.0, step_seconds=0.05),
              fake_state("cheap", "RTX 4090", price_per_hour=0.5, step_seconds=0.08)]
    scheduler = default_scheduler(cost_weight=cost_weight, cost_max_slowdown=max_slowdown, rng=random.Random(1))
    served: Counter[str] = Counter()
    for i in range(8):  # a burst between two scrapes: only the gateway's own accounting changes
        now = 0.01 + i / 1000
        etas = {s.name: expected_completion_seconds(s, COST, now) for s in states}
        decision = scheduler.schedule(RouteRequest(cost=COST, now=now), states)
        assert decision.state is not None
        assert decision.expected_seconds == pytest.approx(etas[decision.state.name])
        if decision.state.name == "cheap" and etas["cheap"] > etas["dear"]:
            assert etas["cheap"] <= max_slowdown * etas["dear"]  # never busier than the bound
        decision.state.dispatch(COST, now)
        served[decision.state.name] += 1
    assert served["cheap"] == cheap_served
