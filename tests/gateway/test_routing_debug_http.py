"""`X-SDXL-Debug-Routing: 1` through a real gateway in front of sim-workers: why each worker was chosen."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.gateway.conftest import body, start_gateway, write_backends
from tests.gateway.ws import websocket

DEBUG = {"X-SDXL-Debug-Routing": "1"}
TWO_MODELS = [("a100", 0.01), ("rtx", 0.01, "--gpu-model", "RTX-3090")]
FILTERS = ["gpu_allowed", "not_tried", "available", "freshness"]


def routing_of_info(response: httpx.Response) -> list[dict] | None:
    return json.loads(response.json()["info"])["sdxlpool"].get("routing")


@pytest.mark.parametrize("sims", [TWO_MODELS], indirect=True)
def test_the_decision_is_shown_on_request_only(sims, tmp_path) -> None:
    path = write_backends(tmp_path / "b.yaml", [s.backend() for s in sims])
    with start_gateway(path) as gateway:
        gateway.wait_ready()
        url = gateway.url

        # A1111 route: in info.sdxlpool.routing, one decision per attempt.
        answer = httpx.post(url + "/sdapi/v1/txt2img", json=body(seed=1, gpus=["RTX 3090", "A100"]), headers=DEBUG,
                            timeout=30)
        assert answer.status_code == 200, answer.text
        (decision,) = routing_of_info(answer) or []
        assert decision["attempt"] == 1 and decision["picked"] == answer.headers["X-SDXL-Worker"]
        assert sorted(decision["candidates"]) == ["a100", "rtx"]
        assert [step["filter"] for step in decision["filters"]] == FILTERS
        assert set(decision["scores"]) == {"completion_time", "preference", "lora_affinity"} == set(decision["weights"])
        assert decision["scores"]["preference"] == {"rtx": 1.0, "a100": 0.5}  # the order asked for
        assert set(decision["totals"]) == {"a100", "rtx"} and decision["emptied_by"] is None
        plain = httpx.post(url + "/sdapi/v1/txt2img", json=body(seed=1), timeout=30)
        assert plain.status_code == 200 and routing_of_info(plain) is None

        # Native API: `routing` in the result, by the header or by the field.
        for extra, headers in (({}, DEBUG), ({"debug_routing": True}, {})):
            native = httpx.post(url + "/v1/generate", json=body(gpus=["A100"], **extra), headers=headers, timeout=30)
            assert native.status_code == 200, native.text
            (decision,) = native.json()["routing"]
            assert decision["picked"] == "a100" and decision["filters"][0] == {"filter": "gpu_allowed",
                                                                               "kept": ["a100"]}
        assert "routing" not in httpx.post(url + "/v1/generate", json=body(), timeout=30).json()

        # No backend: the same error, plus the decision naming the filter that emptied the set.
        for route in ("/sdapi/v1/txt2img", "/v1/generate"):
            none = httpx.post(url + route, json=body(gpus=["H100"]), headers=DEBUG, timeout=30)
            assert none.status_code == 503 and none.json()["error"] == "no_backend"
            assert "after the gpu_allowed filter" in none.json()["detail"]
            (decision,) = none.json()["routing"]
            assert decision["emptied_by"] == "gpu_allowed" and decision["filters"] == [
                {"filter": "gpu_allowed", "kept": []}]
            assert "routing" not in httpx.post(url + route, json=body(gpus=["H100"]), timeout=30).json()

        # A bad switch is named.
        bad = httpx.post(url + "/sdapi/v1/txt2img", json=body(), headers={"X-SDXL-Debug-Routing": "maybe"},
                         timeout=30)
        assert bad.status_code == 422 and bad.json()["detail"].startswith("X-SDXL-Debug-Routing:")
        bad = httpx.post(url + "/v1/generate", json=body(debug_routing="yes"), timeout=30)
        assert bad.status_code == 422 and bad.json()["detail"].startswith("debug_routing:")

        # WebSocket: the field on the request.
        with websocket(url) as ws:
            ws.send(body(gpus=["RTX-3090"], debug_routing=True))
            done = ws.until_final()[-1]
            assert done["event"] == "done" and done["routing"][0]["picked"] == "rtx"
            ws.send(body(gpus=["H100"], debug_routing=True))
            error = ws.until_final()[-1]
            assert error["error"] == "no_backend" and error["routing"][0]["emptied_by"] == "gpu_allowed"
            ws.send(body())
            assert "routing" not in ws.until_final()[-1]


@pytest.mark.parametrize("sims", [[("broken", 0.001, "--fail-rate", "1", "--gpu-model", "RTX-3090"),
                                   ("good", 0.01)]], indirect=True)
def test_a_failover_shows_every_attempts_decision(sims, tmp_path) -> None:
    path = write_backends(tmp_path / "b.yaml", [s.backend() for s in sims])
    with start_gateway(path) as gateway:
        gateway.wait_ready()
        answer = httpx.post(gateway.url + "/sdapi/v1/txt2img", json=body(seed=2, gpus=["RTX-3090", "A100"]),
                            headers=DEBUG, timeout=30)
        assert answer.status_code == 200 and answer.headers["X-SDXL-Attempts"] == "2", answer.text
        first, second = routing_of_info(answer) or []
        assert (first["attempt"], first["picked"]) == (1, "broken")
        assert (second["attempt"], second["picked"]) == (2, "good")
        assert {"filter": "not_tried", "kept": ["good"]} in second["filters"]  # the broken one is out
