"""The scheduler loop: filters -> scorers -> picker, early stop, weights, clamping, per-plugin latency."""

from __future__ import annotations

import itertools
import math
import random
from dataclasses import dataclass, field

import pytest

from sdxlpool.gateway.backends import Circuit
from sdxlpool.gateway.routing import (
    DEFAULT_WAIT_WEIGHT,
    Best,
    Candidate,
    CompletionTime,
    Decision,
    RouteRequest,
    Scheduler,
    Scored,
    default_scheduler,
)
from sdxlpool.gateway.routing.testing import fake_state

NOW = 5.0


def _down() -> Circuit:
    circuit = Circuit()
    circuit.record_failure(NOW)
    return circuit


POOL = [fake_state("a100-1", "A100", scraped_at=NOW), fake_state("a100-2", "A100-80GB", scraped_at=NOW),
        fake_state("rtx-1", "RTX 3090", step_seconds=0.2, scraped_at=NOW)]


# -- early stop ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("states", "request_", "emptied_by", "in_reason"),
    [
        pytest.param([], RouteRequest(cost=25, now=NOW), None, ["no backends are configured"], id="empty-pool"),
        pytest.param(POOL, RouteRequest(cost=25, allowed_gpus=("h100",), now=NOW), "gpu_allowed",
                     ["gpu_allowed", "GPU models tried: H100", "in the pool: A100, A100 80GB, RTX 3090"],
                     id="model-not-in-pool"),
        pytest.param(POOL, RouteRequest(cost=25, allowed_gpus=("rtx-3090",), exclude=frozenset({"rtx-1"}), now=NOW),
                     "not_tried", ["not_tried", "already tried", "tried: RTX 3090"], id="all-tried"),
        pytest.param([fake_state("a100-1", "A100", circuit=_down()), fake_state("a100-2", "A100-80GB", ready=False),
                      fake_state("rtx-1", "RTX 3090")],
                     RouteRequest(cost=25, allowed_gpus=("a100", "l40s"), now=NOW), "available",
                     ["available", "down", "GPU models tried: A100, L40S"], id="all-allowed-down"),
        pytest.param([fake_state("x", "A100", circuit=_down())], RouteRequest(cost=25, now=NOW), "available",
                     ["GPU models tried: A100"], id="no-list-names-the-models-that-were-candidates"),
    ],
)
def test_stops_at_the_filter_that_empties_the_list(states, request_: RouteRequest, emptied_by: str | None,
                                                   in_reason: list[str]) -> None:
    decision = default_scheduler().schedule(request_, states)
    assert decision.state is None and decision.expected_seconds is None
    assert decision.emptied_by == emptied_by
    for text in in_reason:
        assert text in decision.reason


# -- fake plugins ---------------------------------------------------------------------------------


@dataclass
class Keep:
    name: str
    keep: set[str] | None = None  # None: keep everything
    calls: int = 0

    def filter(self, request: RouteRequest, candidates: list[Candidate]) -> list[Candidate]:
        self.calls += 1
        return [c for c in candidates if self.keep is None or c.name in self.keep]


@dataclass
class Fixed:
    name: str
    scores: dict[str, float] = field(default_factory=dict)
    calls: int = 0

    def score(self, request: RouteRequest, candidates: list[Candidate]) -> dict[str, float]:
        self.calls += 1
        return dict(self.scores)


@dataclass
class First:
    name: str = "first"
    seen: list[Scored] = field(default_factory=list)

    def pick(self, request: RouteRequest, scored: list[Scored]) -> Candidate | None:
        self.seen = scored
        return max(scored, key=lambda s: s.score).candidate if scored else None


STATES = [fake_state("a"), fake_state("b"), fake_state("c")]


def test_filters_after_an_empty_result_are_not_run() -> None:
    later, scorer, picker = Keep("later"), Fixed("s"), First()
    decision = Scheduler([Keep("all"), Keep("none", keep=set()), later], [(scorer, 1.0)], picker).schedule(
        RouteRequest(cost=1), STATES)
    assert decision.emptied_by == "none"
    assert (later.calls, scorer.calls, picker.seen) == (0, 0, [])


def test_filters_run_in_order_on_what_the_previous_kept() -> None:
    decision = Scheduler([Keep("ab", keep={"a", "b"}), Keep("bc", keep={"b", "c"})], [], First()).schedule(
        RouteRequest(cost=1), STATES)
    assert decision.state is STATES[1]
    assert decision.totals == {"b": 0.0}


@pytest.mark.parametrize(
    ("weights", "winner", "totals"),
    [
        pytest.param((1.0, 0.0), "a", {"a": 1.0, "b": 0.2, "c": 0.5}, id="first-scorer-only"),
        pytest.param((0.0, 1.0), "b", {"a": 0.0, "b": 1.0, "c": 0.5}, id="second-scorer-only"),
        pytest.param((1.0, 1.0), "b", {"a": 1.0, "b": 1.2, "c": 1.0}, id="equal-weights"),  # a's -3 clamped to 0
        pytest.param((1.0, 0.1), "a", {"a": 1.0, "b": 0.3, "c": 0.55}, id="small-second-weight"),
        pytest.param((0.0, 0.0), "a", {"a": 0.0, "b": 0.0, "c": 0.0}, id="all-zero-weights-tie"),
    ],
)
def test_weights_are_applied_outside_the_scorers(weights: tuple[float, float], winner: str,
                                                 totals: dict[str, float]) -> None:
    first = Fixed("speed", {"a": 1.0, "b": 0.2, "c": 0.5})
    second = Fixed("taste", {"a": -3.0, "b": 1.0, "c": 0.5})
    decision = Scheduler([], [(first, weights[0]), (second, weights[1])], First()).schedule(RouteRequest(cost=1),
                                                                                            STATES)
    assert decision.state is not None and decision.state.name == winner
    assert decision.totals == pytest.approx(totals)


@pytest.mark.parametrize(
    ("raw", "clamped"),
    [
        pytest.param({"a": 1.5, "b": 0.5, "c": 1.0}, {"a": 1.0, "b": 0.5, "c": 1.0}, id="above-1"),
        pytest.param({"a": -0.5, "b": 0.5, "c": 0.0}, {"a": 0.0, "b": 0.5, "c": 0.0}, id="below-0"),
        pytest.param({"a": math.nan, "b": math.inf, "c": -math.inf}, {"a": 0.0, "b": 1.0, "c": 0.0}, id="nan-inf"),
        pytest.param({"a": 0.7}, {"a": 0.7, "b": 0.0, "c": 0.0}, id="missing-counts-0"),
        pytest.param({"a": 0.1, "b": 0.1, "c": 0.1, "gone": 1.0}, {"a": 0.1, "b": 0.1, "c": 0.1},
                     id="unknown-names-dropped"),
    ],
)
def test_scores_are_clamped(raw: dict[str, float], clamped: dict[str, float]) -> None:
    decision = Scheduler([], [(Fixed("s", raw), 2.0)], First()).schedule(RouteRequest(cost=1), STATES)
    assert decision.scores == {"s": clamped}
    assert decision.totals == pytest.approx({name: 2.0 * value for name, value in clamped.items()})


@pytest.mark.parametrize(
    ("states", "reported"),
    [
        pytest.param(STATES, ["f1", "f2", "s1", "s2", "first"], id="full-run"),
        pytest.param([], [], id="no-backends-no-plugins"),
    ],
)
def test_every_plugins_latency_is_reported(states, reported: list[str]) -> None:
    ticks = itertools.count(0.0, 0.25)  # each timer read advances 0.25 s
    calls: list[tuple[str, float]] = []
    scheduler = Scheduler([Keep("f1"), Keep("f2")], [(Fixed("s1"), 1.0), (Fixed("s2"), 1.0)], First(),
                          on_plugin_seconds=lambda name, seconds: calls.append((name, seconds)),
                          timer=lambda: next(ticks))
    scheduler.schedule(RouteRequest(cost=1), states)
    assert calls == [(name, 0.25) for name in reported]


def test_latency_of_an_early_stop() -> None:
    calls: list[str] = []
    Scheduler([Keep("f1"), Keep("f2", keep=set()), Keep("f3")], [(Fixed("s1"), 1.0)], First(),
              on_plugin_seconds=lambda name, _s: calls.append(name)).schedule(RouteRequest(cost=1), STATES)
    assert calls == ["f1", "f2"]


def test_the_default_profile_reports_real_plugin_names() -> None:
    names: list[str] = []
    default_scheduler(cost_weight=1.0, on_plugin_seconds=lambda n, s: names.append(n) if s >= 0 else None).schedule(
        RouteRequest(cost=25, now=NOW), POOL)
    assert names == ["gpu_allowed", "not_tried", "available", "freshness", "completion_time", "preference",
                     "lora_affinity", "cost", "best"]


@pytest.mark.parametrize(
    ("scorers", "message"),
    [
        pytest.param([(Fixed("s"), -1.0)], "weight of scorer s", id="negative-weight"),
        pytest.param([(Fixed("s"), math.nan)], "weight of scorer s", id="nan-weight"),
        pytest.param([(Fixed("s"), "1")], "weight of scorer s", id="text-weight"),
        pytest.param([(Fixed("s"), 1.0), (Fixed("s"), 0.5)], "used twice", id="duplicate-names"),
    ],
)
def test_bad_scorer_config(scorers, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Scheduler([], scorers, First())


def test_decision_carries_the_eta_and_every_score() -> None:
    states = [fake_state("busy", pending_steps=50, scraped_at=NOW), fake_state("idle", scraped_at=NOW),
              fake_state("slow", "RTX 3090", step_seconds=0.3, scraped_at=NOW)]
    decision = default_scheduler(rng=random.Random(0)).schedule(
        RouteRequest(cost=25, allowed_gpus=("a100", "rtx-3090"), now=NOW), states)
    assert isinstance(decision, Decision) and decision.state is states[1]
    assert decision.expected_seconds == pytest.approx(2.5)
    # busy: eta 5 + 2.5 s, and its 5 s of waiting beyond one 2.5 s job count 5 times: 7.5 + 4 x 2.5
    busy = 2.5 / (7.5 + (DEFAULT_WAIT_WEIGHT - 1) * 2.5)
    assert decision.scores["completion_time"] == pytest.approx({"busy": busy, "idle": 1.0, "slow": 1 / 3})
    assert decision.scores["preference"] == {"busy": 1.0, "idle": 1.0, "slow": 0.5}
    assert decision.scores["lora_affinity"] == {"busy": 1.0, "idle": 1.0, "slow": 1.0}  # no LoRA: neutral
    assert decision.totals == pytest.approx({"busy": busy + 0.3, "idle": 1.3, "slow": 1 / 3 + 0.25})
    assert decision.gpu_models == ("A100", "RTX 3090") and decision.reason == ""


@pytest.mark.parametrize(
    ("allowed", "winner"),
    [
        pytest.param(("a100", "rtx-3090"), "a100", id="preferred-model-wins-a-near-tie"),
        pytest.param(("rtx-3090", "a100"), "rtx", id="order-reversed"),
    ],
)
def test_preference_settles_near_ties_only(allowed: tuple[str, ...], winner: str) -> None:
    near = [fake_state("a100", "A100", step_seconds=0.1, scraped_at=NOW),
            fake_state("rtx", "RTX 3090", step_seconds=0.103, scraped_at=NOW)]
    decision = default_scheduler().schedule(RouteRequest(cost=25, allowed_gpus=allowed, now=NOW), near)
    assert decision.state is not None and decision.state.name == winner
    far = [fake_state("a100", "A100", step_seconds=0.1, scraped_at=NOW),
           fake_state("rtx", "RTX 3090", step_seconds=0.2, scraped_at=NOW)]
    decision = default_scheduler().schedule(RouteRequest(cost=25, allowed_gpus=("rtx-3090", "a100"), now=NOW), far)
    assert decision.state is not None and decision.state.name == "a100"  # twice as fast beats preference


def test_failover_goes_to_the_next_best() -> None:
    states = [fake_state("a", scraped_at=NOW), fake_state("b", pending_steps=10, scraped_at=NOW),
              fake_state("c", pending_steps=20, scraped_at=NOW)]
    scheduler, tried = default_scheduler(), set()
    order = []
    for _ in range(3):
        decision = scheduler.schedule(RouteRequest(cost=25, exclude=frozenset(tried), now=NOW), states)
        assert decision.state is not None
        order.append(decision.state.name)
        tried.add(decision.state.name)
        decision.state.record_failure(NOW)
    assert order == ["a", "b", "c"]
    assert scheduler.schedule(RouteRequest(cost=25, exclude=frozenset(tried), now=NOW), states).emptied_by == "not_tried"


def test_stale_backends_are_used_only_when_nothing_fresher_is_left() -> None:
    fresh_busy = fake_state("fresh", pending_steps=500, scraped_at=NOW - 0.1)
    stale_idle = fake_state("stale", scraped_at=NOW - 10)
    scheduler = default_scheduler(stale_after=2.0)
    assert scheduler.schedule(RouteRequest(cost=25, now=NOW), [fresh_busy, stale_idle]).state is fresh_busy
    fresh_busy.record_failure(NOW)
    assert scheduler.schedule(RouteRequest(cost=25, now=NOW), [fresh_busy, stale_idle]).state is stale_idle


def test_picker_gets_weighted_totals() -> None:
    picker = First()
    Scheduler([], [(CompletionTime(), 2.0)], picker).schedule(RouteRequest(cost=1), STATES)
    assert [(s.candidate.name, s.score) for s in picker.seen] == [("a", 2.0), ("b", 2.0), ("c", 2.0)]


def test_a_picker_that_picks_nothing() -> None:
    class Nobody:
        name = "nobody"

        def pick(self, request: RouteRequest, scored: list[Scored]) -> Candidate | None:
            return None

    decision = Scheduler([], [], Nobody()).schedule(RouteRequest(cost=1), STATES)
    assert decision.state is None and "nobody" in decision.reason


def test_default_profile_with_a_seeded_picker() -> None:
    scheduler = default_scheduler(rng=random.Random(5))
    assert isinstance(scheduler.picker, Best)
    first = [scheduler.schedule(RouteRequest(cost=1, now=NOW), POOL[:2]).state.name for _ in range(10)]  # type: ignore[union-attr]
    again = default_scheduler(rng=random.Random(5))
    assert first == [again.schedule(RouteRequest(cost=1, now=NOW), POOL[:2]).state.name  # type: ignore[union-attr]
                     for _ in range(10)]
