"""Picker `best`: the highest weighted total; ties broken at random with an injectable generator."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from sdxlpool.gateway.routing import Best, Candidate, RouteRequest, Scored
from sdxlpool.gateway.routing.testing import fake_state

REQUEST = RouteRequest(cost=1)


def _scored(totals: dict[str, float]) -> list[Scored]:
    return [Scored(Candidate.of(fake_state(name), 0.0), total) for name, total in totals.items()]


@pytest.mark.parametrize(
    ("totals", "winner"),
    [
        pytest.param({"a": 0.2, "b": 1.1, "c": 0.9}, "b", id="highest-total"),
        pytest.param({"a": 1.1}, "a", id="single-candidate"),
        pytest.param({"a": 1.0, "b": 1.0 - 1e-6}, "a", id="a-real-difference-is-not-a-tie"),
    ],
)
def test_best(totals: dict[str, float], winner: str) -> None:
    chosen = Best(rng=random.Random(0)).pick(REQUEST, _scored(totals))
    assert chosen is not None and chosen.name == winner


def test_nothing_to_pick() -> None:
    assert Best().pick(REQUEST, []) is None


@pytest.mark.parametrize(
    ("totals", "tied"),
    [
        pytest.param({"a": 1.0, "b": 1.0, "c": 1.0}, {"a", "b", "c"}, id="all-tied"),
        pytest.param({"a": 1.1, "b": 0.5, "c": 1.1 - 1e-12}, {"a", "c"}, id="within-tolerance-tie"),
    ],
)
def test_ties_are_broken_at_random(totals: dict[str, float], tied: set[str]) -> None:
    picker = Best(rng=random.Random(42))
    picks = Counter(picker.pick(REQUEST, _scored(totals)).name for _ in range(600))  # type: ignore[union-attr]
    assert set(picks) == tied
    assert min(picks.values()) > 600 / len(tied) * 0.7  # roughly uniform, never "first in the file"


def test_a_seeded_generator_repeats_its_choices() -> None:
    scored = _scored({"a": 1.0, "b": 1.0, "c": 1.0, "d": 1.0})
    first = [Best(rng=random.Random(3)).pick(REQUEST, scored).name for _ in range(1)]  # type: ignore[union-attr]
    one, two = Best(rng=random.Random(3)), Best(rng=random.Random(3))
    assert [one.pick(REQUEST, scored).name for _ in range(20)] == [  # type: ignore[union-attr]
        two.pick(REQUEST, scored).name for _ in range(20)]  # type: ignore[union-attr]
    assert first[0] in {"a", "b", "c", "d"}
