"""Scorer `lora_affinity`: a worker holding the request's LoRAs scores higher while its eta is close."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from sdxlpool.api import metric_names as mn
from sdxlpool.gateway.routing import (
    Candidate,
    LoraAffinity,
    RouteRequest,
    default_scheduler,
    scheduler_from_config,
)
from sdxlpool.gateway.routing.testing import fake_state
from sdxlpool.gateway.worker_metrics import parse_worker_metrics

COST = 25.0  # 2.5 s at 0.1 s per step
STYLE = frozenset({"style"})


@pytest.mark.parametrize(
    ("loras", "states", "scores"),
    [
        pytest.param(frozenset(), [fake_state("a", loras=STYLE), fake_state("b")], {"a": 1.0, "b": 1.0},
                     id="request-without-lora-neutral"),
        pytest.param(STYLE, [fake_state("a"), fake_state("b")], {"a": 1.0, "b": 1.0}, id="nobody-holds-it-neutral"),
        pytest.param(STYLE, [fake_state("a", loras=STYLE), fake_state("b", loras=STYLE)], {"a": 1.0, "b": 1.0},
                     id="everybody-holds-it-neutral"),
        pytest.param(STYLE, [fake_state("a", loras=STYLE), fake_state("b")], {"a": 1.0, "b": 0.0},
                     id="the-holder-scores-1"),
        pytest.param(STYLE, [fake_state("a", loras=STYLE, pending_steps=COST / 2), fake_state("b")],
                     {"a": 1.0, "b": 0.0}, id="a-busier-holder-within-the-bound-still-scores"),
        pytest.param(STYLE, [fake_state("a", loras=STYLE, pending_steps=COST), fake_state("b")],
                     {"a": 0.0, "b": 0.0}, id="a-holder-busier-than-the-bound-scores-0"),
        pytest.param(frozenset({"style", "face"}),
                     [fake_state("a", loras=frozenset({"style", "face"})), fake_state("b", loras=STYLE), fake_state("c")],
                     {"a": 1.0, "b": 0.5, "c": 0.0}, id="share-of-the-loras-held"),
        pytest.param(STYLE, [fake_state("a", loras=STYLE), fake_state("b", scraped_at=None)], {"a": 1.0, "b": 0.0},
                     id="no-metrics-holds-nothing"),
    ],
)
def test_lora_affinity(loras: frozenset[str], states, scores: dict[str, float]) -> None:
    candidates = [Candidate.of(s, 0.0) for s in states]
    assert LoraAffinity(max_slowdown=1.5).score(RouteRequest(cost=COST, loras=loras), candidates) == scores


@pytest.mark.parametrize("bad", [0.5, float("inf")])
def test_max_slowdown_is_at_least_1(bad: float) -> None:
    with pytest.raises(ValueError, match="max_slowdown"):
        LoraAffinity(max_slowdown=bad)


def test_it_is_configurable_by_type_name() -> None:
    scheduler = scheduler_from_config({"scorers": [{"type": "lora_affinity", "weight": 0.5, "maxSlowdown": 2.0}]})
    (scorer, weight), = scheduler.scorers
    assert isinstance(scorer, LoraAffinity) and scorer.max_slowdown == 2.0 and weight == 0.5


@pytest.mark.parametrize(
    ("holder_pending", "holder_served"),
    [
        pytest.param(0.0, 6, id="idle-holder-takes-every-request"),
        pytest.param(COST * 0.2, 6, id="holder-20-percent-later-still-wins"),
        pytest.param(COST * 0.3, 0, id="holder-30-percent-later-loses-to-the-idle-one"),
    ],
)
def test_the_default_profile_prefers_the_holder_when_its_completion_is_close(
        holder_pending: float, holder_served: int) -> None:
    # Requests one after another, each finished before the next: only the LoRA and the backlog differ.
    states = [fake_state("holder", loras=STYLE, pending_steps=holder_pending), fake_state("cold")]
    scheduler = default_scheduler(rng=random.Random(3))
    served: Counter[str] = Counter()
    for _ in range(6):
        decision = scheduler.schedule(RouteRequest(cost=COST, loras=STYLE), states)
        assert decision.state is not None
        served[decision.state.name] += 1
    assert served["holder"] == holder_served


def test_without_a_lora_the_holder_is_not_preferred() -> None:
    states = [fake_state("holder", loras=STYLE), fake_state("cold")]
    scheduler = default_scheduler(rng=random.Random(3))
    served = Counter(scheduler.schedule(RouteRequest(cost=COST), states).state.name for _ in range(40))  # type: ignore[union-attr]
    assert served["holder"] < 40 and served["cold"] < 40


def test_the_workers_series_give_names_and_aliases() -> None:
    text = "".join(f"# TYPE sdxl_worker_{n} gauge\nsdxl_worker_{n} 0\n"
                   for n in ("queue_depth", "inflight", "pending_steps", "step_seconds", "ready"))
    text += (f"# TYPE {mn.WORKER_LORA_LOADED} gauge\n"
             f'{mn.WORKER_LORA_LOADED}{{alias="tinyAllV2",lora="tiny_all"}} 1.0\n'
             f'{mn.WORKER_LORA_LOADED}{{alias="tiny_unet",lora="tiny_unet"}} 1.0\n'
             f'{mn.WORKER_LORA_LOADED}{{alias="gone",lora="gone"}} 0.0\n')
    assert parse_worker_metrics(text).loras == {"tiny_all", "tinyAllV2", "tiny_unet"}
