"""benchmarks/autoscaling.py's simulation keeps its promises: deterministic, draining, nothing dropped."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "autoscaling.py"


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("autoscaling_bench", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def _run(bench: ModuleType, seed: int, controller_name: str) -> dict:
    seconds = 1200.0
    requests, _ = bench.make_trace(seed, seconds, 1.0, 0.1, 1)
    start = dict(bench.MIN_REPLICAS)
    controller = bench.Hpa() if controller_name == "hpa" else bench.Ours(
        bench.Autoscaler(bench.ours_policy(30.0, start), started_at=0.0))
    sim = bench.Simulation(controller_name, requests, seconds, start, [90.0] * 100, controller)
    sim.run()
    return {"requests": len(requests), **bench.figures(sim, 30.0, seconds)}


@pytest.mark.parametrize("policy", ["hpa", "ours"])
def test_same_seed_same_figures_other_seed_other_figures(bench: ModuleType, policy: str) -> None:
    first, again, other = _run(bench, 3, policy), _run(bench, 3, policy), _run(bench, 4, policy)
    assert first == again
    assert other != first


def test_a_drained_worker_finishes_its_jobs_and_takes_no_new_one(bench: ModuleType) -> None:
    """A worker removed with 3 jobs queued answers all three, gets nothing more, and is paid until then."""
    requests = [bench.Request(i, 0.0, 25.0, (), 1.0) for i in range(3)] + [bench.Request(3, 1.0, 25.0, (), 1.0)]

    def controller(sim: object, now: float) -> None:
        pass

    sim = bench.Simulation("drain", requests[:3], 600.0, {"rtx-3090": 1, "h100": 0}, [60.0], controller)
    sim.scale({"rtx-3090": 1, "h100": 1}, 0.0)  # a second worker, starting (ready at 60 s)
    sim.events.clear()
    for r in requests[:3]:
        sim._route(r, 0.0)
    worker = next(w for w in sim.workers if w.gpu == "rtx-3090")
    sim.scale({"rtx-3090": 0, "h100": 1}, 0.5)
    assert worker.draining and worker.stopped is None
    sim._route(requests[3], 1.0)  # nothing ready but the draining worker: it waits at the gateway
    assert sim.waiting == [requests[3]]
    while sim.events:
        now, _, kind, payload = bench.heapq.heappop(sim.events)
        if kind == "done":
            sim._finish(payload, now)
    job = 25 * bench.seconds_per_step("rtx-3090")
    assert [gpu for _, _, gpu in sim.done] == ["rtx-3090"] * 3
    assert worker.stopped == pytest.approx(3 * job)
