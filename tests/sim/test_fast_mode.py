"""`sim-worker --fast-mode deepcache`: the worker's flags, its mode named where the real worker names it,
and DeepCache's cheaper evaluations in the timing model (sdxlpool/sim/_deepcache.py)."""

from __future__ import annotations

import time

import httpx
import pytest

from sdxlpool.errors import ConfigError
from sdxlpool.sim._cli import run_sim_worker
from sdxlpool.sim._deepcache import DEEPCACHE_CACHED_SHARE, evaluation_share
from sdxlpool.worker.deepcache import DeepCache
from tests.sim.conftest import info_of, running_sim
from tests.sim.test_cli import parser

STEP = 0.05  # seconds per normalised step
HICCUP = 0.1  # absolute slack on an upper bound: sleeps overshoot under load, never undershoot


@pytest.mark.parametrize(("index", "params", "share"), [
    pytest.param(0, None, 1.0, id="exact"),
    pytest.param(4, None, 1.0, id="exact, any evaluation"),
    pytest.param(0, DeepCache(3, 0), 1.0, id="the first evaluation is full"),
    pytest.param(3, DeepCache(3, 0), 1.0, id="every interval-th is full"),
    pytest.param(4, DeepCache(3, 0), 0.0672, id="cached, branch 0"),
    pytest.param(5, DeepCache(3, 1), 0.3074, id="cached, branch 1"),
    pytest.param(1, DeepCache(1, 2), 1.0, id="interval 1: all full"),
])
def test_an_evaluations_share_of_a_full_ones_time(index: int, params: DeepCache | None, share: float) -> None:
    assert evaluation_share(index, params) == share


def _txt2img(url: str) -> tuple[float, dict]:
    """A 1024x1024, 20-step Euler txt2img: 20 normalised steps, one evaluation each."""
    started = time.perf_counter()
    response = httpx.post(url + "/sdapi/v1/txt2img", timeout=30, json={
        "prompt": "fast", "seed": 3, "steps": 20, "width": 1024, "height": 1024, "sampler_name": "Euler"})
    assert response.status_code == 200, response.text
    return time.perf_counter() - started, info_of(response)["sdxlpool"]


def test_a_deepcache_sim_worker_runs_the_cheaper_evaluations_and_says_so() -> None:
    # Interval 3, branch 0: evaluations 0, 3, ..., 18 full (7), 13 cached at 6.72 % of the work.
    modelled = (7 + 13 * DEEPCACHE_CACHED_SHARE[0]) * STEP  # 0.39 s, where exact takes 1.0 s
    with running_sim(step_seconds=STEP, fast_mode="deepcache") as fast, running_sim(step_seconds=STEP) as exact:
        fast_wall, fast_info = _txt2img(fast.url)
        exact_wall, exact_info = _txt2img(exact.url)
        assert httpx.get(fast.url + "/readyz").json()["fast_mode"] == "deepcache"
    assert fast_info["fast_mode"] == "deepcache" and exact_info["fast_mode"] == "off"
    assert fast_info["steps_done"] == exact_info["steps_done"] == 20
    assert modelled * 0.9 <= fast_info["inference_seconds"] <= modelled * 1.3 + HICCUP
    assert exact_info["inference_seconds"] >= 20 * STEP * 0.9
    assert fast_wall < exact_wall


def test_fast_mode_flags_are_the_workers_and_bad_ones_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    base = ["sim-worker", "--gpu-model", "A100", "--step-seconds", "1"]
    with pytest.raises(SystemExit) as exited:
        parser().parse_args([*base, "--fast-mode", "turbo"])
    assert exited.value.code == 2
    assert "argument --fast-mode: invalid choice: 'turbo'" in capsys.readouterr().err
    args = parser().parse_args([*base, "--fast-mode", "deepcache", "--deepcache-branch", "3"])
    with pytest.raises(ConfigError, match="deepcache_branch must be below SDXL's 3 down blocks, got 3"):
        run_sim_worker(args)
