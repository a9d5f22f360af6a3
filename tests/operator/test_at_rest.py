"""A pool at rest costs the API server nothing, resync timer included (docs/benchmarks.md, operator
section; `benchmarks/operator_scale.py` measures it at scale).

The timer is short here (1 s) and the window holds at least two of its runs on every pool: the
timer's syncs compare with kopf's in-memory indexes and write nothing that is already right. The
autoscaler's timer runs as often, and on pools without spec.autoscaling.enabled does nothing.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sdxlpool.testing.emulator import EmulatorThread
from sdxlpool.testing.operator import OperatorThread, TimerRuns
from tests.operator.conftest import eventually
from tests.operator.test_operator_emulator import POOL, deployments, node

RESYNC = 1.0
TIMER_RUNS = 2
QUIET = 1.5  # settled: this long without an API call (longer than the timer, so its calls would show)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[EmulatorThread]:
    with EmulatorThread(tmp_path) as running:
        yield running


def test_pools_at_rest_make_no_api_calls_across_timer_runs(server) -> None:
    from sdxlpool._kube import connect

    kube = connect(str(server.kubeconfig))
    kube.create(node("gpu-a", "NVIDIA-A100-SXM4-80GB"))
    names = ["calm-one", "calm-two"]
    with TimerRuns() as timer_runs, OperatorThread(server.kubeconfig, resync_seconds=RESYNC,
                                                       autoscale_seconds=RESYNC):
        for name in names:
            body = copy.deepcopy(POOL)
            body["metadata"]["name"] = name
            body["spec"]["gpus"] = [{"model": "A100", "replicas": 1}, {"model": "RTX-3090", "replicas": 1}]
            kube.create(body)
        for name in names:
            eventually(lambda name=name: set(deployments(kube, name)) == {
                f"{name}-a100", f"{name}-rtx-3090", f"{name}-gateway"})

        def settled() -> bool:
            calls = server.api_calls()
            time.sleep(QUIET)
            return server.api_calls() == calls

        try:
            eventually(settled, timeout=60)
        except TimeoutError:
            pytest.fail(f"the operator never went {QUIET} s without an API call")
        before, runs_before = server.api_calls(), timer_runs.snapshot()
        runs = eventually(lambda: (counts := {n: timer_runs.snapshot()[n] - runs_before[n] for n in names})
                          and min(counts.values()) >= TIMER_RUNS and counts, timeout=30)
        calls = server.api_calls() - before
    kube.close()
    assert min(runs.values()) >= TIMER_RUNS
    assert calls == 0, f"{calls} API calls at rest over {runs} timer runs"
