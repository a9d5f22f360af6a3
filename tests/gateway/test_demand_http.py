"""The gateway's demand, as the autoscaler reads it: GET /v1/demand and the Prometheus series, over
real sim-workers of two GPU models with prices; and scale from zero (a request for a GPU model of
the pool with no worker waits for one to appear)."""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from sdxlpool.api import metric_names as mn
from tests.gateway.conftest import body, start_gateway, write_backends
from tests.gateway.ws import websocket
from tests.polling import metrics, wait_for

PRICES = {"A100": 1.5, "H100": 3.25}


def priced(sim) -> dict:
    return {**sim.backend(), "pricePerHour": PRICES[sim.gpu]}


def demand(gateway) -> dict:
    response = httpx.get(gateway.url + "/v1/demand", timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


@pytest.mark.parametrize("sims", [[("a100", 0.01, "--gpu-model", "A100"), ("h100", 0.02, "--gpu-model", "H100")]],
                         indirect=True)
def test_demand_per_class_and_the_models_workers_at_v1_demand_and_in_the_metrics(sims, tmp_path) -> None:
    path = write_backends(tmp_path / "b.yaml", [priced(s) for s in sims])
    with start_gateway(path, pool_gpus=["A100", "H100", "L40S"], latency_target=20.0,
                       demand_window=120.0) as gateway:
        gateway.wait_ready()
        # Both workers measured (the scraped step time is what the report's speeds are).
        wait_for(lambda: all(m["seconds_per_step"] for m in demand(gateway)["models"] if m["workers"]), timeout=30)
        sent = {"H100": 2, "h100, NVIDIA A100-SXM4-80GB": 1, None: 1}  # X-SDXL-GPU -> requests
        for header, count in sent.items():
            for i in range(count):
                headers = {"X-SDXL-GPU": header} if header else {}
                response = httpx.post(gateway.url + "/sdapi/v1/txt2img", json=body(steps=2, seed=i), headers=headers,
                                      timeout=60)
                assert response.status_code == 200, response.text
        bad = httpx.post(gateway.url + "/sdapi/v1/txt2img", json=body(steps=-1), timeout=60)
        assert bad.status_code == 422  # refused by its checks: no demand

        report = demand(gateway)
        assert report["window_seconds"] == 120.0
        classes = {tuple(c["allowed"]): c for c in report["classes"]}
        assert set(classes) == {(), ("a100-80gb", "h100"), ("h100",)}
        for allowed, count in (((), 1), (("a100-80gb", "h100"), 1), (("h100",), 2)):
            assert classes[allowed]["arrivals_per_second"] * 120 == pytest.approx(count)
            assert classes[allowed]["steps_per_second"] * 120 == pytest.approx(2.0 * count)  # 2 steps at 1024^2
            assert classes[allowed]["waiting"] == 0
        models = {m["gpu"]: m for m in report["models"]}
        assert set(models) == {"a100", "h100", "l40s"}
        assert (models["a100"]["workers"], models["a100"]["ready"], models["a100"]["price_per_hour"]) == (1, 1, 1.5)
        assert (models["h100"]["workers"], models["h100"]["ready"], models["h100"]["price_per_hour"]) == (1, 1, 3.25)
        assert models["h100"]["seconds_per_step"] == pytest.approx(0.02, rel=0.5)
        assert models["l40s"] == {"gpu": "l40s", "workers": 0, "ready": 0, "seconds_per_step": None,
                                  "pending_steps": 0.0, "price_per_hour": None}
        assert report["p95_seconds"] is not None and 0 < report["p95_seconds"] < 30

        seen = metrics(gateway.url)
        assert seen[f"{mn.GATEWAY_DEMAND_REQUESTS}_total{{allowed=h100}}"] == 2
        assert seen[f"{mn.GATEWAY_DEMAND_REQUESTS}_total{{allowed=a100-80gb,h100}}"] == 1
        assert seen[f"{mn.GATEWAY_DEMAND_REQUESTS}_total{{allowed=any}}"] == 1
        assert seen[f"{mn.GATEWAY_DEMAND_STEPS}_total{{allowed=h100}}"] == pytest.approx(4.0)
        assert seen[f"{mn.GATEWAY_MODEL_READY_WORKERS}{{gpu_model=h100}}"] == 1
        assert seen[f"{mn.GATEWAY_MODEL_READY_WORKERS}{{gpu_model=l40s}}"] == 0
        assert seen[f"{mn.GATEWAY_MODEL_SECONDS_PER_STEP}{{gpu_model=a100}}"] == pytest.approx(0.01, rel=0.5)
        assert f"{mn.GATEWAY_MODEL_SECONDS_PER_STEP}{{gpu_model=l40s}}" not in seen
        assert seen[f"{mn.GATEWAY_BACKEND_PRICE_PER_HOUR}{{backend=h100,gpu_model=h100,location=rack-h100,"
                    f"provider=provider-h100}}"] == 3.25
        assert seen[mn.GATEWAY_LATENCY_TARGET_SECONDS] == 20.0


@pytest.mark.parametrize("sims", [[("only", 0.01)]], indirect=True)
def test_without_a_latency_target_there_is_no_target_series(sims, tmp_path) -> None:
    path = write_backends(tmp_path / "b.yaml", [s.backend() for s in sims])
    with start_gateway(path) as gateway:
        gateway.wait_ready()
        seen = metrics(gateway.url)
        assert mn.GATEWAY_LATENCY_TARGET_SECONDS not in seen
        assert not any(key.startswith(mn.GATEWAY_BACKEND_PRICE_PER_HOUR) for key in seen)  # no price given
        assert [m["gpu"] for m in demand(gateway)["models"]] == ["a100"]


def post_in_background(gateway, headers: dict, **fields) -> tuple[threading.Thread, list[httpx.Response]]:
    answers: list[httpx.Response] = []
    thread = threading.Thread(target=lambda: answers.append(httpx.post(
        gateway.url + "/sdapi/v1/txt2img", json=body(steps=2, **fields), headers=headers, timeout=60)))
    thread.start()
    return thread, answers


def waiting_for(gateway, allowed: tuple[str, ...]) -> dict | None:
    """The class `allowed` of /v1/demand while a request of it waits, else None."""
    report = demand(gateway)
    found = next((c for c in report["classes"] if tuple(c["allowed"]) == allowed and c["waiting"]), None)
    return {**found, "models": {m["gpu"]: m for m in report["models"]}} if found else None


COLD = [("a100", 0.01, "--gpu-model", "A100"), ("h100", 0.01, "--gpu-model", "H100")]


@pytest.mark.parametrize("sims", [COLD], indirect=True)
def test_a_request_for_a_pool_model_with_no_worker_waits_until_one_is_up(sims, tmp_path) -> None:
    """Scale from zero: the H100 request waits in the gateway (its demand visible), an A100 request
    meanwhile is not held up behind it, and once an H100 worker joins the pool it is served."""
    a100, h100 = sims
    path = write_backends(tmp_path / "b.yaml", [a100.backend()])
    with start_gateway(path, pool_gpus=["A100", "H100"], queue_deadline=1.0) as gateway:
        gateway.wait_ready()
        thread, answers = post_in_background(gateway, {"X-SDXL-GPU": "H100"}, seed=7)
        waiting = wait_for(lambda: waiting_for(gateway, ("h100",)), timeout=10)
        assert (waiting["waiting"], waiting["waiting_steps"]) == (1, 2.0)
        assert (waiting["models"]["h100"]["workers"], waiting["models"]["h100"]["ready"]) == (0, 0)
        assert metrics(gateway.url)[f"{mn.GATEWAY_WAITING_STEPS}{{allowed=h100}}"] == 2.0
        offered = httpx.get(gateway.url + "/v1/pool", timeout=10).json()["models"]  # the web page's toggles
        assert {m["gpu_model"]: m["workers"] for m in offered} == {"a100": 1, "h100": 0}
        other = httpx.post(gateway.url + "/sdapi/v1/txt2img", json=body(steps=2), headers={"X-SDXL-GPU": "A100"},
                           timeout=30)
        assert other.status_code == 200 and other.headers["X-SDXL-Worker"] == "a100"
        # Past --queue-deadline: a request waiting for a worker to start is not "saturated".
        wait_for(lambda: (waiting_for(gateway, ("h100",)) or {}).get("oldest_wait_seconds", 0) >= 1.5, timeout=10)
        assert thread.is_alive()
        write_backends(path, [a100.backend(), h100.backend()])
        thread.join(30)
        assert answers and answers[0].status_code == 200, answers and answers[0].text
        assert answers[0].headers["X-SDXL-Worker"] == "h100"
        assert float(answers[0].headers["X-SDXL-Queue-Seconds"]) >= 1.5
        assert waiting_for(gateway, ("h100",)) is None  # no longer waiting


@pytest.mark.parametrize("sims", [COLD], indirect=True)
def test_the_websocket_says_a_worker_is_starting_before_it_is_assigned(sims, tmp_path) -> None:
    a100, h100 = sims
    path = write_backends(tmp_path / "b.yaml", [a100.backend()])
    with start_gateway(path, pool_gpus=["A100", "H100"]) as gateway:
        gateway.wait_ready()
        with websocket(gateway.url) as ws:
            ws.send({**body(steps=2), "gpus": ["H100"], "id": "cold"})
            assert ws.next(10)["event"] == "queued"
            starting = ws.next(10)
            assert starting["event"] == "starting" and starting["id"] == "cold"
            assert (starting["gpu_models"], starting["gpu_names"]) == (["h100"], ["H100"])
            assert 0 <= starting["waited_seconds"] < 5
            wait_for(lambda: waiting_for(gateway, ("h100",)), timeout=10)
            write_backends(path, [a100.backend(), h100.backend()])
            rest = ws.until_final(30)
        kinds = [event["event"] for event in rest]
        assert kinds[0] == "assigned" and kinds[-1] == "done" and "starting" not in kinds, kinds
        assert rest[0]["worker"] == "h100" and rest[-1]["gpu_model"] == "h100"


@pytest.mark.parametrize("sims", [[("a100", 0.01, "--gpu-model", "A100")]], indirect=True)
def test_no_worker_started_in_time_is_a_clear_503_and_a_model_outside_the_pool_one_at_once(sims, tmp_path) -> None:
    path = write_backends(tmp_path / "b.yaml", [s.backend() for s in sims])
    with start_gateway(path, pool_gpus=["A100", "H100"], cold_start_deadline=1.0) as gateway:
        gateway.wait_ready()
        started = time.monotonic()
        response = httpx.post(gateway.url + "/sdapi/v1/txt2img", json=body(steps=2),
                              headers={"X-SDXL-GPU": "H100"}, timeout=30)
        assert response.status_code == 503, response.text
        assert response.json()["error"] == "no_worker_started"
        assert "H100" in response.json()["detail"] and "within 1s" in response.json()["detail"]
        assert 1.0 <= time.monotonic() - started < 10
        # Not a model of the pool, none known: routing's immediate 503, as before.
        started = time.monotonic()
        response = httpx.post(gateway.url + "/sdapi/v1/txt2img", json=body(steps=2),
                              headers={"X-SDXL-GPU": "L40S"}, timeout=30)
        assert response.status_code == 503 and response.json()["error"] == "no_backend", response.text
        assert time.monotonic() - started < 0.9
        assert demand(gateway)["classes"] and all(c["waiting"] == 0 for c in demand(gateway)["classes"])
