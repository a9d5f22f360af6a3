"""Gateway behaviour that needs workers with exact speeds and faults: `sdxlpool sim-worker`s."""

from __future__ import annotations

import json
import threading
import time

import httpx
import pytest

from sdxlpool.api import metric_names as mn
from tests.gateway.conftest import assert_failover_kept_the_seed, body, start_gateway, write_backends
from tests.polling import wait_for


def burst(gateway, count: int) -> list[str]:
    """`count` requests at once through the gateway; the workers that served them.

    At once: the threads are released together by a barrier, and each job lasts 2 s (40 steps at the
    sims' 0.05 s), far longer than a loaded machine staggers their sends. With 10 steps (0.5 s) a CI
    run once sent the last request after a worker had finished its first: 3 to one worker, 1 to the other."""
    served: list[str] = []
    together = threading.Barrier(count)

    def send(seed: int) -> None:
        together.wait(timeout=30)
        response = httpx.post(gateway.url + "/sdapi/v1/txt2img", json=body(seed=seed, steps=40), timeout=60)
        served.append(response.headers["X-SDXL-Worker"])

    threads = [threading.Thread(target=send, args=(i,)) for i in range(count)]
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


@pytest.mark.parametrize("sims", [[("batcher", 0.05, "--batch-max", "4"), ("single", 0.05)]], indirect=True)
def test_the_gateway_reads_each_workers_batch_max(sims, tmp_path) -> None:
    """A sim-worker's --batch-max reaches the gateway through /metrics (sdxl_worker_batch_max): what its
    completion_time scorer prices a batching worker's queue with. /v1/backends shows it."""
    batcher, _ = sims
    assert f"{mn.WORKER_BATCH_MAX} 4.0" in httpx.get(batcher.url + "/metrics").text
    path = write_backends(tmp_path / "b.yaml", [s.backend() for s in sims])
    with start_gateway(path) as gateway:
        gateway.wait_ready()
        view = wait_for(lambda: (v := {b["name"]: b for b in httpx.get(gateway.url + "/v1/backends").json()["backends"]})
                        and all(b["ready"] for b in v.values()) and v)
        assert (view["batcher"]["batchMax"], view["single"]["batchMax"]) == (4, 1)


@pytest.mark.parametrize("sims", [[("hung", 0.001, "--hang-rate", "1"), ("good", 0.05)]], indirect=True)
def test_a_hung_worker_hits_the_progress_deadline_and_the_request_fails_over(sims, tmp_path) -> None:
    hung, good = sims
    path = write_backends(tmp_path / "b.yaml", [s.backend() for s in sims])
    with start_gateway(path, progress_deadline=2.0) as gateway:
        gateway.wait_ready()
        request = body(prompt="hung, then failed over", seed=-1)
        started = time.monotonic()
        response = httpx.post(gateway.url + "/sdapi/v1/txt2img", json=request, timeout=60)
        elapsed = time.monotonic() - started
        assert response.status_code == 200, response.text
        # The hung worker looked fastest, so it was tried first; the deadline moved the request on,
        # with the seed the hung attempt was sent.
        assert response.headers["X-SDXL-Attempts"] == "2" and response.headers["X-SDXL-Worker"] == "good"
        assert 2.0 <= elapsed < 20
        answer = response.json()
        assert_failover_kept_the_seed(request, json.loads(answer["info"])["seed"], answer["images"][0], hung.log,
                                      good.url)
        # The gateway interrupted the hung job (in the background, after it failed over).
        wait_for(lambda: f"{mn.WORKER_INFLIGHT} 0.0" in httpx.get(hung.url + "/metrics").text, timeout=10)


@pytest.mark.parametrize("sims", [[("broken", 0.001, "--fail-rate", "1"), ("good", 0.05)]], indirect=True)
def test_a_failing_worker_is_skipped_and_marked_down(sims, tmp_path) -> None:
    broken, good = sims
    path = write_backends(tmp_path / "b.yaml", [s.backend() for s in sims])
    with start_gateway(path) as gateway:
        gateway.wait_ready()
        request = body(prompt="failed, then failed over", seed=-1)
        first = httpx.post(gateway.url + "/sdapi/v1/txt2img", json=request, timeout=60)
        assert first.status_code == 200 and first.headers["X-SDXL-Worker"] == "good"
        assert first.headers["X-SDXL-Attempts"] == "2"
        view = {b["name"]: b for b in httpx.get(gateway.url + "/v1/backends").json()["backends"]}
        assert view["broken"]["available"] is False  # circuit open: the next request goes straight to good
        second = httpx.post(gateway.url + "/sdapi/v1/txt2img", json=body(seed=2), timeout=60)
        assert second.headers["X-SDXL-Attempts"] == "1" and second.headers["X-SDXL-Worker"] == "good"
    # (Checked last: the circuit of "broken" reopens for a trial after a while.)
    answer = first.json()
    assert_failover_kept_the_seed(request, json.loads(answer["info"])["seed"], answer["images"][0], broken.log,
                                  good.url)


@pytest.mark.parametrize("sims", [[("only", 0.05)]], indirect=True)
def test_all_workers_down_is_503(sims, tmp_path) -> None:
    path = write_backends(tmp_path / "b.yaml", [s.backend() for s in sims])
    with start_gateway(path) as gateway:
        gateway.wait_ready()
        sims[0].stop()
        # A few failed scrapes open the circuit.
        wait_for(lambda: not httpx.get(gateway.url + "/v1/backends").json()["backends"][0]["available"],
                 timeout=10)
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
        wait_for(lambda: f"{mn.WORKER_INFLIGHT} 0.0" in httpx.get(sims[0].url + "/metrics").text, timeout=10)
        metrics = httpx.get(sims[0].url + "/metrics").text
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
        wait_for(lambda: not next(b for b in httpx.get(gateway.url + "/v1/backends").json()["backends"]
                                  if b["name"] == "plain-a")["available"], timeout=10)
