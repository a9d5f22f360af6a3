"""Scorer `least_inflight`: 1 / (1 + requests this gateway has in flight on the backend)."""

from __future__ import annotations

import random

import pytest

from sdxlpool.gateway.backends import BackendState
from sdxlpool.gateway.routing import Candidate, RouteRequest, scheduler_from_config
from sdxlpool.gateway.routing.scorers import LeastInflight
from sdxlpool.gateway.routing.testing import fake_state

NOW = 10.0
REQUEST = RouteRequest(cost=25, now=NOW)


def _with_inflight(name: str, count: int, **kwargs) -> BackendState:
    state = fake_state(name, scraped_at=NOW, **kwargs)
    for i in range(count):
        state.dispatch(25, NOW - i)
    return state


@pytest.mark.parametrize(
    ("states", "scores"),
    [
        pytest.param([_with_inflight("a", 0), _with_inflight("b", 0)], {"a": 1.0, "b": 1.0}, id="idle-neutral"),
        pytest.param([_with_inflight("a", 0), _with_inflight("b", 1), _with_inflight("c", 2)],
                     {"a": 1.0, "b": 0.5, "c": 1 / 3}, id="one-over-one-plus-inflight"),
        pytest.param([_with_inflight("a", 1, pending_steps=500), _with_inflight("b", 1, step_seconds=5.0)],
                     {"a": 0.5, "b": 0.5}, id="metrics-and-speed-ignored"),
        pytest.param([_with_inflight("a1111", 3, kind="a1111"), _with_inflight("w", 1)],
                     {"a1111": 0.25, "w": 0.5}, id="a1111-backends-too"),
    ],
)
def test_least_inflight(states: list[BackendState], scores: dict[str, float]) -> None:
    candidates = [Candidate.of(s, NOW) for s in states]
    assert LeastInflight().score(REQUEST, candidates) == pytest.approx(scores)


def test_a_completed_request_no_longer_counts() -> None:
    state = _with_inflight("a", 2)
    state.complete(25)
    assert LeastInflight().score(REQUEST, [Candidate.of(state, NOW)]) == {"a": 0.5}


def test_least_connections_through_the_scheduler() -> None:
    scheduler = scheduler_from_config(
        {"filters": ["available"], "scorers": [{"type": "least_inflight", "weight": 1.0}], "picker": "best"},
        rng=random.Random(0))
    states = [fake_state(name, scraped_at=NOW) for name in ("a", "b", "c")]
    chosen = []
    for _ in range(6):  # nothing completes: each backend takes one, then a second
        decision = scheduler.schedule(REQUEST, states)
        assert decision.state is not None
        decision.state.dispatch(REQUEST.cost, NOW)
        chosen.append(decision.state.name)
    assert sorted(chosen[:3]) == ["a", "b", "c"] and sorted(chosen[3:]) == ["a", "b", "c"]
    # The last decision saw the other two with 2 in flight and the chosen one still with 1.
    assert decision.scores["least_inflight"] == pytest.approx({n: 0.5 if n == chosen[-1] else 1 / 3 for n in "abc"})
