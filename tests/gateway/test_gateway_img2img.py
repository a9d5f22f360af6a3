"""img2img, the extras and png-info through the real gateway, like txt2img: checked first (a bad
image is a 422 naming its field before any routing), then routed, placed, failed over with the same
seed; and the native API (POST /v1/generate, /v1/ws) taking an init image.

Two real tiny-model worker processes (so one can be SIGKILLed mid-request), and a gateway whose only
backend never answers (so any request that got past the checks is a 503, never a 422).
"""

from __future__ import annotations

import base64
import io
import json
import struct
import threading
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from sdxlpool.testing.ports import free_port
from tests.gateway.conftest import (
    WorkerProcess,
    WorkerProcesses,
    assert_failover_kept_the_seed,
    kill_the_one_running_it,
    start_gateway,
    write_backends,
)
from tests.gateway.ws import websocket
from tests.worker.imaging import decode, pixels


def png_b64(width: int, height: int, rgb: tuple[int, int, int] = (180, 40, 40)) -> str:
    out = io.BytesIO()
    Image.new("RGB", (width, height), rgb).save(out, format="PNG")
    return base64.b64encode(out.getvalue()).decode()


def noisy_png(min_bytes: int) -> bytes:
    """Random pixels, which PNG cannot compress: a file of at least `min_bytes`."""
    side = int((min_bytes / 3) ** 0.5) + 16
    noise = np.random.default_rng(0).integers(0, 256, (side, side, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(noise).save(out, format="PNG", compress_level=1)
    data = out.getvalue()
    assert len(data) >= min_bytes
    return data


def png_header_only(width: int, height: int) -> str:
    """A PNG that claims `width` x `height` in its header (0x0, or a decompression bomb)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    raw = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
           + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b""))
    return base64.b64encode(raw).decode()


def truncated_png() -> str:
    raw = base64.b64decode(png_b64(64, 64))
    return base64.b64encode(raw[: len(raw) // 2]).decode()


GOOD = png_b64(64, 64)


@pytest.fixture(scope="module")
def pair(worker_processes: WorkerProcesses) -> list[WorkerProcess]:
    """Two A100 workers (the first shared with other modules)."""
    return list(worker_processes.get(("a100-1", "A100"), ("a100-3", "A100")).values())


@pytest.fixture(scope="module")
def gateway(pair, tmp_path_factory) -> Iterator:
    path = write_backends(tmp_path_factory.mktemp("gw-i2i") / "backends.yaml", [w.backend() for w in pair])
    with start_gateway(path) as server:
        server.wait_ready()
        yield server


@pytest.fixture(scope="module")
def nowhere_gateway(tmp_path_factory) -> Iterator:
    """A gateway whose one backend never answers: a request that passes the checks is a 503."""
    backend = {"name": "nobody", "url": f"http://127.0.0.1:{free_port()}", "gpu": "A100", "type": "sdxlpool"}
    path = write_backends(tmp_path_factory.mktemp("gw-nowhere") / "backends.yaml", [backend])
    with start_gateway(path) as server:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(server.url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.05)
        yield server


def img2img(**fields) -> dict:
    return {"prompt": "a red square", "steps": 2, "width": 64, "height": 64, "seed": 5, "sampler_name": "Euler",
            "denoising_strength": 0.5, "init_images": [GOOD], **fields}


BAD = [
    pytest.param("img2img", img2img(init_images=["aGVsbG8gd29ybGQ="]), "init_images.0", id="init-not-an-image"),
    pytest.param("img2img", img2img(init_images=[GOOD, "not base64 at all!"]), "init_images.1", id="second-bad"),
    pytest.param("img2img", img2img(init_images=[png_header_only(0, 0)]), "init_images.0", id="init-0x0"),
    pytest.param("img2img", img2img(init_images=[png_header_only(100_000, 100_000)]), "init_images.0",
                 id="init-huge"),
    pytest.param("img2img", img2img(init_images=[]), "init_images", id="no-init-image"),
    pytest.param("img2img", img2img(mask="bm9wZQ=="), "mask", id="mask-not-an-image"),
    pytest.param("img2img", img2img(mask=png_b64(32, 64)), "mask", id="mask-wrong-size"),
    pytest.param("img2img", img2img(denoising_strength=1.5), "denoising_strength", id="strength"),
    pytest.param("extra-single-image", {"image": "", "upscaling_resize": 2}, "image", id="extras-empty"),
    pytest.param("extra-single-image", {"image": GOOD, "upscaling_resize": 200}, "upscaling_resize",
                 id="extras-too-big"),
    pytest.param("extra-batch-images", {"imageList": [{"data": GOOD, "name": "a"}, {"data": "eA==", "name": "b"}]},
                 "imageList.1.data", id="batch-second-bad"),
    pytest.param("png-info", {"image": png_header_only(0, 0)}, "image", id="png-info-0x0"),
]


@pytest.mark.parametrize(("route", "body", "field"), BAD)
def test_bad_images_are_422_naming_the_field_before_any_routing(nowhere_gateway, route: str, body: dict,
                                                                 field: str) -> None:
    response = httpx.post(nowhere_gateway.url + f"/sdapi/v1/{route}", json=body, timeout=30)
    assert response.status_code == 422, response.text
    assert response.json()["detail"].startswith(f"{field}:"), response.json()
    # The same kind of request with good images gets past the checks (and finds no worker).
    good = {"img2img": img2img(), "extra-single-image": {"image": GOOD}, "png-info": {"image": GOOD},
            "extra-batch-images": {"imageList": [{"data": GOOD, "name": "a"}]}}[route]
    assert httpx.post(nowhere_gateway.url + f"/sdapi/v1/{route}", json=good, timeout=30).status_code == 503


def test_native_api_checks_init_images_before_routing(nowhere_gateway) -> None:
    response = httpx.post(nowhere_gateway.url + "/v1/generate", json=img2img(mask=png_b64(8, 8)), timeout=30)
    assert response.status_code == 422 and response.json()["detail"].startswith("mask:"), response.text
    with websocket(nowhere_gateway.url) as ws:
        ws.send(img2img(init_images=["eA=="]))
        events = ws.until_final(timeout=30)
    assert events[-1]["event"] == "error" and events[-1]["status"] == 422, events
    assert events[-1]["detail"].startswith("init_images.0:")


def test_a_10mb_init_image_goes_through_the_gateway_to_a_worker(gateway, pair) -> None:
    """Well within the 64 MiB body cap: the gateway reads only the header, the worker decodes it all.
    The answer is the worker's own pixels, with the placement added."""
    upload = base64.b64encode(noisy_png(10_000_000)).decode()
    body = img2img(init_images=[upload], prompt="ten megabytes")
    response = httpx.post(gateway.url + "/sdapi/v1/img2img", json=body, timeout=180)
    assert response.status_code == 200, response.text[:500]
    worker = next(w for w in pair if w.name == response.headers["X-SDXL-Worker"])
    assert response.headers["X-SDXL-GPU-Model"] == "a100" and response.headers["X-SDXL-Attempts"] == "1"
    info = json.loads(response.json()["info"])
    assert info["sdxlpool"]["attempts"] == 1 and info["sdxlpool"]["worker"] == worker.name
    assert "gateway_queue_seconds" in info["sdxlpool"] and info["seed"] == 5
    assert decode(response.json()["images"][0]).size == (64, 64)
    direct = httpx.post(worker.url + "/sdapi/v1/img2img", json=body, timeout=180)
    assert direct.status_code == 200, direct.text[:500]
    assert np.array_equal(pixels(response.json()["images"][0]), pixels(direct.json()["images"][0]))


def test_a_truncated_image_is_the_workers_422_passed_on(gateway) -> None:
    """The gateway reads headers only; the worker decodes the whole image and names the field."""
    response = httpx.post(gateway.url + "/sdapi/v1/img2img", json=img2img(init_images=[truncated_png()]),
                          timeout=60)
    assert response.status_code == 422, response.text
    assert response.json()["detail"].startswith("init_images.0:")


def test_native_api_takes_an_init_image(gateway) -> None:
    body = img2img(prompt="native img2img", width=None, height=None, init_images=[png_b64(96, 64)])
    response = httpx.post(gateway.url + "/v1/generate", json=body, timeout=120)
    assert response.status_code == 200, response.text[:500]
    native = response.json()
    assert native["seed"] == 5 and native["attempts"] == 1 and native["info"]["denoising_strength"] == 0.5
    assert decode(native["image"]).size == (96, 64)  # the init image's size, as nothing else was asked
    assert response.headers["X-SDXL-Worker"] == native["worker"]
    with websocket(gateway.url) as ws:
        ws.send({**img2img(prompt="ws img2img"), "id": "i2i"})
        events = ws.until_final(timeout=120)
    done = events[-1]
    assert done["event"] == "done" and done["id"] == "i2i", done
    assert done["info"]["denoising_strength"] == 0.5 and decode(done["image"]).size == (64, 64)


def _worker_has(worker: WorkerProcess, path: str) -> bool:
    return path in httpx.get(worker.url + "/openapi.json", timeout=10).json()["paths"]


@pytest.mark.parametrize("route", ["extra-single-image", "extra-batch-images", "png-info"])
def test_extras_and_png_info_are_routed_with_placement_in_headers(gateway, pair, route: str) -> None:
    if not _worker_has(pair[0], f"/sdapi/v1/{route}"):
        pytest.skip(f"the worker has no /sdapi/v1/{route} yet")
    generated = httpx.post(gateway.url + "/sdapi/v1/txt2img", json={"prompt": "for the extras", "steps": 2,
                                                                   "width": 64, "height": 64, "seed": 9},
                           timeout=120).json()["images"][0]
    body = {"extra-single-image": {"image": generated, "upscaler_1": "Lanczos", "upscaling_resize": 2},
            "extra-batch-images": {"imageList": [{"data": generated, "name": "a.png"}], "upscaler_1": "Nearest",
                                   "upscaling_resize": 2},
            "png-info": {"image": generated}}[route]
    response = httpx.post(gateway.url + f"/sdapi/v1/{route}", json=body, timeout=120)
    assert response.status_code == 200, response.text[:500]
    assert response.headers["X-SDXL-Worker"] in {w.name for w in pair}
    assert response.headers["X-SDXL-Attempts"] == "1"
    answer = response.json()
    if route == "png-info":
        assert "Seed: 9" in answer["info"]
    else:
        image = answer["image"] if route == "extra-single-image" else answer["images"][0]
        assert decode(image).size == (128, 128)


# Last in this module on purpose: it kills one of the module's workers.
def test_an_img2img_killed_mid_request_fails_over_with_the_same_seed_and_pixels(pair, tmp_path: Path) -> None:
    a, b = pair
    path = write_backends(tmp_path / "two.yaml", [a.backend(), b.backend()])
    with start_gateway(path) as gateway:
        gateway.wait_ready()
        outcome: dict = {}
        body = img2img(prompt="an img2img failed over", seed=-1, steps=40, width=256, height=256,
                       denoising_strength=1.0, init_images=[png_b64(256, 256, (20, 90, 200))])

        def send() -> None:
            outcome["response"] = httpx.post(gateway.url + "/sdapi/v1/img2img", json=body, timeout=180)

        thread = threading.Thread(target=send)
        thread.start()
        victim = kill_the_one_running_it((a, b), timeout=60)
        thread.join(180)
        response = outcome["response"]
        survivor = b if victim is a else a
        assert response.status_code == 200, response.text[:500]
        assert response.headers["X-SDXL-Attempts"] == "2" and response.headers["X-SDXL-Worker"] == survivor.name
        info = json.loads(response.json()["info"])
        assert info["sdxlpool"]["attempts"] == 2
        # The seed was fixed before the first attempt, and the init image went with both attempts:
        # the survivor, called directly with the victim's seed, makes the same pixels.
        assert_failover_kept_the_seed(body, info["seed"], response.json()["images"][0], victim.log,
                                      survivor.url, path="/sdapi/v1/img2img")
