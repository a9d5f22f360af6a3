"""Filter `available`: circuit breaker not open, and the worker's model loaded (a1111: breaker only)."""

from __future__ import annotations

import pytest

from sdxlpool.gateway.backends import Circuit
from sdxlpool.gateway.routing import Available, Candidate, RouteRequest
from sdxlpool.gateway.routing.testing import fake_state

NOW = 100.0


def _open() -> Circuit:
    circuit = Circuit()
    circuit.record_failure(NOW - 0.5)  # open until NOW + 0.5
    return circuit


def _half_open(probing: bool = False) -> Circuit:
    circuit = Circuit()
    circuit.record_failure(NOW - 1.0)
    if probing:
        circuit.begin_probe(NOW)
    return circuit


@pytest.mark.parametrize(
    ("state", "kept"),
    [
        pytest.param(fake_state("a"), True, id="closed-and-ready"),
        pytest.param(fake_state("a", ready=False), False, id="model-not-loaded"),
        pytest.param(fake_state("a", scraped_at=None), False, id="never-scraped"),
        pytest.param(fake_state("a", circuit=_open()), False, id="circuit-open"),
        pytest.param(fake_state("a", circuit=_half_open()), True, id="half-open-probe-allowed"),
        pytest.param(fake_state("a", circuit=_half_open(probing=True)), False, id="half-open-probe-under-way"),
        pytest.param(fake_state("a", kind="a1111"), True, id="a1111-no-metrics-needed"),
        pytest.param(fake_state("a", kind="a1111", circuit=_open()), False, id="a1111-circuit-open"),
    ],
)
def test_available(state, kept: bool) -> None:
    candidates = [Candidate.of(state, NOW)]
    assert Available().filter(RouteRequest(cost=25, now=NOW), candidates) == (candidates if kept else [])


def test_keeps_order() -> None:
    states = [fake_state("c"), fake_state("b", ready=False), fake_state("a")]
    kept = Available().filter(RouteRequest(cost=25, now=NOW), [Candidate.of(s, NOW) for s in states])
    assert [c.name for c in kept] == ["c", "a"]
