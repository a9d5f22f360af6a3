"""expected_completion_seconds (response headers), pool_drain_rate (429 Retry-After) and extra_wait_seconds
(the completion_time scorer's weighted wait, batching workers)."""

from __future__ import annotations

import pytest

from sdxlpool.gateway.backends import Circuit
from sdxlpool.gateway.routing import (
    DEFAULT_STEP_SECONDS,
    Candidate,
    expected_completion_seconds,
    pool_drain_rate,
)
from sdxlpool.gateway.routing.estimates import extra_wait_seconds
from sdxlpool.gateway.routing.testing import fake_state

NOW = 1.0


def _open() -> Circuit:
    circuit = Circuit()
    circuit.record_failure(NOW)
    return circuit


@pytest.mark.parametrize(
    ("state", "pool", "seconds"),
    [
        pytest.param(fake_state("a", pending_steps=25, step_seconds=0.08), [], (25 + 25) * 0.08, id="pending-plus-cost"),
        pytest.param(fake_state("a", step_seconds=0.0), [], 25 * DEFAULT_STEP_SECONDS, id="unmeasured-alone-default"),
        pytest.param(fake_state("a", step_seconds=0.0), [fake_state("b", step_seconds=0.2),
                                                         fake_state("c", "RTX 3090", step_seconds=0.4)],
                     25 * 0.2, id="unmeasured-takes-same-model-peers"),
        pytest.param(fake_state("a", kind="a1111"), [fake_state("b", "RTX 3090", step_seconds=0.3)], 25 * 0.3,
                     id="a1111-takes-the-pool-median"),
    ],
)
def test_expected_completion_seconds(state, pool, seconds: float) -> None:
    assert expected_completion_seconds(state, 25, NOW, pool=pool) == pytest.approx(seconds)


def test_expected_completion_counts_unseen_work() -> None:
    state = fake_state("a", scraped_at=0.0, pending_steps=10, step_seconds=0.1)
    state.dispatch(15, 0.5)
    assert expected_completion_seconds(state, 25, NOW) == pytest.approx((10 + 15 + 25) * 0.1)


@pytest.mark.parametrize(
    ("states", "now", "rate"),
    [
        pytest.param([], NOW, 0.0, id="empty"),
        pytest.param([fake_state("a", step_seconds=0.1), fake_state("b", step_seconds=0.05)], NOW, 30.0, id="sum"),
        pytest.param([fake_state("a", step_seconds=0.1), fake_state("b", step_seconds=0.05, ready=False)], NOW, 10.0,
                     id="not-ready-excluded"),
        pytest.param([fake_state("a", step_seconds=0.1), fake_state("b", step_seconds=0.05, circuit=_open())], NOW,
                     10.0, id="open-circuit-excluded"),
        pytest.param([fake_state("a", step_seconds=0.1), fake_state("b", step_seconds=0.05, circuit=_open())], None,
                     30.0, id="without-now-circuits-not-consulted"),
        pytest.param([fake_state("a", step_seconds=0.1), fake_state("b", step_seconds=0.0)], NOW, 20.0,
                     id="unmeasured-counts-at-the-median"),
        pytest.param([fake_state("a", step_seconds=0.25), fake_state("x", kind="a1111")], NOW, 8.0, id="a1111-counts"),
        pytest.param([fake_state("a", scraped_at=None)], NOW, 0.0, id="never-scraped-excluded"),
    ],
)
def test_pool_drain_rate(states, now: float | None, rate: float) -> None:
    assert pool_drain_rate(states, now) == pytest.approx(rate)


@pytest.mark.parametrize(
    ("wait", "service", "slack", "batch_max", "extra"),
    [
        pytest.param(5.0, 1.0, 1.0, 1, 4.0, id="no-batching-the-wait-beyond-the-slack"),
        pytest.param(0.5, 1.0, 1.0, 1, 0.0, id="within-the-slack-nothing"),
        pytest.param(5.0, 1.0, 1.0, 4, 1.0, id="batch-of-4-three-services-free"),
        pytest.param(5.0, 2.0, 1.0, 4, 0.0, id="batch-of-4-a-bigger-request-frees-more"),
        pytest.param(5.0, 1.0, 0.0, 2, 4.0, id="batch-of-2-one-service-free"),
        pytest.param(5.0, 1.0, 1.0, 0, 4.0, id="nonsense-batch-max-is-1"),
    ],
)
def test_extra_wait_seconds(wait: float, service: float, slack: float, batch_max: int, extra: float) -> None:
    assert extra_wait_seconds(wait, service, slack=slack, batch_max=batch_max) == pytest.approx(extra)
    assert extra_wait_seconds(wait, service, slack=slack) == pytest.approx(max(0.0, wait - slack))  # default: 1


def test_a_candidate_without_batch_metrics_batches_one() -> None:
    assert Candidate.of(fake_state("old"), NOW).batch_max == 1  # a worker that does not export it
    assert Candidate.of(fake_state("a1111", kind="a1111"), NOW).batch_max == 1
    assert Candidate.of(fake_state("never", scraped_at=None), NOW).batch_max == 1
    assert Candidate.of(fake_state("batcher", batch_max=4), NOW).batch_max == 4
