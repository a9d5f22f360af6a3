"""Injected faults: `fail_rate` answers 500 JSON, `hang_rate` never progresses until interrupted or
abandoned, and both are drawn deterministically from the seed."""

from __future__ import annotations

import time

import httpx
import pytest

from sdxlpool.api import metric_names as mn
from sdxlpool.sim import SimEngine, SimSettings
from tests.sim.conftest import Background, info_of, metrics, running_sim, wait_for

JOB = {"prompt": "x", "sampler_name": "Euler", "steps": 10, "seed": 1}


def test_fail_rate_one_answers_500_json_and_keeps_serving() -> None:
    with running_sim(step_seconds=0.01, fail_rate=1.0) as sim:  # the warm-up is exempt: it becomes ready
        for _ in range(2):
            response = httpx.post(sim.url + "/sdapi/v1/txt2img", json=JOB, timeout=10)
            assert response.status_code == 500
            body = response.json()
            assert body["error"] == "internal" and "SimulatedDeviceError" in body["detail"]
        assert httpx.get(sim.url + "/readyz").status_code == 200
        after = metrics(sim.url)
        assert after[f"{mn.WORKER_REQUESTS}_total{{outcome=error}}"] == 2
        assert after[mn.WORKER_INFLIGHT] == 0 and after[mn.WORKER_PENDING_STEPS] == 0


def test_hang_rate_one_never_progresses_until_interrupted_or_abandoned() -> None:
    with running_sim(step_seconds=0.01, hang_rate=1.0) as sim, httpx.Client(base_url=sim.url, timeout=10) as client:
        hung = Background(sim.url, JOB)
        wait_for(lambda: metrics(sim.url)[mn.WORKER_INFLIGHT] == 1)
        time.sleep(0.4)  # 4x the time the job would take
        assert hung.thread.is_alive()
        progress = client.get("/sdapi/v1/progress").json()
        assert progress["progress"] == 0 and progress["state"]["sampling_step"] == 0
        assert metrics(sim.url)[mn.WORKER_PENDING_STEPS] == 10  # nothing done
        assert client.post("/sdapi/v1/interrupt").json() == {"interrupted": True}
        response = hung.result(timeout=5)
        assert response.status_code == 200
        assert info_of(response)["interrupted"] is True and info_of(response)["sdxlpool"]["steps_done"] == 0

        # A client that gives up frees the worker too (the route notices the disconnect).
        impatient = Background(sim.url, {**JOB, "seed": 2}, timeout=0.3)
        impatient.thread.join(5)
        assert isinstance(impatient.error, httpx.TimeoutException)
        wait_for(lambda: metrics(sim.url)[mn.WORKER_INFLIGHT] == 0, timeout=5)
        after = metrics(sim.url)
        assert after[f"{mn.WORKER_REQUESTS}_total{{outcome=cancelled}}"] == 1
        assert after[mn.WORKER_PENDING_STEPS] == 0


def _fates(seed: int, *, fail_rate: float = 0.3, hang_rate: float = 0.2, warmup: bool = False) -> list[str]:
    engine = SimEngine(SimSettings(gpu_model="A100", step_seconds=0, fail_rate=fail_rate, hang_rate=hang_rate,
                                   seed=seed, warmup=warmup))
    fates = []
    for _ in range(400):
        fault = engine._draw_fault(10)
        fates.append("ok" if fault is None else fault.kind)
    return fates


def test_fault_draws_are_deterministic_per_seed_and_match_the_rates() -> None:
    fates = _fates(seed=7)
    assert _fates(seed=7) == fates
    assert _fates(seed=8) != fates
    assert fates.count("fail") / len(fates) == pytest.approx(0.3, abs=0.07)
    assert fates.count("hang") / len(fates) == pytest.approx(0.2, abs=0.07)
    # The warm-up job is never faulted, and does not shift the requests' draws.
    assert _fates(seed=7, fail_rate=1.0, hang_rate=0.0, warmup=True)[0] == "ok"
    assert _fates(seed=7, warmup=True)[1:] == fates[:-1]


def test_a_failure_comes_part_way_through_the_job() -> None:
    engine = SimEngine(SimSettings(gpu_model="A100", step_seconds=0, fail_rate=1.0, warmup=False))
    points = [engine._draw_fault(40).at for _ in range(200)]
    assert min(points) >= 0 and max(points) < 20 and len(set(points)) > 10  # somewhere in the first half
