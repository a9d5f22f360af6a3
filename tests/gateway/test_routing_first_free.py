"""Picker `first_free`: the first idle candidate in backend-name order, else a random one."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from sdxlpool.gateway.backends import BackendState
from sdxlpool.gateway.routing import Candidate, RouteRequest, Scored, scheduler_from_config
from sdxlpool.gateway.routing.pickers import FirstFree
from sdxlpool.gateway.routing.pickers.first_free import is_free
from sdxlpool.gateway.routing.testing import fake_state

NOW = 10.0
REQUEST = RouteRequest(cost=1, now=NOW)


def _busy(name: str) -> BackendState:
    return fake_state(name, pending_steps=25, scraped_at=NOW)


def _sent_since_scrape(name: str, **kwargs) -> BackendState:
    state = fake_state(name, scraped_at=NOW - 0.1, **kwargs)
    state.dispatch(25, NOW)  # after the scrape: unseen
    return state


def _seen_and_done(name: str) -> BackendState:
    state = fake_state(name, pending_steps=0, scraped_at=NOW)
    state.dispatch(25, NOW - 1.0)  # well before the scrape, which shows no work left: it is done
    return state


def _a1111(name: str, inflight: int = 0) -> BackendState:
    state = fake_state(name, kind="a1111")
    for _ in range(inflight):
        state.dispatch(0, NOW)  # even a request of no cost makes it busy
    return state


def _scored(states: list[BackendState], totals: dict[str, float] | None = None) -> list[Scored]:
    return [Scored(Candidate.of(s, NOW), (totals or {}).get(s.name, 1.0)) for s in states]


@pytest.mark.parametrize(
    ("states", "free"),
    [
        pytest.param(fake_state("idle", scraped_at=NOW), True, id="idle"),
        pytest.param(_busy("busy"), False, id="pending-steps"),
        pytest.param(_sent_since_scrape("unseen"), False, id="dispatched-after-the-scrape"),
        pytest.param(_seen_and_done("done"), True, id="dispatched-before-a-scrape-showing-no-work"),
        pytest.param(fake_state("never", scraped_at=None), True, id="never-scraped-nothing-in-flight"),
        pytest.param(_a1111("a1111"), True, id="a1111-idle"),
        pytest.param(_a1111("a1111", inflight=1), False, id="a1111-request-in-flight"),
    ],
)
def test_is_free(states: BackendState, free: bool) -> None:
    assert is_free(Candidate.of(states, NOW)) is free


@pytest.mark.parametrize(
    ("states", "winner"),
    [
        pytest.param([fake_state("c"), fake_state("b"), fake_state("a")], "a", id="first-by-name-when-all-free"),
        pytest.param([_busy("a"), fake_state("b"), fake_state("c")], "b", id="skips-a-busy-one"),
        pytest.param([_busy("a"), _sent_since_scrape("b"), fake_state("c")], "c", id="skips-unseen-work"),
        pytest.param([_a1111("a", inflight=2), _a1111("b")], "b", id="a1111-by-in-flight-count"),
        pytest.param([fake_state("a", step_seconds=1.0), fake_state("b", step_seconds=0.01)], "a",
                     id="speed-is-ignored"),
    ],
)
def test_first_free(states: list[BackendState], winner: str) -> None:
    chosen = FirstFree(rng=random.Random(0)).pick(REQUEST, _scored(states, {"a": 0.0, "b": 0.5, "c": 2.0}))
    assert chosen is not None and chosen.name == winner


def test_none_free_draws_at_random_whatever_the_scores() -> None:
    picker = FirstFree(rng=random.Random(7))
    scored = _scored([_busy("a"), _busy("b"), _sent_since_scrape("c")], {"a": 2.0, "b": 0.0, "c": 1.0})
    picks = Counter(picker.pick(REQUEST, scored).name for _ in range(600))  # type: ignore[union-attr]
    assert set(picks) == {"a", "b", "c"}
    assert min(picks.values()) > 600 / 3 * 0.7


def test_a_seeded_generator_repeats_its_choices() -> None:
    scored = _scored([_busy(name) for name in "abcd"])
    one, two = FirstFree(rng=random.Random(3)), FirstFree(rng=random.Random(3))
    assert [one.pick(REQUEST, scored).name for _ in range(20)] == [  # type: ignore[union-attr]
        two.pick(REQUEST, scored).name for _ in range(20)]  # type: ignore[union-attr]


def test_nothing_to_pick() -> None:
    assert FirstFree().pick(REQUEST, []) is None


def test_built_by_the_factory_with_the_given_rng() -> None:
    rng = random.Random(0)
    scheduler = scheduler_from_config({"filters": ["available"], "picker": {"type": "first_free"}}, rng=rng)
    assert isinstance(scheduler.picker, FirstFree) and scheduler.picker.rng is rng
    states = [_busy("a"), fake_state("b", scraped_at=NOW)]
    assert scheduler.schedule(REQUEST, states).state.name == "b"  # type: ignore[union-attr]
