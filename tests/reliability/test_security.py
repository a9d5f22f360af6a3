"""Security: CORS closed by default and open only to the configured origins; no request field or
header makes the gateway or a worker fetch a URL (SSRF); prompts are not logged unless enabled;
API keys and tokens never are; the CLI's server runs without an access log."""

from __future__ import annotations

import json
import logging
import signal
import socket
import threading
from collections.abc import Iterator

import httpx
import pytest
import uvicorn
import yaml
from websockets.sync.client import connect

from sdxlpool.gateway.api_keys import hash_key, new_key
from tests.conftest import ServerThread
from tests.reliability.conftest import backend, gateway, sim_worker

EVIL, APP = "https://evil.example", "https://app.example"
PREFLIGHT = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"}


def small(**extra: object) -> dict:
    return {"steps": 1, "width": 64, "height": 64, **extra}


# -- CORS -------------------------------------------------------------------------------------------

def test_cors_is_closed_by_default(pool: ServerThread) -> None:
    preflight = httpx.options(pool.url + "/sdapi/v1/txt2img", headers={"Origin": EVIL, **PREFLIGHT})
    assert preflight.status_code == 405
    simple = httpx.get(pool.url + "/v1/pool", headers={"Origin": EVIL})
    assert simple.status_code == 200
    for response in (preflight, simple):
        assert not [h for h in response.headers if h.lower().startswith("access-control-")], response.headers


def test_cors_opens_to_the_configured_origins_only(sim: ServerThread, tmp_path) -> None:
    with gateway([backend(sim)], tmp_path, cors_origins=[APP]) as front:
        front.wait_ready()
        allowed = httpx.options(front.url + "/sdapi/v1/txt2img", headers={"Origin": APP, **PREFLIGHT})
        assert allowed.status_code == 200
        assert allowed.headers["access-control-allow-origin"] == APP
        assert "POST" in allowed.headers["access-control-allow-methods"]
        refused = httpx.options(front.url + "/sdapi/v1/txt2img", headers={"Origin": EVIL, **PREFLIGHT})
        assert refused.status_code == 400
        assert "access-control-allow-origin" not in refused.headers

        answer = httpx.post(front.url + "/sdapi/v1/txt2img", json=small(), headers={"Origin": APP}, timeout=30)
        assert answer.status_code == 200
        assert answer.headers["access-control-allow-origin"] == APP
        assert "X-SDXL-GPU-Model" in answer.headers["access-control-expose-headers"]
        other = httpx.get(front.url + "/v1/pool", headers={"Origin": EVIL})
        assert other.status_code == 200 and "access-control-allow-origin" not in other.headers


# -- SSRF -------------------------------------------------------------------------------------------

class Listener:
    """A TCP listener on 127.0.0.1 that counts every connection made to it."""

    def __init__(self) -> None:
        self.socket = socket.create_server(("127.0.0.1", 0))
        self.port = self.socket.getsockname()[1]
        self.connections = 0
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.socket.accept()
            except OSError:
                return
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self.socket.close()


@pytest.fixture
def listener() -> Iterator[Listener]:
    trap = Listener()
    yield trap
    trap.close()


def url_laden_body(port: int) -> dict:
    """A txt2img body with a URL of the listener in every field that is just text to sdxlpool (the
    prompt, A1111 script and extension fields, image fields of other endpoints, made-up fields)."""
    url = f"http://127.0.0.1:{port}/x.safetensors"
    return small(
        prompt=f"a cat {url}", negative_prompt=url, styles=[url], script_name=url, script_args=[url, {"url": url}],
        alwayson_scripts={"controlnet": {"args": [{"image": url, "input_image": url, "model": url}]}},
        hr_upscaler=url, hr_checkpoint_name=url, firstpass_image=url, infotext=url, init_images=[url], mask=url,
        backends=[{"name": "evil", "url": url, "gpu": "A100"}], backend=url, url=url, callback_url=url, webhook=url,
    )


def test_no_request_field_or_header_makes_anything_connect(worker: ServerThread, listener: Listener,
                                                            tmp_path) -> None:
    """Through the gateway to a real tiny-model worker, and to that worker directly: fields that
    are text are carried as text (200); fields that name a checkpoint or a GPU are looked up among
    what is loaded or known, never fetched (404 / 422); proxy headers are not trusted."""
    url = f"http://127.0.0.1:{listener.port}/x.safetensors"
    body = url_laden_body(listener.port)
    headers = {"X-Forwarded-Host": f"127.0.0.1:{listener.port}", "X-Forwarded-For": "127.0.0.1",
               "Forwarded": f"host=127.0.0.1:{listener.port};proto=http", "X-Forwarded-Proto": "http",
               "Referer": url, "X-Original-URL": url, "X-Rewrite-URL": url}
    looked_up = [({"override_settings": {"sd_model_checkpoint": url}}, 404),
                 ({"refiner_checkpoint": url}, 404), ({"override_settings": {"sd_vae": url}}, 422)]
    with gateway([backend(worker, "tiny", "RTX 3090")], tmp_path) as front:
        front.wait_ready()
        with httpx.Client(timeout=120, headers=headers) as client:
            for base in (front.url, worker.url):
                answer = client.post(base + "/sdapi/v1/txt2img", json=body)
                assert answer.status_code == 200, answer.text
                assert json.loads(answer.json()["info"])["prompt"] == body["prompt"]
                for fields, status in looked_up:
                    answer = client.post(base + "/sdapi/v1/txt2img", json=small(**fields))
                    assert (answer.status_code, url in answer.json()["detail"]) == (status, True), answer.text
            # The native API reads a body with init_images as an img2img: a URL there is not an
            # image, and is refused (422 naming the field), never fetched; so is one on /img2img.
            for path in ("/v1/generate", "/sdapi/v1/img2img"):
                answer = client.post(front.url + path, json=body)
                assert (answer.status_code, "init_images" in answer.text) == (422, True), answer.text
            assert client.post(worker.url + "/sdapi/v1/img2img", json=body).status_code == 422
            no_images = {k: v for k, v in body.items() if k not in ("init_images", "mask")}
            assert client.post(front.url + "/v1/generate", json=no_images).status_code == 200
            hires = client.post(front.url + "/sdapi/v1/txt2img", json=small(enable_hr=True, hr_upscaler=url))
            assert (hires.status_code, "hr_upscaler" in hires.text) == (422, True), hires.text
            for gpus in ({"json": small(gpus=["RTX 3090", url])},
                         {"json": small(), "headers": {"X-SDXL-GPU": f"RTX 3090,{url}"}}):
                assert client.post(front.url + "/sdapi/v1/txt2img", **gpus).status_code == 422
            assert client.post(worker.url + "/sdapi/v1/options", json={"sd_model_checkpoint": url}).status_code == 404
            assert client.post(worker.url + "/sdapi/v1/options", json={"sd_vae": url}).status_code == 422
            assert client.get(front.url + f"/static/{url}").status_code == 404
        for sent, last in ((no_images, "done"), (body, "error")):  # the URL as an init image: refused
            with connect(front.url.replace("http://", "ws://") + "/v1/ws") as ws:
                ws.send(json.dumps(sent))
                events = [json.loads(ws.recv(timeout=60))]
                while events[-1]["event"] not in ("done", "error"):
                    events.append(json.loads(ws.recv(timeout=60)))
            assert events[-1]["event"] == last, events[-1]
    assert listener.connections == 0


# -- logs -------------------------------------------------------------------------------------------

PROMPT = "a lighthouse, secret-prompt-3f9c2a"


def send_prompts(url: str, key: str | None = None) -> None:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    with httpx.Client(base_url=url, timeout=60, headers=headers) as client:
        assert client.post("/sdapi/v1/txt2img", json=small(prompt=PROMPT, negative_prompt=PROMPT)).status_code == 200
        assert client.post("/sdapi/v1/txt2img", json=small(prompt=PROMPT + "\x00")).status_code == 422
        assert client.post("/sdapi/v1/txt2img", json=small(prompt=PROMPT, steps=10_000)).status_code == 422
        assert client.post("/sdapi/v1/txt2img", json=small(prompt=PROMPT, sampler_name="nope")).status_code == 404
        assert client.post("/v1/generate", json=small(prompt=PROMPT),
                           headers={"Accept": "application/x-ndjson"}).status_code == 200


def test_prompts_and_secrets_are_not_logged_by_default(caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture,
                                                       monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    """Worker and gateway logging at DEBUG, as the CLI runs them (INFO server log, no access log):
    prompts, API keys and an HF token in the environment appear nowhere, not even when a worker
    fails the job (the gateway logs the failed attempt and tries the next)."""
    hf_token, key, wrong = "hf_secret_token_8d1e", new_key(), new_key()
    monkeypatch.setenv("HF_TOKEN", hf_token)
    keys = tmp_path / "keys.yaml"
    keys.write_text(yaml.safe_dump({"keys": [{"name": "studio", "sha256": hash_key(key)}]}))
    caplog.set_level(logging.DEBUG)
    server = {"server": {"log_level": "info", "access_log": False}}
    with sim_worker(**server) as good, sim_worker(fail_rate=1.0, worker_name="failing", **server) as failing:
        good.wait_ready()
        failing.wait_ready()
        with gateway([backend(failing, "failing"), backend(good, "good", "L40")], tmp_path, api_keys_file=keys,
                     max_attempts=3, **server) as front:
            front.wait_ready()
            send_prompts(front.url, key)
            for presented in ({"Authorization": f"Bearer {wrong}"}, {"X-API-Key": wrong}):
                assert httpx.post(front.url + "/sdapi/v1/txt2img", json=small(prompt=PROMPT),
                                  headers=presented).status_code == 401
            assert httpx.post(front.url + f"/v1/generate?api_key={wrong}", json=small()).status_code == 401
            failed = httpx.post(failing.url + "/sdapi/v1/txt2img", json=small(prompt=PROMPT), timeout=30)
            assert failed.status_code == 500  # a job failing on the worker itself: logged with its traceback
    # What the servers logged (their threads; this test's own client logs its URLs, ?api_key= included).
    server_records = [r for r in caplog.records if r.thread != threading.main_thread().ident]
    logged = "\n".join(caplog.handler.format(r) for r in server_records) + "".join(capfd.readouterr())
    assert "simulated device failure" in logged  # the failures were logged, so the check below means something
    for secret in ("secret-prompt-3f9c2a", key, wrong, hf_token):
        assert secret not in logged


def test_prompts_are_logged_when_enabled(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    with sim_worker(log_prompts=True) as worker:
        worker.wait_ready()
        assert httpx.post(worker.url + "/sdapi/v1/txt2img", json=small(prompt=PROMPT), timeout=30).status_code == 200
    assert PROMPT in caplog.text


def test_the_cli_server_has_no_access_log_and_caps_websocket_messages(monkeypatch: pytest.MonkeyPatch) -> None:
    from sdxlpool._serving import serve
    from sdxlpool.testing.ports import free_port

    seen: list[uvicorn.Config] = []
    monkeypatch.setattr(uvicorn.Server, "run", lambda self, *a, **k: seen.append(self.config))
    previous = signal.getsignal(signal.SIGTERM)
    try:
        assert serve("test", lambda _on_fatal: object(), host="127.0.0.1", port=free_port(),
                     max_message_bytes=123_456) == 0
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert seen[0].access_log is False  # it would log query strings, where ?api_key= may be
    assert seen[0].ws_max_size == 123_456
