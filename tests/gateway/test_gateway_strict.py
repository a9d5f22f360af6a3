"""Strict mode through the gateway: it refuses field-level entries itself, before routing, and
passes its decision (`X-SDXL-Strict`) on to the worker for what only the worker knows (styles,
LoRAs, prompt constructs). A real gateway in front of a real tiny-model worker, on 127.0.0.1."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import httpx
import pytest

from sdxlpool.testing.ports import free_port
from tests.api.test_ignored import WEBUIAPI_DEFAULT_PAYLOAD
from tests.conftest import ServerThread, TinyModel, start_worker
from tests.gateway.conftest import start_gateway, write_backends

SMALL = {"prompt": "a cat", "steps": 3, "width": 64, "height": 64, "sampler_name": "Euler", "seed": 5}


@pytest.fixture(scope="module")
def worker(tiny_model: TinyModel) -> Iterator[ServerThread]:
    with start_worker(tiny_model, models=[tiny_model.base], refiner=None, warmup=False,
                      styles=tiny_model.base.parent / "styles.csv") as server:
        server.wait_ready()
        yield server


def _gateway(worker_url: str, folder, **settings) -> ServerThread:
    backends = [{"name": "w", "url": worker_url, "gpu": "RTX 3090", "type": "sdxlpool"}]
    return start_gateway(write_backends(folder / "backends.yaml", backends), **settings)


@pytest.fixture(scope="module")
def lenient(worker: ServerThread, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    with _gateway(worker.url, tmp_path_factory.mktemp("lenient")) as server:
        server.wait_ready()
        yield server


@pytest.fixture(scope="module")
def strict(worker: ServerThread, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    with _gateway(worker.url, tmp_path_factory.mktemp("strict"), strict=True) as server:
        server.wait_ready()
        yield server


def post(gateway: ServerThread, body: dict, strict_header: str | None = None) -> httpx.Response:
    headers = {"X-SDXL-Strict": strict_header} if strict_header is not None else {}
    return httpx.post(gateway.url + "/sdapi/v1/txt2img", json=body, headers=headers, timeout=120)


def refused(response: httpx.Response) -> list[str]:
    assert response.status_code == 422, response.text
    assert response.json()["error"] == "not_applied"
    return [entry["field"] for entry in response.json()["errors"]]


def ignored(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return json.loads(response.json()["info"])["sdxlpool"]["ignored"]


def test_a_strict_gateway_checks_fields_before_routing(tmp_path) -> None:
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens: anything routed would fail with 503
    with _gateway(dead, tmp_path, strict=True) as gateway:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(gateway.url + "/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.05)
        assert refused(post(gateway, {**SMALL, "restore_faces": True, "tiling": True})) == ["restore_faces", "tiling"]
        assert post(gateway, SMALL).status_code == 503  # a clean request is routed (and finds no worker)
        assert post(gateway, {**SMALL, "restore_faces": True}, strict_header="0").status_code == 503


def test_the_worker_applies_the_gateways_strictness(strict: ServerThread, lenient: ServerThread) -> None:
    body = {**SMALL, "styles": ["nope", "photo"]}  # only the worker knows its styles
    assert refused(post(strict, body)) == ["styles: nope (no such style)"]
    assert ignored(post(strict, body, strict_header="0")) == ["styles: nope (no such style)"]
    assert ignored(post(lenient, body)) == ["styles: nope (no such style)"]
    assert refused(post(lenient, body, strict_header="1")) == ["styles: nope (no such style)"]
    assert refused(post(lenient, {**body, "tiling": True}, strict_header="1")) == ["tiling"]  # the gateway's own
    assert ignored(post(strict, {**SMALL, "styles": ["photo"]})) == []
    native = httpx.post(lenient.url + "/v1/generate", json=body, headers={"X-SDXL-Strict": "1"}, timeout=120)
    assert native.status_code == 422 and native.json()["error"] == "not_applied", native.text
    assert "styles: nope (no such style)" in native.json()["detail"]
    assert httpx.post(strict.url + "/v1/generate", json=body, headers={"X-SDXL-Strict": "0"}, timeout=120).status_code == 200


def test_the_webuiapi_default_payload_passes_a_strict_gateway(strict: ServerThread) -> None:
    assert ignored(post(strict, {**WEBUIAPI_DEFAULT_PAYLOAD, **SMALL, "sampler_name": "Euler a"})) == []
