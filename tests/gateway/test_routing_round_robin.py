"""Picker `round_robin`: the next candidate in backend-name order after the last one chosen."""

from __future__ import annotations

import random

import pytest

from sdxlpool.gateway.routing import Candidate, RouteRequest, Scored, scheduler_from_config
from sdxlpool.gateway.routing.pickers import RoundRobin
from sdxlpool.gateway.routing.testing import fake_state

REQUEST = RouteRequest(cost=1)


def _scored(names: list[str], totals: dict[str, float] | None = None) -> list[Scored]:
    return [Scored(Candidate.of(fake_state(name), 0.0), (totals or {}).get(name, 1.0)) for name in names]


def _picks(picker: RoundRobin, rounds: list[list[str]]) -> list[str]:
    return [picker.pick(REQUEST, _scored(names)).name for names in rounds]  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("rounds", "picks"),
    [
        pytest.param([["a", "b", "c"]] * 7, ["a", "b", "c", "a", "b", "c", "a"], id="strict-rotation"),
        pytest.param([["c", "a", "b"]] * 4, ["a", "b", "c", "a"], id="backend-name-order-not-list-order"),
        pytest.param([["a"]] * 3, ["a", "a", "a"], id="single-candidate"),
        pytest.param([["a", "b", "c"], ["a", "c"], ["a", "b", "c"]], ["a", "c", "a"],
                     id="a-filtered-out-backend-is-skipped"),
        pytest.param([["a", "b", "c"], ["a", "b", "c"], ["a", "c"], ["a", "b", "c"]], ["a", "b", "c", "a"],
                     id="the-last-one-chosen-gone-rotation-continues-after-its-name"),
        pytest.param([["a", "c"], ["a", "b", "c"], ["a", "b", "c"]], ["a", "b", "c"],
                     id="a-backend-back-takes-its-turn"),
    ],
)
def test_round_robin(rounds: list[list[str]], picks: list[str]) -> None:
    assert _picks(RoundRobin(), rounds) == picks


def test_scores_are_ignored() -> None:
    picker = RoundRobin()
    totals = {"a": 0.0, "b": 1.1, "c": 0.3}
    assert [picker.pick(REQUEST, _scored(["a", "b", "c"], totals)).name  # type: ignore[union-attr]
            for _ in range(3)] == ["a", "b", "c"]


def test_nothing_to_pick() -> None:
    picker = RoundRobin()
    assert picker.pick(REQUEST, []) is None
    assert _picks(picker, [["a", "b"]]) == ["a"]  # an empty call does not move the rotation


def test_built_by_the_factory_and_turns_through_the_scheduler() -> None:
    # A seeded rng is accepted by scheduler_from_config and simply not passed to this picker.
    scheduler = scheduler_from_config({"filters": ["available"], "picker": "round_robin"}, rng=random.Random(0))
    assert isinstance(scheduler.picker, RoundRobin)
    states = [fake_state(name) for name in ("w2", "w1", "w3")]
    chosen = [scheduler.schedule(REQUEST, states).state.name for _ in range(6)]  # type: ignore[union-attr]
    assert chosen == ["w1", "w2", "w3", "w1", "w2", "w3"]
