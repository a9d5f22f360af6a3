"""The real gateway in front of real tiny-model worker processes, all on 127.0.0.1."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from sdxlpool.api import metric_names as mn
from tests.gateway.conftest import (
    assert_failover_kept_the_seed,
    kill_the_one_running_it,
    start_gateway,
    write_backends,
)
from tests.worker.imaging import pixels


@pytest.fixture(scope="module")
def gateway(workers, tmp_path_factory) -> Iterator:
    path = write_backends(tmp_path_factory.mktemp("gw") / "backends.yaml", [w.backend() for w in workers.values()])
    with start_gateway(path) as server:
        server.wait_ready()
        server.backends_file = path
        yield server


def post(gateway, body: dict, gpus: str | None = None, timeout: float = 120) -> httpx.Response:
    headers = {"X-SDXL-GPU": gpus} if gpus else {}
    return httpx.post(gateway.url + "/sdapi/v1/txt2img", json={"prompt": "a fox", "steps": 4, **body},
                      headers=headers, timeout=timeout)


def test_gpu_choice_is_honoured(gateway, workers) -> None:
    for _ in range(4):
        response = post(gateway, {"seed": 1}, gpus="RTX-3090")
        assert response.status_code == 200, response.text
        assert response.headers["X-SDXL-GPU-Model"] == "rtx-3090"
        assert response.headers["X-SDXL-Worker"] == "rtx-1"
        assert response.headers["X-SDXL-Provider"] == "provider-rtx-1"
        assert response.headers["X-SDXL-Location"] == "rack-rtx-1"
        assert float(response.headers["X-SDXL-Inference-Seconds"]) > 0
    # "A100" admits both A100 workers, whatever their memory variant.
    served = {post(gateway, {"seed": 2}, gpus="A100").headers["X-SDXL-Worker"] for _ in range(6)}
    assert served <= {"a100-1", "a100-2"}
    info = json.loads(post(gateway, {"seed": 3}, gpus="a100").json()["info"])
    assert info["sdxlpool"]["attempts"] == 1
    assert info["sdxlpool"]["gpu_model"] in {"a100", "a100-80gb"}


def test_no_allowed_backend_is_503_naming_the_models(gateway) -> None:
    response = post(gateway, {}, gpus="H100")
    assert response.status_code == 503
    assert response.json()["error"] == "no_backend"
    assert "h100" in response.json()["detail"].lower()
    bad = post(gateway, {}, gpus="banana")
    assert bad.status_code == 422 and bad.json()["detail"].startswith("gpus:")


def test_invalid_input_is_rejected_before_routing(gateway) -> None:
    response = post(gateway, {"steps": 10_000})
    assert response.status_code == 422 and "steps" in response.json()["detail"]
    response = httpx.post(gateway.url + "/sdapi/v1/txt2img", content=b"{nope", timeout=10,
                          headers={"content-type": "application/json"})
    assert response.status_code == 422


def test_concurrent_requests_all_complete_and_are_counted(gateway) -> None:
    """A burst through the gateway: every request served, attempts and outcomes in /metrics.

    (How a burst is spread over workers of equal speed is tested on the pure scheduler, where the
    speeds are exact; real CPU workers sharing two cores measure very different step times.)
    """
    results: list[int] = []

    def one(seed: int) -> None:
        results.append(post(gateway, {"seed": seed, "steps": 4}, gpus="A100").status_code)

    threads = [threading.Thread(target=one, args=(seed,)) for seed in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert results == [200] * 4
    metrics = httpx.get(gateway.url + "/metrics").text
    assert f'{mn.GATEWAY_REQUESTS}_total{{gpu_model="a100' in metrics


def test_pool_endpoints_and_backends_view(gateway) -> None:
    names = {s["name"] for s in httpx.get(gateway.url + "/sdapi/v1/samplers").json()}
    assert "DPM++ 2M" in names
    view = httpx.get(gateway.url + "/v1/backends").json()["backends"]
    assert {b["name"] for b in view} == {"a100-1", "a100-2", "rtx-1"}
    assert all(b["available"] and b["ready"] and b["stepSeconds"] > 0 for b in view)
    metrics = httpx.get(gateway.url + "/metrics").text
    assert f'{mn.GATEWAY_BACKEND_UP}{{backend="rtx-1"' in metrics
    assert f"{mn.GATEWAY_REQUESTS}_total" in metrics


def test_backends_file_reload(gateway, workers) -> None:
    path = gateway.backends_file
    write_backends(path, [workers["rtx-1"].backend()])
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if {b["name"] for b in httpx.get(gateway.url + "/v1/backends").json()["backends"]} == {"rtx-1"}:
                break
            time.sleep(0.1)
        else:
            pytest.fail("backends file change not picked up")
        assert post(gateway, {}, gpus="A100").status_code == 503
    finally:
        write_backends(path, [w.backend() for w in workers.values()])
        time.sleep(1)


# Last in this module on purpose: it kills one of the module's workers.
def test_a_worker_killed_mid_request_fails_over_with_the_same_seed(workers, tiny_model, tmp_path) -> None:
    a, b = workers["a100-1"], workers["a100-2"]
    path = write_backends(tmp_path / "two.yaml", [a.backend(), b.backend()])
    with start_gateway(path) as gateway:
        gateway.wait_ready()
        outcome: dict = {}
        body = {"prompt": "a fox, failed over", "seed": -1, "steps": 40, "width": 256, "height": 256,
                "sampler_name": "Euler"}
        thread = threading.Thread(target=lambda: outcome.update(response=post(gateway, body, gpus="A100")))
        thread.start()
        # Kill whichever worker took the request, mid-generation.
        victim = kill_the_one_running_it((a, b), timeout=30)
        thread.join(120)
        response = outcome["response"]
        survivor = b if victim is a else a
        assert response.status_code == 200, response.text
        assert response.headers["X-SDXL-Attempts"] == "2"
        assert response.headers["X-SDXL-Worker"] == survivor.name
        info = json.loads(response.json()["info"])
        # The seed was fixed before the first attempt: the survivor was sent the seed the victim was
        # (by the victim's own log), and made the image the victim would have.
        assert_failover_kept_the_seed({"steps": 4, **body}, info["seed"], response.json()["images"][0], victim.log,
                                      survivor.url)


def test_websocket_streams_a_real_workers_progress(gateway) -> None:
    """The tiny-model worker's own /progress, followed through the gateway: step k of n, then the PNG."""
    from tests.gateway.ws import websocket

    with websocket(gateway.url) as ws:
        ws.send({"prompt": "a fox", "steps": 24, "width": 256, "height": 256, "seed": 11, "sampler_name": "Euler",
                 "gpus": ["RTX 3090"]})
        events = ws.until_final(timeout=120)
    assert events[0]["event"] == "queued" and events[-1]["event"] == "done", events[-1]
    assigned = next(e for e in events if e["event"] == "assigned")
    assert (assigned["gpu_model"], assigned["provider"], assigned["location"]) == (
        "rtx-3090", "provider-rtx-1", "rack-rtx-1")
    steps = [(e["step"], e["steps"]) for e in events if e["event"] == "progress"]
    assert steps and {n for _, n in steps} == {24}
    assert [k for k, _ in steps] == sorted(k for k, _ in steps)
    done = events[-1]
    assert done["seed"] == 11 and done["worker"] == "rtx-1" and done["timings"]["inference_seconds"] > 0
    assert pixels(done["image"]).shape == (256, 256, 3)
