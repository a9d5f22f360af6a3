"""Hostile input: oversized bodies (413 before parsing, by Content-Length or counted as they stream),
stalled bodies (408), WebSocket messages over the cap, prompts of every kind (Unicode, control
characters, lone surrogates, 10 MB), and slow-loris clients, against the worker's app (as a
sim-worker) and the gateway, both real servers on 127.0.0.1."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from sdxlpool._limits import DEFAULT_MAX_BODY_BYTES
from sdxlpool.gateway.settings import GatewaySettings
from sdxlpool.worker.settings import WorkerSettings
from tests.conftest import ServerThread
from tests.reliability.conftest import backend, gateway, sim_worker

PAST_THE_CAP = DEFAULT_MAX_BODY_BYTES + 1024 * 1024  # the default cap holds images; this does not fit


@pytest.fixture(params=["worker", "gateway"])
def target(request: pytest.FixtureRequest, sim: ServerThread, pool: ServerThread) -> str:
    return sim.url if request.param == "worker" else pool.url


def small(**extra: object) -> dict:
    return {"steps": 2, "width": 64, "height": 64, **extra}


def test_body_over_the_default_cap_is_413_by_content_length(target: str) -> None:
    started = time.monotonic()
    response = httpx.post(target + "/sdapi/v1/txt2img", json={"prompt": "x" * PAST_THE_CAP}, timeout=30)
    assert response.status_code == 413
    assert response.json()["error"] == "body_too_large"
    assert str(DEFAULT_MAX_BODY_BYTES) in response.json()["detail"]
    assert response.headers["connection"] == "close"  # the unread rest of the body is never read
    assert time.monotonic() - started < 20  # answered, not stuck (the client gives up at 30 s)


def test_chunked_body_over_the_cap_is_413_as_it_streams(target: str) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"prompt": "'
        for _ in range(PAST_THE_CAP // 1_000_000):  # past the cap, with no Content-Length
            yield b"y" * 1_000_000
        yield b'"}'

    response = httpx.post(target + "/sdapi/v1/txt2img", content=chunks(), headers={"content-type": "application/json"},
                          timeout=30)
    assert response.status_code == 413
    assert response.json()["error"] == "body_too_large"
    assert "streamed" in response.json()["detail"]


def test_prompt_over_max_prompt_chars_is_422_naming_the_field(target: str) -> None:
    response = httpx.post(target + "/sdapi/v1/txt2img", json=small(prompt="z" * 5000), timeout=30)
    assert response.status_code == 422
    assert response.json()["error"] == "invalid_request"
    assert response.json()["detail"].startswith("prompt: is 5000 characters")


@pytest.mark.parametrize("prompt", [
    "日本語のプロンプト, 🎨🖼️ a cat in the style of Hokusai",
    "RTL \u202eevil\u202c, zero width \u200b\u200d, combining e\u0301\u0301\u0301",
    "bell \x07 escape \x1b[31m red \x1b[0m, tab\t, newline\n, CR\r, DEL \x7f",
    "\U0010ffff private use \ue000 and BOM \ufeff",
])
def test_unicode_and_control_characters_within_limits_succeed(target: str, prompt: str) -> None:
    response = httpx.post(target + "/sdapi/v1/txt2img", json=small(prompt=prompt, negative_prompt=prompt),
                          timeout=60)
    assert response.status_code == 200, response.text
    assert json.loads(response.json()["info"])["prompt"] == prompt


@pytest.mark.parametrize(("raw", "detail"), [
    (b'{"prompt": "a\\u0000b"}', "prompt: contains a NUL character"),
    (b'{"prompt": "lone \\ud800 surrogate"}', "prompt: contains a lone surrogate"),
    (b'{"negative_prompt": "\\udfff"}', "negative_prompt: contains a lone surrogate"),
    (b'{"prompt": "\xff\xfe not UTF-8"}', "body: not valid UTF-8 JSON"),
    (b'{"prompt": ', "body: not valid JSON"),
    (b'["not", "an", "object"]', "body"),
])
def test_undecodable_or_invalid_text_is_a_clear_422(target: str, raw: bytes, detail: str) -> None:
    response = httpx.post(target + "/sdapi/v1/txt2img", content=raw, headers={"content-type": "application/json"},
                          timeout=30)
    assert response.status_code == 422, response.text
    assert response.json()["detail"].startswith(detail)


def test_the_body_cap_is_a_setting(tmp_path) -> None:
    with sim_worker(max_body_bytes=4096) as worker:
        worker.wait_ready()
        with gateway([backend(worker)], tmp_path, max_body_bytes=2048) as front:
            front.wait_ready()
            for url, cap in ((worker.url, 4096), (front.url, 2048)):
                over = httpx.post(url + "/sdapi/v1/txt2img", json=small(prompt="p" * cap), timeout=30)
                assert over.status_code == 413, url
                assert f"the limit is {cap} bytes" in over.json()["detail"]
                under = httpx.post(url + "/sdapi/v1/txt2img", json=small(prompt="p" * (cap // 4)), timeout=30)
                assert under.status_code == 200, url


def test_the_caps_come_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setenv("SDXLPOOL_MAX_BODY_BYTES", "65536")
    monkeypatch.setenv("SDXLPOOL_GATEWAY_MAX_BODY_BYTES", "32768")
    monkeypatch.setenv("SDXLPOOL_GATEWAY_CORS_ORIGINS", '["https://app.example"]')
    assert WorkerSettings(models=[tmp_path]).max_body_bytes == 65536
    settings = GatewaySettings(backends_file=tmp_path / "b.yaml")
    assert (settings.max_body_bytes, settings.cors_origins) == (32768, ["https://app.example"])


def test_a_stalled_body_is_408_and_the_server_goes_on(tmp_path) -> None:
    with sim_worker(body_timeout=1.0) as worker:
        worker.wait_ready()
        host, port = worker.url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=10) as stalled:
            stalled.sendall(b"POST /sdapi/v1/txt2img HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                            b"Content-Length: 100\r\n\r\n{\"prompt\": ")
            started = time.monotonic()
            answer = _read_all(stalled)
        assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
        assert b'"body_timeout"' in answer
        # At the 1 s body deadline, not at the client socket's 10 s (margin for a loaded 2-core machine).
        assert 0.9 < time.monotonic() - started < 8
        assert httpx.post(worker.url + "/sdapi/v1/txt2img", json=small(), timeout=30).status_code == 200


def test_websocket_messages_over_the_cap_close_the_socket(tmp_path) -> None:
    with sim_worker() as worker:
        worker.wait_ready()
        with gateway([backend(worker)], tmp_path, max_body_bytes=64 * 1024) as front:
            front.wait_ready()
            ws_url = front.url.replace("http://", "ws://") + "/v1/ws"
            with connect(ws_url, max_size=None) as ws:  # within the cap: a normal generation
                ws.send(json.dumps(small(prompt="fits")))
                events = [json.loads(ws.recv(timeout=30))]
                while events[-1]["event"] not in ("done", "error"):
                    events.append(json.loads(ws.recv(timeout=30)))
                assert events[-1]["event"] == "done"
            with connect(ws_url, max_size=None) as ws, pytest.raises(ConnectionClosed) as closed:
                ws.send(json.dumps({"prompt": "x" * (128 * 1024)}))
                ws.recv(timeout=10)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009  # message too big


def test_slow_loris_clients_do_not_block_others_and_are_dropped(tmp_path) -> None:
    """20 connections dribbling a header byte every 0.2 s: others are served at once meanwhile, and
    each slow one is closed at the header deadline (3 s here; 10 s by default).

    Bounds with room for a loaded 2-core machine that still tell the behaviour apart: served within
    2 s (blocked behind the slow ones would take until they are dropped, 2.5 s after the first
    request), dropped between 2.6 and 7 s (never dropped would run to the 10 s socket timeout)."""
    with sim_worker(server={"header_timeout": 3.0}) as worker:
        worker.wait_ready()
        host, port = worker.url.removeprefix("http://").split(":")
        dropped_after: list[float] = []
        stop = threading.Event()

        def slow_client() -> None:
            with socket.create_connection((host, int(port)), timeout=10) as conn:
                started = time.monotonic()
                try:
                    for byte in b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 200:
                        if stop.is_set():
                            return
                        conn.sendall(bytes([byte]))
                        time.sleep(0.2)
                        conn.setblocking(False)
                        try:
                            if conn.recv(1) == b"":
                                break  # closed by the server
                        except BlockingIOError:
                            pass
                        finally:
                            conn.setblocking(True)
                except OSError:  # reset by the server
                    pass
                dropped_after.append(time.monotonic() - started)

        slow = [threading.Thread(target=slow_client, daemon=True) for _ in range(20)]
        for thread in slow:
            thread.start()
        time.sleep(0.5)
        latencies = []
        with httpx.Client(base_url=worker.url, timeout=10) as client:
            for _ in range(10):
                started = time.monotonic()
                assert client.post("/sdapi/v1/txt2img", json=small()).status_code == 200
                assert client.get("/healthz").status_code == 200
                latencies.append(time.monotonic() - started)
        for thread in slow:
            thread.join(timeout=15)
        stop.set()
        assert max(latencies) < 2.0, latencies
        assert len(dropped_after) == 20
        assert all(2.6 < seconds < 7.0 for seconds in dropped_after), dropped_after


def test_a_silent_connection_is_dropped_at_the_header_deadline() -> None:
    with sim_worker(server={"header_timeout": 1.0}) as worker:
        worker.wait_ready()
        host, port = worker.url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=10) as silent:
            started = time.monotonic()
            assert silent.recv(1) == b""  # closed without a byte sent either way
            assert 0.8 < time.monotonic() - started < 8  # the 1 s deadline, not the socket's 10 s


def _read_all(conn: socket.socket) -> bytes:
    data = b""
    while chunk := conn.recv(65536):
        data += chunk
    return data


@pytest.mark.parametrize("path", [
    "/v1/generate",
    "/sdapi/v1/txt2img",
])
@pytest.mark.parametrize("gpus", [True, 3.5, 7, {"A100": 1}, ["A100", 5]])
def test_gpus_of_the_wrong_type_is_422(pool: ServerThread, path: str, gpus: object) -> None:
    """Found by fuzzing: `"gpus": true` (or a number) was a 500, the service iterating over it."""
    response = httpx.post(pool.url + path, json=small(gpus=gpus), timeout=30)
    assert response.status_code == 422, response.text
    assert response.json()["detail"].startswith("gpus: ")


def test_gpus_of_the_wrong_type_on_the_websocket_is_an_error_event(pool: ServerThread) -> None:
    with connect(pool.url.replace("http://", "ws://") + "/v1/ws") as ws:
        ws.send(json.dumps(small(gpus=True, id=7)))
        event = json.loads(ws.recv(timeout=10))
        assert (event["event"], event["status"], event["id"]) == ("error", 422, 7)
        ws.send(json.dumps(small(gpus=["A100"])))  # the connection goes on
        events = [json.loads(ws.recv(timeout=30))]
        while events[-1]["event"] not in ("done", "error"):
            events.append(json.loads(ws.recv(timeout=30)))
        assert events[-1]["event"] == "done"


def test_405_names_every_method_of_the_path(sim: ServerThread) -> None:
    """Found by fuzzing: Starlette's Allow listed only the first route's methods (GET for /options)."""
    response = httpx.request("DELETE", sim.url + "/sdapi/v1/options")
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, POST"
    assert response.json()["error"] == "method_not_allowed"


def test_truncated_json_names_the_body_not_a_character_offset(sim: ServerThread) -> None:
    response = httpx.post(sim.url + "/sdapi/v1/txt2img", content=b'{"prompt": "a', timeout=10,
                          headers={"content-type": "application/json"})
    assert response.status_code == 422
    assert response.json()["detail"].startswith("body: not valid JSON")


def test_the_header_deadline_leaves_websockets_and_keep_alive_alone(tmp_path) -> None:
    with sim_worker() as worker:
        worker.wait_ready()
        with gateway([backend(worker)], tmp_path, server={"header_timeout": 0.5}) as front:
            front.wait_ready()
            with connect(front.url.replace("http://", "ws://") + "/v1/ws") as ws:
                time.sleep(1.5)  # three deadlines: an open WebSocket is not a request being sent
                ws.send(json.dumps(small(prompt="late")))
                events = [json.loads(ws.recv(timeout=30))]
                while events[-1]["event"] not in ("done", "error"):
                    events.append(json.loads(ws.recv(timeout=30)))
                assert events[-1]["event"] == "done"
            with httpx.Client(base_url=front.url, timeout=10) as client:  # one kept-alive connection
                for _ in range(3):
                    assert client.get("/healthz").status_code == 200
                    time.sleep(0.3)


def test_cli_flags_reach_the_settings(monkeypatch: pytest.MonkeyPatch, tiny_model, tmp_path) -> None:
    """`--max-body-bytes` (worker and gateway), `--log-prompts`, `--cors-origin`: each lands in the
    settings, and the body cap also caps WebSocket messages."""
    import sdxlpool._serving
    import sdxlpool.gateway.app
    import sdxlpool.worker.app
    from sdxlpool.cli import main

    served: list[tuple[object, int | None]] = []

    drains: list[float | None] = []

    def fake_serve(command, make_app, *, host, port, max_message_bytes=None, drain_seconds=None):
        served.append((make_app(lambda exc: None), max_message_bytes))
        drains.append(drain_seconds)
        return 0

    monkeypatch.setattr(sdxlpool._serving, "serve", fake_serve)
    monkeypatch.setattr(sdxlpool.gateway.app, "create_app", lambda settings: settings)
    monkeypatch.setattr(sdxlpool.worker.app, "create_app", lambda settings, **_: settings)
    backends = tmp_path / "backends.yaml"
    backends.write_text("backends: []\n")
    assert main(["gateway", "--backends", str(backends), "--max-body-bytes", "4096", "--cors-origin",
                 "https://a.example", "--cors-origin", "https://b.example"]) == 0
    assert main(["worker", "--model", str(tiny_model.base), "--max-body-bytes", "8192", "--log-prompts"]) == 0
    (gateway_settings, gateway_cap), (worker_settings, worker_cap) = served
    assert (gateway_settings.max_body_bytes, gateway_cap) == (4096, 4096)
    assert gateway_settings.cors_origins == ["https://a.example", "https://b.example"]
    assert (worker_settings.max_body_bytes, worker_cap, worker_settings.log_prompts) == (8192, 8192, True)
    assert drains == [None, worker_settings.drain_seconds]  # only the worker drains its jobs on SIGTERM
    assert GatewaySettings(backends_file=backends).cors_origins == []  # closed unless asked
