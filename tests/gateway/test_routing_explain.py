"""Why a worker was chosen: `schedule(..., explain=True)`, DEBUG logging, and nothing extra otherwise."""

from __future__ import annotations

import logging
import math

import pytest

from sdxlpool.gateway.routing import RouteRequest, default_scheduler
from sdxlpool.gateway.routing import scheduler as scheduler_module
from sdxlpool.gateway.routing.testing import fake_state

NOW = 5.0
POOL = [fake_state("a100-1", "A100", scraped_at=NOW, pending_steps=50),
        fake_state("a100-2", "A100-80GB", scraped_at=NOW),
        fake_state("rtx-1", "RTX 3090", step_seconds=0.2, scraped_at=NOW)]
LOGGER = "sdxlpool.gateway.routing.scheduler"


@pytest.mark.parametrize(
    ("request_", "filters", "emptied_by", "picked"),
    [
        pytest.param(RouteRequest(cost=25, allowed_gpus=("a100",), now=NOW),
                     [("gpu_allowed", ["a100-1", "a100-2"]), ("not_tried", ["a100-1", "a100-2"]),
                      ("available", ["a100-1", "a100-2"]), ("freshness", ["a100-1", "a100-2"])],
                     None, "a100-2", id="picked-the-idle-one"),
        pytest.param(RouteRequest(cost=25, exclude=frozenset({"a100-2"}), now=NOW),
                     [("gpu_allowed", ["a100-1", "a100-2", "rtx-1"]), ("not_tried", ["a100-1", "rtx-1"]),
                      ("available", ["a100-1", "rtx-1"]), ("freshness", ["a100-1", "rtx-1"])],
                     None, "rtx-1", id="failover-excludes-the-tried"),
        pytest.param(RouteRequest(cost=25, allowed_gpus=("h100",), now=NOW), [("gpu_allowed", [])],
                     "gpu_allowed", None, id="emptied-by-a-filter"),
        pytest.param(RouteRequest(cost=25, allowed_gpus=("rtx-3090",), exclude=frozenset({"rtx-1"}), now=NOW),
                     [("gpu_allowed", ["rtx-1"]), ("not_tried", [])], "not_tried", None, id="emptied-later"),
    ],
)
def test_the_explanation_follows_the_run(request_: RouteRequest, filters: list[tuple[str, list[str]]],
                                         emptied_by: str | None, picked: str | None) -> None:
    decision = default_scheduler(cost_weight=1.0).schedule(request_, POOL, explain=True)
    why = decision.explained()
    assert why is not None
    assert why["candidates"] == ["a100-1", "a100-2", "rtx-1"]
    assert [(step["filter"], step["kept"]) for step in why["filters"]] == filters
    assert why["emptied_by"] == emptied_by and why["picked"] == picked
    if picked is None:
        assert why["scores"] == {} and why["weights"] == {} and why["picker"] == ""
        assert emptied_by in why["reason"]
        return
    survivors = filters[-1][1]
    assert why["weights"] == {"completion_time": 1.0, "preference": 0.1, "lora_affinity": 0.2, "cost": 1.0}
    assert set(why["scores"]) == set(why["weights"]) and why["picker"] == "best"
    for name in survivors:  # each total is the weighted sum of that backend's scores
        weighted = sum(why["weights"][scorer] * why["scores"][scorer][name] for scorer in why["weights"])
        assert math.isclose(why["totals"][name], weighted, abs_tol=1e-5)
    assert max(survivors, key=why["totals"].__getitem__) == picked
    assert why["expected_seconds"] > 0 and why["reason"] is None


def test_nothing_is_explained_unless_asked(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """The hot path builds no explanation: not a single filter step."""

    def no_steps(*_args: object) -> None:
        raise AssertionError("built an explanation nobody asked for")

    monkeypatch.setattr(scheduler_module, "FilterStep", no_steps)
    with caplog.at_level(logging.INFO, logger=LOGGER):
        decision = default_scheduler().schedule(RouteRequest(cost=25, now=NOW), POOL)
    assert decision.state is not None and decision.explanation is None and decision.explained() is None


def test_debug_logging_explains_and_logs_every_decision(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger=LOGGER):
        decision = default_scheduler().schedule(RouteRequest(cost=25, allowed_gpus=("h100",), now=NOW), POOL)
    assert decision.explanation is not None
    logged = [r.getMessage() for r in caplog.records if r.name == LOGGER]
    assert len(logged) == 1 and "'emptied_by': 'gpu_allowed'" in logged[0]


def test_an_empty_pool_is_explained_too() -> None:
    why = default_scheduler().schedule(RouteRequest(cost=25, now=NOW), [], explain=True).explained()
    assert why is not None
    assert (why["candidates"], why["filters"], why["picked"]) == ([], [], None)
    assert why["reason"] == "no backends are configured"
