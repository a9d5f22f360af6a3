"""Scorer `completion_time`: min c / c, c = eta + (wait_weight - 1) x the wait beyond one short job,
eta = (pending + unseen + cost) x step_seconds."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from sdxlpool.gateway.routing import Candidate, CompletionTime, RouteRequest, default_scheduler
from sdxlpool.gateway.routing.testing import fake_state

NOW = 1.0
COST = 25.0  # one 1024x1024 image at 25 steps


def _dispatched(state, *events: tuple[float, float]):
    for t, cost in events:
        state.dispatch(cost, t)
    return state


@pytest.mark.parametrize(
    ("states", "scores"),
    [
        pytest.param([fake_state("a"), fake_state("b"), fake_state("c")], {"a": 1.0, "b": 1.0, "c": 1.0},
                     id="idle-uniform-pool-is-neutral"),
        pytest.param([fake_state("a"), fake_state("b", pending_steps=25)], {"a": 1.0, "b": 0.5},
                     id="backlog-doubles-the-eta"),
        pytest.param([fake_state("fast", step_seconds=0.05, pending_steps=25), fake_state("slow", step_seconds=0.1)],
                     {"fast": 1.0, "slow": 1.0}, id="busy-fast-gpu-ties-idle-slow-one"),
        pytest.param([fake_state("fast", step_seconds=0.05), fake_state("slow", step_seconds=0.2)],
                     {"fast": 1.0, "slow": 0.25}, id="speed-only"),
        pytest.param([fake_state("a", step_seconds=0.1), fake_state("b", step_seconds=0.2),
                      fake_state("new", step_seconds=0.0)], {"a": 1.0, "b": 0.5, "new": 0.1 / 0.15},
                     id="unknown-step-seconds-takes-the-same-model-median"),
        pytest.param([fake_state("a", "A100", step_seconds=0.1), fake_state("b", "RTX 3090", step_seconds=0.3),
                      fake_state("c", "RTX 3090", step_seconds=0.0), fake_state("d", "L40S", step_seconds=0.0)],
                     {"a": 1.0, "b": 1 / 3, "c": 1 / 3, "d": 0.5}, id="other-models-fall-back-to-the-pool-median"),
        pytest.param([fake_state("a", step_seconds=0.0), fake_state("b", step_seconds=0.0, pending_steps=25)],
                     {"a": 1.0, "b": 0.5}, id="nobody-measured-uses-the-default"),
        pytest.param([_dispatched(fake_state("a", scraped_at=0.9, pending_steps=COST, queue_depth=1), (0.5, COST)),
                      fake_state("b", scraped_at=0.9, pending_steps=COST)], {"a": 1.0, "b": 1.0},
                     id="work-sent-before-the-scrape-is-in-pending-steps-not-counted-twice"),
        pytest.param([_dispatched(fake_state("a", scraped_at=0.0), (0.5, COST)), fake_state("b", scraped_at=0.0)],
                     {"a": 0.5, "b": 1.0}, id="work-sent-after-the-scrape-counts"),
        pytest.param([_dispatched(fake_state("stale", scraped_at=-30.0, pending_steps=25), (-10.0, COST)),
                      fake_state("fresh", pending_steps=25)], {"stale": 2 / 3, "fresh": 1.0},
                     id="stale-metrics-last-seen-plus-everything-sent-since"),
        pytest.param([_dispatched(fake_state("a1111", kind="a1111"), (0.0, COST), (0.1, COST)), fake_state("b")],
                     {"a1111": 1 / 3, "b": 1.0}, id="a1111-counts-its-own-in-flight-work"),
    ],
)
def test_completion_time(states, scores: dict[str, float]) -> None:
    candidates = [Candidate.of(s, NOW) for s in states]
    assert CompletionTime().score(RouteRequest(cost=COST, now=NOW), candidates) == pytest.approx(scores)


def test_zero_cost_on_an_idle_worker() -> None:
    candidates = [Candidate.of(fake_state("idle"), NOW), Candidate.of(fake_state("busy", pending_steps=10), NOW)]
    assert CompletionTime().score(RouteRequest(cost=0.0, now=NOW), candidates) == {"idle": 1.0, "busy": 0.0}


@pytest.mark.parametrize(
    ("speeds", "burst", "expected"),
    [
        pytest.param({"w1": 0.1, "w2": 0.1, "w3": 0.1, "w4": 0.1}, 4, {"w1": 1, "w2": 1, "w3": 1, "w4": 1},
                     id="four-equal-workers-one-each"),
        pytest.param({"w1": 0.1, "w2": 0.1, "w3": 0.1, "w4": 0.1}, 8, {"w1": 2, "w2": 2, "w3": 2, "w4": 2},
                     id="four-equal-workers-two-each"),
        pytest.param({"fast": 0.05, "slow1": 0.1, "slow2": 0.1}, 8, {"fast": 4, "slow1": 2, "slow2": 2},
                     id="twice-as-fast-takes-twice-as-many"),
    ],
)
def test_a_burst_between_two_scrapes_spreads_out(speeds: dict[str, float], burst: int,
                                                 expected: dict[str, int]) -> None:
    states = [fake_state(name, step_seconds=s, scraped_at=0.0) for name, s in speeds.items()]
    scheduler = default_scheduler(rng=random.Random(7))
    served: Counter[str] = Counter()
    for i in range(burst):  # all within 100 ms of the scrape: metrics still say "idle"
        now = 0.01 + i * 0.001
        decision = scheduler.schedule(RouteRequest(cost=COST, now=now), states)
        assert decision.state is not None
        decision.state.dispatch(COST, now)
        served[decision.state.name] += 1
    assert served == expected


# Two workers, 25-step request: fast 0.05 s/step (1.25 s of service), slow 0.15 s/step (3.75 s).
@pytest.mark.parametrize(
    ("fast_pending", "wait_weight", "wait_slack", "scores"),
    [
        pytest.param(50, 1.0, 1.0, {"fast": 1.0, "slow": 3.75 / 3.75}, id="weight-1-is-the-plain-eta"),
        pytest.param(25, 5.0, 1.0, {"fast": 1.0, "slow": 2.5 / 3.75}, id="a-wait-within-the-slack-costs-its-length"),
        # fast: eta 2.5 + 1.25 = 3.75, 1.25 s of it beyond the slack counts 4 more times: 8.75
        pytest.param(50, 5.0, 1.0, {"fast": 3.75 / 8.75, "slow": 1.0}, id="a-longer-wait-counts-five-times"),
        pytest.param(50, 5.0, 0.0, {"fast": 3.75 / 13.75, "slow": 1.0}, id="no-slack-every-second-of-wait-counts"),
        pytest.param(0, 5.0, 1.0, {"fast": 1.0, "slow": 1.25 / 3.75}, id="idle-workers-plain-speed"),
    ],
)
def test_wait_weight_makes_a_long_queue_cost_more(fast_pending: float, wait_weight: float, wait_slack: float,
                                                  scores: dict[str, float]) -> None:
    states = [fake_state("fast", step_seconds=0.05, pending_steps=fast_pending), fake_state("slow", step_seconds=0.15)]
    scorer = CompletionTime(wait_weight=wait_weight, wait_slack=wait_slack)
    candidates = [Candidate.of(s, NOW) for s in states]
    assert scorer.score(RouteRequest(cost=COST, now=NOW), candidates) == pytest.approx(scores)


def test_the_decision_reports_the_plain_eta_whatever_the_weight() -> None:
    busy = fake_state("busy", step_seconds=0.05, pending_steps=50)
    decision = default_scheduler(rng=random.Random(1)).schedule(RouteRequest(cost=COST, now=NOW), [busy])
    assert decision.state is busy and decision.expected_seconds == pytest.approx((50 + COST) * 0.05)


@pytest.mark.parametrize(("field", "bad"), [("wait_weight", 0.5), ("wait_weight", float("inf")),
                                            ("wait_weight", True), ("wait_slack", -1.0), ("wait_slack", float("nan"))])
def test_wait_parameters_are_checked(field: str, bad: float) -> None:
    with pytest.raises(ValueError, match=field):
        CompletionTime(**{field: bad})


def test_the_default_profile_sends_a_burst_to_idle_slower_workers_before_queueing_deep() -> None:
    """Between two scrapes, 6 requests: the fast worker takes one job and one queued behind it (within
    the slack), then the idle slow workers take one each rather than a third in the fast queue."""
    states = [fake_state("fast", step_seconds=0.05, scraped_at=0.0)] + [
        fake_state(f"slow{i}", step_seconds=0.15, scraped_at=0.0) for i in range(4)]
    scheduler = default_scheduler(rng=random.Random(7))
    served: Counter[str] = Counter()
    for i in range(6):
        now = 0.01 + i * 0.001
        decision = scheduler.schedule(RouteRequest(cost=COST, now=now), states)
        assert decision.state is not None
        decision.state.dispatch(COST, now)
        served[decision.state.name] += 1
    assert served["fast"] == 2 and sorted(served[f"slow{i}"] for i in range(4)) == [1, 1, 1, 1]


@pytest.mark.parametrize("bad", [0.0, -0.1, float("nan")])
def test_default_step_seconds_must_be_positive(bad: float) -> None:
    with pytest.raises(ValueError, match="default_step_seconds"):
        CompletionTime(default_step_seconds=bad)


# A batching fast worker (0.05 s/step, 1.25 s of service, the slack) against an idle slower one
# (0.2 s/step, 5 s), the fast one with 2 requests queued (wait 2.5 s). Without batching 1.25 s of that
# wait counts 5 times: c = 3.75 + 4 x 1.25 = 8.75 and the slow worker wins. With --batch-max 4 the 2
# requests ahead may share this one's batch: nothing counts extra, c = eta = 3.75, the fast one wins.
@pytest.mark.parametrize(
    ("batch_max", "fast_pending", "scores"),
    [
        pytest.param(1, 50, {"fast": 5 / 8.75, "slow": 1.0}, id="no-batching-the-queue-counts-five-times"),
        pytest.param(4, 50, {"fast": 1.0, "slow": 3.75 / 5}, id="batch-of-4-a-queue-of-2-is-free"),
        # wait 5 s, all of it free (1.25 slack + 3 x 1.25): c = eta = 6.25, so the slow worker's 5 s wins
        pytest.param(4, 100, {"fast": 5 / 6.25, "slow": 1.0}, id="batch-of-4-a-queue-of-4-costs-only-its-eta"),
        # wait 5 s: 1.25 (slack) + 1.25 (one member) free, 2.5 s count 4 more times: 6.25 + 10
        pytest.param(2, 100, {"fast": 5 / 16.25, "slow": 1.0}, id="batch-of-2-frees-one-member-only"),
        # wait 10 s, batch of 4: 1.25 + 3 x 1.25 free, 5 s count extra: 11.25 + 20
        pytest.param(4, 200, {"fast": 5 / 31.25, "slow": 1.0}, id="batch-of-4-a-longer-queue-still-counts"),
    ],
)
def test_a_batching_workers_queue_is_free_up_to_its_batch(batch_max: int, fast_pending: float,
                                                          scores: dict[str, float]) -> None:
    states = [fake_state("fast", step_seconds=0.05, pending_steps=fast_pending, batch_max=batch_max),
              fake_state("slow", step_seconds=0.2)]
    candidates = [Candidate.of(s, NOW) for s in states]
    assert CompletionTime(wait_weight=5.0).score(RouteRequest(cost=COST, now=NOW), candidates) == pytest.approx(scores)


def test_the_default_profile_queues_on_a_batching_worker_and_reports_the_plain_eta() -> None:
    """Two requests queued on a batching fast worker: the default profile still sends the third there
    (not to the idle slow worker, as without batching), and expected_seconds is the plain eta."""
    def decide(batch_max: int):
        fast = fake_state("fast", step_seconds=0.05, pending_steps=50, batch_max=batch_max)
        slow = fake_state("slow", step_seconds=0.2)
        return default_scheduler(rng=random.Random(1)).schedule(RouteRequest(cost=COST, now=NOW), [fast, slow])

    assert decide(1).state.name == "slow"
    batched = decide(4)
    assert batched.state.name == "fast" and batched.expected_seconds == pytest.approx((50 + COST) * 0.05)
