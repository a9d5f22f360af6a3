"""Scorer `cost` with a latency budget (`withinSeconds`) and per-step prices (`basis: step`), and the
default profile with the pool's latency target: cheapest per normalised step among the workers that
would finish within the budget, else the soonest. Prices per step (pricePerHour x s/step): H100
2.49 x 0.085 = 0.212, A100 1.79 x 0.155 = 0.277, RTX 4090 0.69 x 0.17 = 0.117, RTX 3090 0.43 x
0.283 = 0.122.
"""

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
    scheduler_from_config,
)
from sdxlpool.gateway.routing.scheduler import (
    DEFAULT_WAIT_WEIGHT,
    TARGET_COST_WEIGHT,
    TARGET_WAIT_WEIGHT,
    TARGET_WITHIN_SHARE,
)
from sdxlpool.gateway.routing.testing import fake_state
from sdxlpool.scaling.policy import WITHIN_SHARE

COST = 25.0


def h100(name: str = "h100", **kw: float) -> object:
    return fake_state(name, "H100", price_per_hour=2.49, step_seconds=0.085, **kw)


def rtx4090(name: str = "rtx4090", **kw: float) -> object:
    return fake_state(name, "RTX 4090", price_per_hour=0.69, step_seconds=0.17, **kw)


def rtx3090(name: str = "rtx3090", **kw: float) -> object:
    return fake_state(name, "RTX 3090", price_per_hour=0.43, step_seconds=0.283, **kw)


def a100(name: str = "a100", **kw: float) -> object:
    return fake_state(name, "A100", price_per_hour=1.79, step_seconds=0.155, **kw)


@pytest.mark.parametrize(
    ("scorer", "states", "scores"),
    [
        # 25 steps: H100 2.125 s, RTX 4090 4.25 s (2x: outside maxSlowdown 1.5)
        pytest.param(Cost(), [h100(), rtx4090()], {"h100": 1.0, "rtx4090": 0.0},
                     id="no-budget-a-cheap-gpu-twice-as-slow-scores-0"),
        pytest.param(Cost(within_seconds=5.0), [h100(), rtx4090()], {"h100": 0.69 / 2.49, "rtx4090": 1.0},
                     id="within-the-budget-the-cheap-gpu-counts"),
        pytest.param(Cost(within_seconds=4.0), [h100(), rtx4090()], {"h100": 1.0, "rtx4090": 0.0},
                     id="over-the-budget-and-the-slowdown-scores-0"),
        pytest.param(Cost(within_seconds=1.0), [h100(), rtx4090(pending_steps=0)], {"h100": 1.0, "rtx4090": 0.0},
                     id="a-budget-below-the-slowdown-bound-does-not-narrow-it"),
        pytest.param(Cost(within_seconds=5.0), [h100(), rtx4090(pending_steps=10)], {"h100": 1.0, "rtx4090": 0.0},
                     id="a-busy-cheap-gpu-leaves-the-budget"),
        # per hour the A100 is cheaper, per step the H100 is
        pytest.param(Cost(within_seconds=10.0), [h100(), a100()], {"h100": 1.79 / 2.49, "a100": 1.0},
                     id="basis-hour-a100-cheaper"),
        pytest.param(Cost(within_seconds=10.0, basis="step"), [h100(), a100()],
                     {"h100": 1.0, "a100": (2.49 * 0.085) / (1.79 * 0.155)}, id="basis-step-h100-cheaper"),
        pytest.param(Cost(within_seconds=10.0, basis="step"), [rtx4090(), rtx3090(), h100()],
                     {"rtx4090": 1.0, "rtx3090": (0.69 * 0.17) / (0.43 * 0.283), "h100": (0.69 * 0.17) / (2.49 * 0.085)},
                     id="basis-step-rtx4090-cheapest"),
        pytest.param(Cost(basis="step"), [fake_state("a", price_per_hour=1.0, step_seconds=0.1),
                                          fake_state("b", price_per_hour=2.0, step_seconds=0.05)],
                     {"a": 1.0, "b": 1.0}, id="basis-step-equal-per-step-is-neutral"),
        pytest.param(Cost(within_seconds=10.0, basis="step"),
                     [rtx4090("measured"), fake_state("new", "RTX 4090", price_per_hour=0.69, step_seconds=0.0),
                      h100()],
                     {"measured": 1.0, "new": 1.0, "h100": (0.69 * 0.17) / (2.49 * 0.085)},
                     id="basis-step-unmeasured-takes-its-models-speed"),
    ],
)
def test_cost_with_budget_and_basis(scorer: Cost, states: list, scores: dict[str, float]) -> None:
    candidates = [Candidate.of(s, 0.0) for s in states]
    assert scorer.score(RouteRequest(cost=COST), candidates) == pytest.approx(scores)


@pytest.mark.parametrize("kwargs", [{"within_seconds": 0.0}, {"within_seconds": -1.0}, {"within_seconds": float("nan")},
                                    {"within_seconds": True}, {"basis": "day"}])
def test_bad_budget_or_basis_is_refused(kwargs: dict) -> None:
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        Cost(**kwargs)


def test_the_routing_file_takes_within_seconds_and_basis() -> None:
    scheduler = scheduler_from_config({"scorers": [{"type": "completion_time"},
                                                   {"type": "cost", "weight": 3.0, "withinSeconds": 15, "basis": "step"}]})
    cost, weight = scheduler.scorers[1]
    assert (cost, weight) == (Cost(within_seconds=15, basis="step"), 3.0)
    with pytest.raises(ValueError, match=r"routing.scorers\[0\]: basis"):
        scheduler_from_config({"scorers": [{"type": "cost", "basis": "minute"}]})
    with pytest.raises(ValueError, match=r"routing.scorers\[0\]: within_seconds"):
        scheduler_from_config({"scorers": [{"type": "cost", "withinSeconds": 0}]})


def _profile(scheduler: object) -> list[tuple[object, float]]:
    return [(scorer, weight) for scorer, weight in scheduler.scorers]  # type: ignore[attr-defined]


def test_without_a_target_the_default_profile_is_todays() -> None:
    assert _profile(default_scheduler(latency_target=None)) == _profile(default_scheduler())
    assert "cost" not in [scorer.name for scorer, _ in default_scheduler().scorers]


def test_with_a_target_the_default_profile_adds_the_budgeted_per_step_cost() -> None:
    assert TARGET_WITHIN_SHARE == WITHIN_SHARE  # the gateway and the autoscaler agree on "fast enough"
    scorers = dict((scorer.name, (scorer, weight)) for scorer, weight in default_scheduler(latency_target=30.0).scorers)
    cost, weight = scorers["cost"]
    assert cost == Cost(within_seconds=TARGET_WITHIN_SHARE * 30.0, basis="step")
    assert weight == TARGET_COST_WEIGHT
    assert default_scheduler(latency_target=30.0, cost_weight=5.0).scorers[-1][1] == 5.0
    # Plain expected completion with a target (the wait weight lost requests in the autoscaling
    # simulation's bursts); the weighted wait without one; an explicit weight wins either way.
    assert scorers["completion_time"][0].wait_weight == TARGET_WAIT_WEIGHT == 1.0
    assert dict((s.name, s) for s, _ in default_scheduler().scorers)["completion_time"].wait_weight == DEFAULT_WAIT_WEIGHT
    assert default_scheduler(latency_target=30.0, wait_weight=3.0).scorers[0][0].wait_weight == 3.0
    for bad in (0.0, -3.0, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="latency_target"):
            default_scheduler(latency_target=bad)


@pytest.mark.parametrize("cheap", [rtx4090, rtx3090], ids=["rtx4090", "rtx3090"])
def test_with_a_target_an_idle_cheap_gpu_beats_an_idle_h100(cheap) -> None:
    """29 steps: H100 2.5 s, RTX 4090 4.9 s, RTX 3090 8.2 s, all within 70% of 30 s. Today's profile
    sends the request to the H100; with the target, to the GPU cheaper per step."""
    states = [h100(), cheap()]
    request = RouteRequest(cost=29.0)
    assert default_scheduler(rng=random.Random(1)).schedule(request, states).state.name == "h100"
    decision = default_scheduler(latency_target=30.0, rng=random.Random(1)).schedule(request, states)
    assert decision.state is not None and decision.state.name == cheap().name


@pytest.mark.parametrize(("target", "served"), [
    # 25 steps: 2.125 s on the H100, 4.25 s on the RTX 4090; within = eta <= max(budget, 1.5 x soonest)
    pytest.param(None, {"h100": 5, "rtx4090": 3}, id="no-target-soonest"),
    pytest.param(10.0, {"h100": 5, "rtx4090": 3}, id="target-10s-cheap-while-within-7s"),
    pytest.param(30.0, {"h100": 4, "rtx4090": 4}, id="target-30s-cheap-while-within-21s"),
])
def test_a_burst_fills_the_cheap_gpu_up_to_the_budget_then_the_soonest(target: float | None,
                                                                      served: dict[str, int]) -> None:
    states = [h100(), rtx4090()]
    scheduler = default_scheduler(latency_target=target, rng=random.Random(1))
    got: Counter[str] = Counter()
    first = scheduler.schedule(RouteRequest(cost=COST, now=0.0), states).state
    assert first is not None and first.name == ("rtx4090" if target else "h100")  # both idle
    for i in range(8):  # a burst between two scrapes: only the gateway's own accounting changes
        now = 0.01 + i / 1000
        etas = {s.name: expected_completion_seconds(s, COST, now) for s in states}
        decision = scheduler.schedule(RouteRequest(cost=COST, now=now), states)
        assert decision.state is not None
        budget = max(TARGET_WITHIN_SHARE * target, 1.5 * min(etas.values())) if target else 0.0
        within = [name for name, eta in etas.items() if eta <= budget]
        if target and "rtx4090" in within:
            assert decision.state.name == "rtx4090"  # the cheaper per step, within the budget
        else:
            assert etas[decision.state.name] == min(etas.values())  # else the soonest
        decision.state.dispatch(COST, now)
        got[decision.state.name] += 1
    assert dict(got) == served
