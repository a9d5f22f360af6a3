"""Backend entries of the backends file, the circuit breaker, and the gateway's own accounting
(its own dispatches and those other gateway replicas announce)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from sdxlpool.gateway.backends import (
    IN_TRANSIT_SECONDS,
    LATE_SECONDS,
    PEER_DISPATCH_MAX_AGE,
    PEER_DISPATCHES_KEPT,
    Backend,
    BackendState,
    Circuit,
)
from sdxlpool.gateway.routing.testing import fake_state

# -- Backend.from_mapping ------------------------------------------------------------------------

MINIMAL = {"name": "a100-1", "url": "http://127.0.0.1:7861", "gpu": "A100"}


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        pytest.param(MINIMAL, Backend("a100-1", "http://127.0.0.1:7861", "a100"), id="minimal-defaults"),
        pytest.param(
            {"name": " a100-2 ", "url": "https://gpu.example.com:8443/", "gpu": "NVIDIA-A100-SXM4-80GB",
             "provider": "Foundry Staking", "location": "US-East", "type": "sdxlpool", "pricePerHour": 1.1},
            Backend("a100-2", "https://gpu.example.com:8443", "a100-80gb", "Foundry Staking", "US-East",
                    "sdxlpool", 1.1),
            id="full-entry-slug-and-trailing-slash",
        ),
        pytest.param({**MINIMAL, "gpu": "RTX 3090", "type": "A1111", "pricePerHour": 0},
                     Backend("a100-1", "http://127.0.0.1:7861", "rtx-3090", kind="a1111", price_per_hour=0.0),
                     id="a1111-any-case-and-free"),
        pytest.param({**MINIMAL, "provider": None, "location": 12},
                     Backend("a100-1", "http://127.0.0.1:7861", "a100", "", "12"), id="null-provider-numeric-location"),
    ],
)
def test_from_mapping(entry: dict, expected: Backend) -> None:
    assert Backend.from_mapping(entry) == expected


@pytest.mark.parametrize(
    ("entry", "field"),
    [
        pytest.param({k: v for k, v in MINIMAL.items() if k != "name"}, "name", id="name-missing"),
        pytest.param({**MINIMAL, "name": "  "}, "name", id="name-blank"),
        pytest.param({**MINIMAL, "url": 7861}, "url", id="url-not-text"),
        pytest.param({**MINIMAL, "url": "ftp://host"}, "url", id="url-scheme"),
        pytest.param({**MINIMAL, "url": "http://"}, "url", id="url-no-host"),
        pytest.param({k: v for k, v in MINIMAL.items() if k != "gpu"}, "gpu", id="gpu-missing"),
        pytest.param({**MINIMAL, "gpu": "banana"}, "gpu", id="gpu-not-nvidia"),
        pytest.param({**MINIMAL, "type": "vllm"}, "type", id="type-unknown"),
        pytest.param({**MINIMAL, "pricePerHour": -1}, "pricePerHour", id="price-negative"),
        pytest.param({**MINIMAL, "pricePerHour": "cheap"}, "pricePerHour", id="price-text"),
        pytest.param({**MINIMAL, "pricePerHour": True}, "pricePerHour", id="price-bool"),
        pytest.param({**MINIMAL, "pricePerHour": float("nan")}, "pricePerHour", id="price-nan"),
        pytest.param({**MINIMAL, "provider": ["a"]}, "provider", id="provider-list"),
        pytest.param({**MINIMAL, "gpus": "A100"}, "gpus", id="unknown-field"),
    ],
)
def test_from_mapping_names_the_bad_field(entry: dict, field: str) -> None:
    with pytest.raises(ValueError, match=rf"^{field}: "):
        Backend.from_mapping(entry)


def test_gpu_display() -> None:
    assert Backend.from_mapping({**MINIMAL, "gpu": "NVIDIA-A100-SXM4-80GB"}).gpu_display == "A100 80GB"


# -- Circuit breaker -----------------------------------------------------------------------------
# events: ("fail" | "ok" | "probe" | "end", t); checks: (t, state, available)


@pytest.mark.parametrize(
    ("events", "checks"),
    [
        pytest.param([], [(0.0, "closed", True), (1e6, "closed", True)], id="closed-by-default"),
        pytest.param([("fail", 10.0)], [(10.0, "open", False), (10.99, "open", False), (11.0, "half-open", True)],
                     id="first-failure-opens-for-1s"),
        pytest.param([("fail", 0.0), ("fail", 1.0)], [(2.99, "open", False), (3.0, "half-open", True)],
                     id="second-failure-in-a-row-2s"),
        pytest.param([("fail", 0.0), ("fail", 1.0), ("fail", 3.0)], [(6.99, "open", False), (7.0, "half-open", True)],
                     id="third-failure-4s"),
        pytest.param([("fail", t) for t in (0.0, 1.0, 3.0, 7.0, 15.0, 31.0)],
                     [(60.99, "open", False), (61.0, "half-open", True)], id="capped-at-30s"),
        pytest.param([("fail", 0.0), ("fail", 0.5), ("fail", 0.9)], [(0.99, "open", False), (1.0, "half-open", True)],
                     id="failures-while-open-change-nothing"),
        pytest.param([("fail", 0.0), ("ok", 0.5)], [(0.9, "open", False), (1.0, "half-open", True)],
                     id="success-while-open-is-ignored"),
        pytest.param([("fail", 0.0), ("fail", 1.0), ("ok", 3.0)], [(3.0, "closed", True)],
                     id="success-when-half-open-closes"),
        pytest.param([("fail", 0.0), ("fail", 1.0), ("ok", 3.0), ("fail", 4.0)],
                     [(4.99, "open", False), (5.0, "half-open", True)], id="success-resets-the-backoff"),
        pytest.param([("fail", 0.0), ("probe", 1.0)], [(1.0, "half-open", False), (5.0, "half-open", False)],
                     id="half-open-admits-one-probe"),
        pytest.param([("fail", 0.0), ("probe", 1.0), ("end", 2.0)], [(2.0, "half-open", True)],
                     id="probe-that-ends-undecided-frees-the-slot"),
        pytest.param([("fail", 0.0), ("probe", 1.0)], [(30.99, "half-open", False), (31.0, "half-open", True)],
                     id="lost-probe-expires-after-30s"),
        pytest.param([("fail", 0.0), ("probe", 1.0), ("fail", 2.0)], [(3.99, "open", False), (4.0, "half-open", True)],
                     id="failed-probe-reopens-longer"),
        pytest.param([("probe", 0.0)], [(0.0, "closed", True)], id="no-probe-when-closed"),
    ],
)
def test_circuit_timings(events: list[tuple[str, float]], checks: list[tuple[float, str, bool]]) -> None:
    circuit = Circuit()
    for event, t in events:
        {"fail": circuit.record_failure, "ok": circuit.record_success, "probe": circuit.begin_probe,
         "end": lambda _t: circuit.end_probe()}[event](t)
    for t, state, available in checks:
        assert (circuit.state(t), circuit.available(t)) == (state, available), f"at t={t}"


@pytest.mark.parametrize(("failures", "seconds"), [(0, 0.0), (1, 1.0), (2, 2.0), (5, 16.0), (6, 30.0), (500, 30.0)])
def test_backoff(failures: int, seconds: float) -> None:
    assert Circuit().backoff(failures) == seconds


def test_state_dispatch_probes_a_half_open_circuit_and_complete_ends_it() -> None:
    state = fake_state("a")
    state.record_failure(0.0)
    assert not state.available(0.5)
    state.dispatch(25, 1.0)  # the half-open probe
    assert not state.available(1.0)
    state.complete(25)
    assert state.available(1.0)
    state.dispatch(25, 1.1)
    state.complete(25)
    state.record_success(1.2)
    assert state.circuit.state(1.2) == "closed"


# -- unseen work ----------------------------------------------------------------------------------
# The last scrape was sent at t=1.0; dispatches: (t, cost); unseen at t=1.5.


@pytest.mark.parametrize(
    ("kind", "scraped_at", "dispatches", "unseen"),
    [
        pytest.param("sdxlpool", 1.0, [], 0.0, id="nothing-in-flight"),
        pytest.param("sdxlpool", 1.0, [(1.01, 25.0)], 25.0, id="after-the-scrape-counts-fully"),
        pytest.param("sdxlpool", 1.0, [(0.5, 25.0)], 0.0, id="before-the-scrape-is-in-pending-steps"),
        pytest.param("sdxlpool", 1.0, [(1.0 - IN_TRANSIT_SECONDS / 2, 25.0)], 25.0, id="just-before-may-be-in-transit"),
        pytest.param("sdxlpool", 1.0, [(0.2, 10.0), (0.9, 20.0), (1.2, 30.0), (1.4, 40.0)], 70.0, id="mixed"),
        pytest.param("sdxlpool", None, [(0.2, 10.0), (1.2, 30.0)], 40.0, id="never-scraped-counts-everything"),
        pytest.param("a1111", None, [(0.2, 10.0), (1.2, 30.0)], 40.0, id="a1111-counts-everything"),
    ],
)
def test_unseen_cost(kind: str, scraped_at: float | None, dispatches: list[tuple[float, float]], unseen: float) -> None:
    # The scrape shows every request sent before it as held by the worker (queued): none is late.
    held = sum(1 for t, _ in dispatches if scraped_at is not None and t < scraped_at)
    state = fake_state("a", kind=kind, scraped_at=scraped_at, queue_depth=held)  # type: ignore[arg-type]
    for t, cost in dispatches:
        state.dispatch(cost, t)
    assert state.unseen_cost(1.5) == pytest.approx(unseen)
    assert state.inflight == len(dispatches)


def test_complete_removes_the_oldest_dispatch_of_that_cost() -> None:
    state = fake_state("a", scraped_at=1.0)
    state.dispatch(25.0, 0.5)  # seen by the scrape
    state.dispatch(25.0, 1.5)  # not yet
    state.dispatch(10.0, 1.6)
    state.complete(25.0)  # the worker runs jobs in order: the first one finished
    assert state.unseen_cost(2.0) == pytest.approx(35.0)
    assert state.inflight == 2
    state.complete(99.0)  # never dispatched: nothing to remove
    assert state.inflight == 2
    state.complete(25.0)
    state.complete(10.0)
    assert (state.inflight, state.inflight_cost, state.unseen_cost(2.0)) == (0, 0.0, 0.0)


def test_a_new_scrape_absorbs_earlier_dispatches() -> None:
    state = fake_state("a", scraped_at=0.0)
    state.dispatch(25.0, 0.03)
    state.dispatch(25.0, 0.06)
    assert state.unseen_cost(0.08) == 50.0
    state.scraped_at = 0.2  # the next scrape's pending_steps includes both, running and queued
    assert state.metrics is not None
    state.metrics = replace(state.metrics, pending_steps=50.0, inflight=1, queue_depth=1)
    assert state.unseen_cost(0.22) == 0.0


@pytest.mark.parametrize(
    ("sent", "held", "unseen"),
    [
        pytest.param(1.0 - 0.2, 0, 25.0, id="sent-before-the-scrape-but-not-there-yet-counts"),
        pytest.param(1.0 - 0.2, 1, 0.0, id="sent-before-the-scrape-and-there"),
        pytest.param(1.0 - LATE_SECONDS - 0.1, 0, 0.0, id="long-before-and-gone-is-done"),
    ],
)
def test_a_request_late_on_the_wire_still_counts(sent: float, held: int, unseen: float) -> None:
    """A loaded machine can take longer than IN_TRANSIT_SECONDS to get a request into the worker's
    queue: while the last scrape (sent at t=1.0) counts fewer requests there than the gateway has in
    flight, its newest ones sent within LATE_SECONDS before it count."""
    state = fake_state("a", scraped_at=1.0, inflight=held)
    state.dispatch(25.0, sent)
    assert state.unseen_cost(1.1) == unseen


def test_state_defaults() -> None:
    state = BackendState(Backend("a", "http://a", "a100"))
    assert (state.name, state.metrics, state.scraped_at, state.available(0.0), state.unseen_cost(0.0)) == (
        "a", None, None, True, 0.0)


# -- other replicas' dispatches ---------------------------------------------------------------------
# The last scrape was sent at t=1.0; own and peer dispatches: (t, cost); unseen at t=1.5.


@pytest.mark.parametrize(
    ("kind", "scraped_at", "own", "peers", "unseen"),
    [
        pytest.param("sdxlpool", 1.0, [], [(1.2, 20.0)], 20.0, id="heard-after-the-scrape-counts"),
        pytest.param("sdxlpool", 1.0, [], [(0.5, 20.0)], 0.0, id="heard-before-the-scrape-not-counted-twice"),
        pytest.param("sdxlpool", 1.0, [], [(1.0 - IN_TRANSIT_SECONDS / 2, 20.0)], 20.0,
                     id="just-before-may-be-in-transit"),
        pytest.param("sdxlpool", 1.0, [(1.1, 25.0), (0.5, 5.0)], [(1.2, 20.0), (1.3, 10.0), (0.4, 7.0)], 55.0,
                     id="own-and-peers-by-the-same-rule"),
        pytest.param("sdxlpool", None, [(0.2, 10.0)], [(0.3, 20.0)], 30.0, id="never-scraped-counts-everything"),
        pytest.param("a1111", None, [(0.2, 10.0)], [(1.2, 20.0)], 10.0, id="a1111-ignores-peers"),
    ],
)
def test_unseen_cost_with_peer_dispatches(kind: str, scraped_at: float | None, own: list[tuple[float, float]],
                                          peers: list[tuple[float, float]], unseen: float) -> None:
    state = fake_state("a", kind=kind, scraped_at=scraped_at)  # type: ignore[arg-type]
    events = [("own", t, cost) for t, cost in own] + [("peer", t, cost) for t, cost in peers]
    for who, t, cost in sorted(events, key=lambda event: event[1]):
        (state.dispatch if who == "own" else state.peer_dispatch)(cost, t)
    assert state.unseen_cost(1.5) == pytest.approx(unseen)
    # A peer's dispatch is not this gateway's request: a1111 and least_inflight read these.
    assert (state.inflight, state.inflight_cost) == (len(own), pytest.approx(sum(cost for _, cost in own)))


def test_a_scrape_sent_after_a_peer_dispatch_forgets_it() -> None:
    state = fake_state("a", scraped_at=0.0)
    state.peer_dispatch(20.0, 0.3)
    state.peer_dispatch(10.0, 0.35)
    assert state.unseen_cost(0.36) == 30.0
    state.scraped_at = 0.33  # sent within IN_TRANSIT_SECONDS of both: may not include them yet
    assert state.unseen_cost(0.4) == 30.0
    state.scraped_at = 0.39  # includes the first only
    assert state.unseen_cost(0.45) == 10.0
    state.scraped_at = 0.5
    assert state.unseen_cost(0.55) == 0.0
    assert len(state._peer_dispatched) == 0  # forgotten, not only left out of the sum


def test_peer_dispatches_are_forgotten_after_a_while_without_scrapes() -> None:
    state = fake_state("a", scraped_at=0.0)  # and no scrape after this one
    state.peer_dispatch(20.0, 1.0)
    assert state.unseen_cost(1.0 + PEER_DISPATCH_MAX_AGE - 0.01) == 20.0
    assert state.unseen_cost(1.0 + PEER_DISPATCH_MAX_AGE) == 0.0


def test_peer_dispatches_kept_are_bounded() -> None:
    state = fake_state("a", scraped_at=0.0)
    for i in range(PEER_DISPATCHES_KEPT + 500):  # a flood within one scrape interval
        state.peer_dispatch(1.0, 0.1 + i * 1e-6)
    assert len(state._peer_dispatched) == PEER_DISPATCHES_KEPT
    assert state.unseen_cost(0.2) == PEER_DISPATCHES_KEPT
