"""The native API in front of sim-workers: POST /v1/generate (JSON and NDJSON) and WebSocket /v1/ws.

Events (docs/reference/http.md, sdxlpool/gateway/events.py): queued -> assigned {gpu_model, provider, location} -> progress {step, steps}
from the worker's /progress -> done {image, timings} or error.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest
from websockets.exceptions import ConnectionClosed

from sdxlpool.api import metric_names as mn
from tests.gateway.conftest import assert_failover_kept_the_seed, body, start_gateway, write_backends
from tests.gateway.ws import websocket
from tests.polling import wait_for

TWO_MODELS = [("a100", 0.02), ("rtx", 0.02, "--gpu-model", "RTX-3090")]


@contextmanager
def connected(backends_file) -> Iterator[tuple]:
    """A gateway over `backends_file`, ready, and a WebSocket to it."""
    with start_gateway(backends_file) as gateway:
        gateway.wait_ready()
        with websocket(gateway.url) as ws:
            yield gateway, ws


def kinds(events: list[dict]) -> list[str]:
    """The event names with repeated progress collapsed: ["queued", "assigned", "progress", "done"]."""
    out: list[str] = []
    for event in events:
        if not out or event["event"] != out[-1]:
            out.append(event["event"])
    return out


def assert_png(image: str) -> None:
    assert base64.b64decode(image).startswith(b"\x89PNG\r\n\x1a\n")


def inflight(url: str) -> float:
    for line in httpx.get(url + "/metrics", timeout=5).text.splitlines():
        if line.startswith(f"{mn.WORKER_INFLIGHT} "):
            return float(line.split()[1])
    raise AssertionError(f"no {mn.WORKER_INFLIGHT}")


@pytest.mark.parametrize("sims", [TWO_MODELS], indirect=True)
def test_generate_returns_the_image_and_where_it_ran(sims, tmp_path) -> None:
    path = write_backends(tmp_path / "b.yaml", [s.backend() for s in sims])
    with start_gateway(path) as gateway:
        gateway.wait_ready()
        for gpus, worker in ((["RTX 3090"], "rtx"), (["a100"], "a100"), ("RTX-3090", "rtx")):
            response = httpx.post(gateway.url + "/v1/generate", json=body(seed=42, gpus=gpus), timeout=30)
            assert response.status_code == 200, response.text
            result = response.json()
            assert result["worker"] == worker and response.headers["X-SDXL-Worker"] == worker
            assert result["provider"] == f"provider-{worker}" and result["location"] == f"rack-{worker}"
            assert result["seed"] == 42 and result["attempts"] == 1
            assert_png(result["image"]) and result["images"] == [result["image"]]
            timings = result["timings"]
            assert timings["inference_seconds"] > 0 and timings["total_seconds"] >= timings["inference_seconds"]
            assert result["info"]["sdxlpool"]["worker"] == worker
        # Errors carry the HTTP API's codes.
        bad = httpx.post(gateway.url + "/v1/generate", json=body(steps="many"), timeout=30)
        assert bad.status_code == 422 and bad.json()["detail"].startswith("steps:")
        none = httpx.post(gateway.url + "/v1/generate", json=body(gpus=["H100"]), timeout=30)
        assert none.status_code == 503 and "h100" in none.json()["detail"].lower()
        unknown = httpx.post(gateway.url + "/v1/generate", json=body(sampler_name="Nope"), timeout=30)
        assert unknown.status_code == 404 and "Nope" in unknown.json()["detail"]


@pytest.mark.parametrize("sims", [[("slow", 0.1)]], indirect=True)
def test_generate_streams_ndjson_events(sims, tmp_path) -> None:
    path = write_backends(tmp_path / "b.yaml", [s.backend() for s in sims])
    with start_gateway(path) as gateway:
        gateway.wait_ready()
        events = []
        with httpx.stream("POST", gateway.url + "/v1/generate", json=body(seed=7, steps=20), timeout=30,
                          headers={"Accept": "application/x-ndjson"}) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("application/x-ndjson")
            events = [json.loads(line) for line in response.iter_lines() if line]
        assert kinds(events) == ["queued", "assigned", "progress", "done"]
        assigned = events[1]
        assert (assigned["gpu_model"], assigned["worker"], assigned["attempt"]) == ("a100", "slow", 1)
        steps = [(e["step"], e["steps"]) for e in events if e["event"] == "progress"]
        assert len(steps) >= 3 and {n for _, n in steps} == {20}  # 2 s of work, polled every 0.25 s
        assert [k for k, _ in steps] == sorted(k for k, _ in steps)
        assert events[-1]["seed"] == 7
        assert_png(events[-1]["image"])


@pytest.mark.parametrize("sims", [[("slow", 0.1)]], indirect=True)
def test_websocket_session(sims, tmp_path) -> None:
    """One socket: a generation with events tagged by its id, a bad message that does not end the
    session, an invalid field, a request while busy, a cancel, then another generation."""
    path = write_backends(tmp_path / "b.yaml", [s.backend() for s in sims])
    with connected(path) as (gateway, ws):
        ws.send(body(seed=3, steps=10, id="first"))
        events = ws.until_final()
        assert kinds(events) == ["queued", "assigned", "progress", "done"]
        assert {e["id"] for e in events} == {"first"}
        done = events[-1]
        assert done["seed"] == 3 and done["gpu_model"] == "a100" and done["timings"]["inference_seconds"] > 0

        ws.send("not json")
        assert ws.next()["status"] == 422
        ws.send(body(steps=100_000, id="huge"))
        error = ws.next()
        assert (error["event"], error["status"], error["id"]) == ("error", 422, "huge") and "steps" in error["detail"]

        ws.send(body(seed=4, steps=50, id="long"))  # 5 s of work
        assert ws.next()["event"] == "queued"
        ws.send(body(id="second"))
        busy = [e for e in (ws.next(), ws.next(), ws.next()) if e["event"] == "error"]
        assert busy and busy[0]["error"] == "busy" and busy[0]["id"] == "second"
        wait_for(lambda: inflight(sims[0].url) == 1, timeout=10)
        ws.send({"cancel": True})
        rest = ws.until_final()
        assert rest[-1]["error"] == "cancelled" and rest[-1]["id"] == "long"
        wait_for(lambda: inflight(sims[0].url) == 0, timeout=10)  # the worker stopped the job

        ws.send(body(seed=5, steps=2))
        assert ws.until_final()[-1]["event"] == "done"


@pytest.mark.parametrize("sims", [[("slow", 0.2)]], indirect=True)
def test_closing_the_websocket_stops_the_job_on_the_worker(sims, tmp_path) -> None:
    path = write_backends(tmp_path / "b.yaml", [s.backend() for s in sims])
    with start_gateway(path) as gateway:
        gateway.wait_ready()
        with websocket(gateway.url) as ws:
            ws.send(body(steps=100))  # 20 s of work
            assert ws.next()["event"] == "queued" and ws.next()["event"] == "assigned"
            wait_for(lambda: inflight(sims[0].url) == 1, timeout=10)
        started = time.monotonic()
        wait_for(lambda: inflight(sims[0].url) == 0, timeout=10)
        assert time.monotonic() - started < 5
        assert f'{mn.WORKER_REQUESTS}_total{{outcome="cancelled"}} 1.0' in httpx.get(sims[0].url + "/metrics").text


@pytest.mark.parametrize("sims", [[("broken", 0.001, "--fail-rate", "1", "--gpu-model", "RTX-3090"),
                                   ("good", 0.02)]], indirect=True)
def test_websocket_shows_the_failover(sims, tmp_path) -> None:
    """The preferred model's worker fails: a second `assigned` names the worker that took over, which
    made the image of the seed the first attempt was sent (`seed: -1`, fixed by the gateway)."""
    broken, good = sims
    path = write_backends(tmp_path / "b.yaml", [s.backend() for s in sims])
    request = body(prompt="failed over", seed=-1)
    with connected(path) as (gateway, ws):
        ws.send({**request, "gpus": ["RTX-3090", "A100"]})
        events = ws.until_final()
        assigned = [(e["worker"], e["attempt"]) for e in events if e["event"] == "assigned"]
        assert assigned == [("broken", 1), ("good", 2)]
        done = events[-1]
        assert done["event"] == "done" and done["attempts"] == 2
    assert_failover_kept_the_seed(request, done["seed"], done["image"], broken.log, good.url)


@pytest.mark.parametrize("sims", [[("only", 0.02)]], indirect=True)
def test_websocket_reports_no_backend_and_the_socket_survives_a_closed_worker(sims, tmp_path) -> None:
    path = write_backends(tmp_path / "b.yaml", [s.backend() for s in sims])
    with connected(path) as (gateway, ws):
        ws.send(body(gpus=["H100"]))
        error = ws.until_final()[-1]
        assert (error["event"], error["status"], error["error"]) == ("error", 503, "no_backend")
        sims[0].stop()
        wait_for(lambda: not httpx.get(gateway.url + "/v1/backends").json()["backends"][0]["available"])
        ws.send(body())
        final = ws.until_final()[-1]
        assert final["event"] == "error" and final["status"] in (502, 503)
        try:
            ws.send(body(gpus=["H100"]))
            assert ws.until_final()[-1]["status"] == 503
        except ConnectionClosed:
            pytest.fail("the gateway closed the socket after an error")


@pytest.mark.parametrize("sims", [[("batched", 0.1, "--batch-max", "2", "--batch-wait-ms", "1000")]], indirect=True)
def test_both_members_of_a_batch_stream_their_progress(sims, tmp_path) -> None:
    """Two requests the worker runs as one batch: each stream shows its own job's steps (the gateway
    asks /progress for its job by name; without it, only the batch's oldest member is described)."""
    import threading

    path = write_backends(tmp_path / "b.yaml", [s.backend() for s in sims])
    with start_gateway(path) as gateway:
        gateway.wait_ready()
        streams: dict[int, list[dict]] = {}

        def stream(seed: int) -> None:
            with httpx.stream("POST", gateway.url + "/v1/generate", json=body(seed=seed, steps=20), timeout=60,
                              headers={"Accept": "application/x-ndjson"}) as response:
                streams[seed] = [json.loads(line) for line in response.iter_lines() if line]

        threads = [threading.Thread(target=stream, args=(seed,)) for seed in (1, 2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        for seed, events in streams.items():
            assert events[-1]["event"] == "done", events
            assert events[-1]["info"]["sdxlpool"]["batch_images"] == 2, (seed, events[-1]["info"])
            steps = [(e["step"], e["steps"]) for e in events if e["event"] == "progress"]
            assert len(steps) >= 2 and {n for _, n in steps} == {20}, (seed, steps)
        assert sorted(streams) == [1, 2]
