"""Gateway behaviour that needs workers with exact speeds and faults: `sdxlpool sim-worker`s."""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from sdxlpool.api import metric_names as mn
from tests.gateway.conftest import body, start_gateway, write_backends


def burst(gateway, count: int) -> list[str]:
    """`count` requests at once through the gateway; the workers that served them."""
    served: list[str] = []
    threads = [threading.Thread(target=lambda i=i: served.append(httpx.post(
        gateway.url + "/sdapi/v1/txt2img", json=body(seed=i), timeout=60).headers["X-SDXL-Worker"]))
        for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return served


@pytest.mark.parametrize("sims", [[("fast-1", 0.05), ("fast-2", 0.05)]], indirect=True)
def test_a_burst_spreads_over_workers_of_equal_speed(sims, tmp_path) -> None:
    path = write_backends(tmp_path / "b.yaml", [s.backend() for s in sims])
    with start_gateway(path) as gateway:
        gateway.wait_ready()
        served = burst(gateway, 4)
        assert sorted(served) == ["fast-1", "fast-1", "fast-2", "fast-2"]


@pytest.mark.parametrize("sims", [[("hung", 0.001, "--hang-rate", "1"), ("good", 0.05)]], indirect=True)
def test_a_hung_worker_hits_the_progress_deadline_and_the_request_fails_over(sims, tmp_path) -> None:
    path = write_backends(tmp_path / "b.yaml", [s.backend() for s in sims])
    with start_gateway(path, progress_deadline=2.0) as gateway:
        gateway.wait_ready()
        started = time.monotonic()
        response = httpx.post(gateway.url + "/sdapi/v1/txt2img", json=body(seed=5), timeout=60)
        elapsed = time.monotonic() - started
        assert response.status_code == 200, response.text
        # The hung worker looked fastest, so it was tried first; the deadline moved the request on.
        assert response.headers["X-SDXL-Attempts"] == "2" and response.headers["X-SDXL-Worker"] == "good"
        assert 2.0 <= elapsed < 20
        hung = httpx.get(sims[0].url + "/metrics").text
        assert f"{mn.WORKER_INFLIGHT} 0.0" in hung  # the gateway interrupted the hung job


@pytest.mark.parametrize("sims", [[("broken", 0.001, "--fail-rate", "1"), ("good", 0.05)]], indirect=True)
def test_a_failing_worker_is_skipped_and_marked_down(sims, tmp_path) -> None:
    path = write_backends(tmp_path / "b.yaml", [s.backend() for s in sims])
    with start_gateway(path) as gateway:
        gateway.wait_ready()
        first = httpx.post(gateway.url + "/sdapi/v1/txt2img", json=body(seed=1), timeout=60)
        assert first.status_code == 200 and first.headers["X-SDXL-Worker"] == "good"
        assert first.headers["X-SDXL-Attempts"] == "2"
        view = {b["name"]: b for b in httpx.get(gateway.url + "/v1/backends").json()["backends"]}
        assert view["broken"]["available"] is False  # circuit open: the next request goes straight to good
        second = httpx.post(gateway.url + "/sdapi/v1/txt2img", json=body(seed=2), timeout=60)
        assert second.headers["X-SDXL-Attempts"] == "1" and second.headers["X-SDXL-Worker"] == "good"


@pytest.mark.parametrize("sims", [[("only", 0.05)]], indirect=True)
def test_all_workers_down_is_503(sims, tmp_path) -> None:
    path = write_backends(tmp_path / "b.yaml", [s.backend() for s in sims])
    with start_gateway(path) as gateway:
        gateway.wait_ready()
        sims[0].stop()
        time.sleep(0.5)  # a few failed scrapes open the circuit
        response = httpx.post(gateway.url + "/sdapi/v1/txt2img", json=body(), timeout=30)
        assert response.status_code == 503, response.text
        assert response.json()["error"] == "no_backend"


@pytest.mark.parametrize("sims", [[("slow", 0.5)]], indirect=True)
def test_a_client_that_goes_away_stops_its_job_on_the_worker(sims, tmp_path) -> None:
    path = write_backends(tmp_path / "b.yaml", [s.backend() for s in sims])
    with start_gateway(path) as gateway:
        gateway.wait_ready()
        with pytest.raises(httpx.TimeoutException):  # 10 steps x 0.5 s: the client gives up after 1 s
            httpx.post(gateway.url + "/sdapi/v1/txt2img", json=body(seed=3), timeout=1.0)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            metrics = httpx.get(sims[0].url + "/metrics").text
            if f"{mn.WORKER_INFLIGHT} 0.0" in metrics:
                break
            time.sleep(0.1)
        else:
            pytest.fail("the worker kept generating for a client that left")
        assert f'{mn.WORKER_REQUESTS}_total{{outcome="cancelled"}} 1.0' in metrics


@pytest.mark.parametrize("sims", [[("plain-a", 0.05), ("plain-b", 0.05)]], indirect=True)
def test_plain_a1111_backends_are_balanced_by_the_gateways_own_in_flight_count(sims, tmp_path) -> None:
    """`type: a1111` servers expose no /metrics: the gateway counts what it sent them."""
    path = write_backends(tmp_path / "b.yaml", [{**s.backend(), "type": "a1111"} for s in sims])
    with start_gateway(path) as gateway:
        gateway.wait_ready()
        view = httpx.get(gateway.url + "/v1/backends").json()["backends"]
        assert {b["type"] for b in view} == {"a1111"} and all(b["available"] for b in view)
        served = burst(gateway, 4)
        assert sorted(served) == ["plain-a", "plain-a", "plain-b", "plain-b"]
        sims[0].stop()  # a dead plain server is noticed by its progress probe
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            view = {b["name"]: b for b in httpx.get(gateway.url + "/v1/backends").json()["backends"]}
            if not view["plain-a"]["available"]:
                break
            time.sleep(0.1)
        assert not view["plain-a"]["available"]
