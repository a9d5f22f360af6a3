"""The gateway says when an image came from a fast mode: `X-SDXL-Fast-Mode`, from the answering
worker's `info.sdxlpool.fast_mode`, on the A1111 routes and the native API. Real gateway, two real
tiny-model workers on 127.0.0.1: an H100 one with `--fast-mode deepcache` and an exact A100 one."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest

from sdxlpool.api.headers import FAST_MODE_HEADER
from tests.conftest import ServerThread, TinyModel, start_worker
from tests.gateway.conftest import start_gateway, write_backends

BODY = {"prompt": "a fox", "steps": 4, "width": 64, "height": 64, "sampler_name": "Euler", "seed": 3}


@pytest.fixture(scope="module")
def gateway(tiny_model: TinyModel, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerThread]:
    with ExitStack() as stack:
        # One after the other: two loads at once in one process trip over diffusers' meta-device init.
        fast = stack.enter_context(start_worker(tiny_model, models=[tiny_model.base], gpu_model="H100",
                                                fast_mode="deepcache"))
        fast.wait_ready()
        exact = stack.enter_context(start_worker(tiny_model, models=[tiny_model.base], gpu_model="A100"))
        exact.wait_ready()
        backends = [{"name": name, "url": server.url, "gpu": gpu, "type": "sdxlpool"}
                    for name, server, gpu in (("h100-1", fast, "H100"), ("a100-1", exact, "A100"))]
        path = write_backends(Path(tmp_path_factory.mktemp("gw-fast")) / "backends.yaml", backends)
        with start_gateway(path) as server:
            server.wait_ready()
            yield server


@pytest.mark.parametrize(("gpu", "mode"), [("H100", "deepcache"), ("A100", "off")])
def test_a1111_answers_name_the_fast_mode(gateway: ServerThread, gpu: str, mode: str) -> None:
    response = httpx.post(gateway.url + "/sdapi/v1/txt2img", json=BODY, headers={"X-SDXL-GPU": gpu}, timeout=120)
    assert response.status_code == 200, response.text
    assert response.headers[FAST_MODE_HEADER] == mode
    assert json.loads(response.json()["info"])["sdxlpool"]["fast_mode"] == mode


def test_native_answers_name_the_fast_mode(gateway: ServerThread) -> None:
    response = httpx.post(gateway.url + "/v1/generate", json={**BODY, "gpus": ["H100"]}, timeout=120)
    assert response.status_code == 200, response.text
    assert response.headers[FAST_MODE_HEADER] == "deepcache"
    assert response.json()["info"]["sdxlpool"]["fast_mode"] == "deepcache"
