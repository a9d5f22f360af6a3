"""`summarise_pool`: the pool per GPU model for the web page (workers, up, busy, price). Pure: states
built by hand, time passed as `now`."""

from __future__ import annotations

import pytest

from sdxlpool.api.gpu import normalize_gpu_name
from sdxlpool.gateway.backends import Backend, BackendKind, BackendState
from sdxlpool.gateway.pool_summary import GpuModelSummary, summarise_pool
from sdxlpool.gateway.worker_metrics import WorkerMetrics

NOW = 1000.0
STALE = 10.0


def state(name: str, gpu: str = "A100", *, queue: float = 0, inflight: float = 0, ready: bool = True,
          scraped: float | None = NOW - 0.1, kind: BackendKind = "sdxlpool", price: float | None = None,
          metrics: bool = True, down: bool = False, dispatched: int = 0) -> BackendState:
    backend = Backend(name=name, url=f"http://{name}:7860", gpu=normalize_gpu_name(gpu), kind=kind,
                      price_per_hour=price)
    s = BackendState(backend=backend, scraped_at=scraped)
    if metrics and kind == "sdxlpool":
        s.metrics = WorkerMetrics(queue_depth=queue, inflight=inflight, pending_steps=0.0, step_seconds=0.1,
                                  ready=ready)
    if down:
        s.record_failure(NOW - 0.1)  # circuit open for a second
    for _ in range(dispatched):
        s.dispatch(1.0, NOW - 0.05)
    return s


def one(*states: BackendState) -> GpuModelSummary:
    (summary,) = summarise_pool(states, NOW, stale_after=STALE)
    return summary


@pytest.mark.parametrize(("case", "states", "up", "busy"), [
    ("idle worker", [state("a")], 1, 0),
    ("running a request", [state("a", inflight=1)], 1, 1),
    ("requests queued", [state("a", queue=2)], 1, 1),
    ("sent by this gateway, not scraped yet", [state("a", dispatched=1)], 1, 1),
    ("model still loading", [state("a", ready=False)], 0, 0),
    ("never scraped", [state("a", scraped=None, metrics=False)], 0, 0),
    ("scrape too old", [state("a", scraped=NOW - STALE - 1)], 0, 0),
    ("circuit open: down, and a down worker is not busy", [state("a", down=True, inflight=1)], 0, 0),
    ("plain A1111, probed", [state("a", kind="a1111")], 1, 0),
    ("plain A1111 with our request on it", [state("a", kind="a1111", dispatched=2)], 1, 1),
    ("plain A1111, never probed", [state("a", kind="a1111", scraped=None)], 0, 0),
    ("two of three up, one busy", [state("a", inflight=1), state("b"), state("c", down=True)], 2, 1),
])
def test_up_and_busy(case: str, states: list[BackendState], up: int, busy: int) -> None:
    summary = one(*states)
    assert (summary.workers, summary.up, summary.busy) == (len(states), up, busy), case


def test_one_entry_per_gpu_model_in_display_order() -> None:
    states = [state("r1", "NVIDIA-GeForce-RTX-3090"), state("a1", "nvidia-a100"), state("a2", "A100"),
              state("big", "NVIDIA-A100-SXM4-80GB"), state("h", "H100", down=True)]
    summaries = summarise_pool(states, NOW, stale_after=STALE)
    assert [(s.gpu_model, s.gpu_name, s.workers, s.up) for s in summaries] == [
        ("a100", "A100", 2, 2), ("a100-80gb", "A100 80GB", 1, 1), ("h100", "H100", 1, 0),
        ("rtx-3090", "RTX 3090", 1, 1)]


@pytest.mark.parametrize(("prices", "expected"), [
    ([None], None),
    ([1.5], 1.5),
    ([1.5, None, 1.1], 1.1),  # the cheapest known price of the model
    ([0.0, 2.0], 0.0),
])
def test_price_per_hour(prices: list[float | None], expected: float | None) -> None:
    summary = one(*(state(f"w{i}", price=price) for i, price in enumerate(prices)))
    assert summary.price_per_hour == expected


def test_json_shape() -> None:
    summary = one(state("a", price=1.1, inflight=1), state("b", down=True))
    assert summary.as_json() == {"gpu_model": "a100", "gpu_name": "A100", "workers": 2, "up": 1, "busy": 1,
                                 "pricePerHour": 1.1}


def test_empty_pool() -> None:
    assert summarise_pool([], NOW, stale_after=STALE) == []


def test_the_pools_models_without_a_worker_are_listed_with_none() -> None:
    """--pool-gpus: a model at zero workers is still offered (a request for it waits for one to start)."""
    summaries = summarise_pool([state("a1", "A100")], NOW, stale_after=STALE, pool_gpus=["h100", "a100"])
    assert [(s.gpu_model, s.gpu_name, s.workers, s.up, s.busy, s.price_per_hour) for s in summaries] == [
        ("a100", "A100", 1, 1, 0, None), ("h100", "H100", 0, 0, 0, None)]
