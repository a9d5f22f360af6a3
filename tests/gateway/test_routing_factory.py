"""scheduler_from_config: plugins built by type name, errors naming the bad key."""

from __future__ import annotations

import random

import pytest

from sdxlpool.gateway.routing import Cost, Freshness, RouteRequest, scheduler_from_config
from sdxlpool.gateway.routing.testing import fake_state

CONFIG = {
    "filters": ["gpu_allowed", "not_tried", "available", {"type": "freshness", "staleAfter": 5.0}],
    "scorers": [
        {"type": "completion_time", "weight": 1.0, "defaultStepSeconds": 0.2},
        {"type": "preference", "weight": 0.1},
        {"type": "cost", "name": "cost-strict", "weight": 2.0, "maxSlowdown": 1.2},
    ],
    "picker": "best",
}


def test_builds_the_configured_profile() -> None:
    calls: list[str] = []
    scheduler = scheduler_from_config(CONFIG, rng=random.Random(0), on_plugin_seconds=lambda n, _s: calls.append(n))
    assert [f.name for f in scheduler.filters] == ["gpu_allowed", "not_tried", "available", "freshness"]
    assert isinstance(scheduler.filters[3], Freshness) and scheduler.filters[3].stale_after == 5.0
    assert [(s.name, w) for s, w in scheduler.scorers] == [("completion_time", 1.0), ("preference", 0.1),
                                                           ("cost-strict", 2.0)]
    cost = scheduler.scorers[2][0]
    assert isinstance(cost, Cost) and cost.max_slowdown == 1.2
    assert scheduler.default_step_seconds == 0.2
    decision = scheduler.schedule(RouteRequest(cost=25), [fake_state("a", step_seconds=0.0)])
    assert decision.expected_seconds == pytest.approx(25 * 0.2)
    assert calls[-1] == "best" and len(calls) == 8


def test_empty_config_is_a_bare_loop() -> None:
    scheduler = scheduler_from_config({})
    assert (scheduler.filters, scheduler.scorers, scheduler.picker.name) == ([], [], "best")


@pytest.mark.parametrize(
    ("config", "message"),
    [
        pytest.param({"filter": []}, r"routing\.filter: unknown key", id="unknown-section"),
        pytest.param({"filters": "available"}, r"routing\.filters: expected a list", id="not-a-list"),
        pytest.param({"filters": ["fastest"]}, r"routing\.filters\[0\]\.type: unknown plugin 'fastest'",
                     id="unknown-filter"),
        pytest.param({"filters": [{"staleAfter": 1}]}, r"routing\.filters\[0\]: expected a plugin type",
                     id="no-type"),
        pytest.param({"filters": [{"type": "freshness", "stale": 1}]},
                     r"routing\.filters\[0\]\.stale: unknown parameter of freshness \(known: name, staleAfter\)",
                     id="unknown-parameter"),
        pytest.param({"filters": [{"type": "freshness", "staleAfter": -1}]}, r"routing\.filters\[0\]: stale_after",
                     id="bad-value"),
        pytest.param({"filters": [{"type": "available", "weight": 1}]}, r"routing\.filters\[0\]\.weight: unknown",
                     id="weight-on-a-filter"),
        pytest.param({"scorers": [{"type": "cost", "weight": -1}]}, r"weight of scorer cost", id="bad-weight"),
        pytest.param({"picker": "worst"}, r"routing\.picker\.type: unknown plugin 'worst'", id="unknown-picker"),
    ],
)
def test_errors_name_the_key(config: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        scheduler_from_config(config)
