"""benchmarks/autoscaling.py routes with the gateway's real scheduler: soonest completion for the
peers, cheapest per step within the latency budget for ours."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "autoscaling.py"


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("autoscaling_bench_routing", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(("target", "gpus"), [
    pytest.param(None, ["h100", "h100", "h100"], id="default-routing-soonest-h100"),
    pytest.param(30.0, ["rtx-4090", "rtx-4090", "rtx-4090"], id="target-routing-cheapest-per-step-within-21s"),
])
def test_the_simulated_gateway_routes_with_the_real_scheduler(bench: ModuleType, target: float | None,
                                                              gpus: list[str]) -> None:
    """One idle H100, RTX 4090 and RTX 3090; three 25-step requests 3 s apart: the H100
    finishes each first (2.1 s), the RTX 4090 is the cheapest per step and within 21 s."""
    requests = [bench.Request(i, 3.0 * i, 25.0, (), 1.0) for i in range(3)]
    sim = bench.Simulation("routing", requests, 60.0, {"h100": 1, "rtx-4090": 1, "rtx-3090": 1}, [60.0],
                           lambda sim, now: None, scheduler=bench.gateway_scheduler(target))
    sim.run()
    assert [gpu for _, _, gpu in sorted(sim.done)] == gpus
