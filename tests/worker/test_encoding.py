"""PNG encoding (sdxlpool.worker.encoding): the fast writer gives Pillow's pixels and infotext chunk,
and the worker encodes off its job thread, so the next job starts while the last images encode.

The worker tests run the real app and the real diffusers engine on the tiny model; the engine's
`encode_png` is wrapped to hold one image's encoding until the next job has started (a fixed order
of events, condition-waited), or to fail one request's encoding.
"""

from __future__ import annotations

import base64
import io
import json
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

from sdxlpool.worker.encoding import encode_png_pil, png_base64, png_bytes
from sdxlpool.worker.engine import DiffusersEngine
from sdxlpool.worker.infotext import encode_png
from tests.conftest import ServerThread, TinyModel, start_worker

TEXTS = ["a cat, sitting\nNegative prompt: dog\nSteps: 2, Sampler: Euler, Seed: 1", "ünïcödé, 日本語 ✓", ""]
WAIT_S = 30  # how long a held encoding waits for the next job before it fails the test


def _decoded(png: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(png))
    image.load()
    return image


@pytest.mark.parametrize(("mode", "shape"), [("RGB", (1024, 1024, 3)), ("RGB", (832, 1216, 3)),
                                            ("RGBA", (37, 53, 4)), ("L", (9, 5)), ("RGB", (1, 1, 3))])
def test_fast_png_has_pillows_pixels_and_infotext(mode: str, shape: tuple[int, ...]) -> None:
    """Same pixels, same mode, the same `parameters` text (tEXt for Latin-1, iTXt else) as Pillow's
    encoder, which the worker used before; a 1024x1024 image is deflated in several strips."""
    pixels = np.random.default_rng(sum(shape)).integers(0, 256, shape, dtype=np.uint8)
    pixels[: shape[0] // 2] //= 16  # half smooth, half noise: both kinds of rows
    image = Image.fromarray(pixels, mode)
    for text in TEXTS:
        fast, before = _decoded(png_bytes(image, text)), _decoded(encode_png_pil(image, text))
        assert fast.mode == before.mode == mode
        assert np.array_equal(np.asarray(fast), np.asarray(before))
        assert fast.text == before.text == {"parameters": text}
        assert fast.info == before.info


def test_fast_png_of_a_1024_image_is_no_bigger_than_pillows_level_1() -> None:
    """A photo-like 1024x1024 (gradients plus noise): Up filter + Huffman-only is not larger."""
    y, x = np.mgrid[0:1024, 0:1024]
    smooth = np.stack([x / 4, y / 4, (x + y) / 8], -1) + np.random.default_rng(0).normal(0, 6, (1024, 1024, 3))
    image = Image.fromarray(np.clip(smooth, 0, 255).astype(np.uint8))
    assert len(png_bytes(image, "x")) <= len(encode_png_pil(image, "x"))


def test_images_pillow_writes_differently_go_through_pillow() -> None:
    """A palette image, or one whose info Pillow copies into the file (an ICC profile), is Pillow's."""
    palette = Image.new("P", (8, 8), 3)
    assert png_bytes(palette, "t") == encode_png_pil(palette, "t")
    profiled = Image.new("RGB", (8, 8), (1, 2, 3))
    profiled.info["icc_profile"] = b"not really a profile"
    assert png_bytes(profiled, "t") == encode_png_pil(profiled, "t")
    assert _decoded(png_bytes(profiled, "t")).info["icc_profile"] == b"not really a profile"


def test_encode_png_is_base64_of_the_fast_png() -> None:
    image = Image.new("RGB", (16, 8), (200, 10, 30))
    assert encode_png(image, "Steps: 2") == png_base64(image, "Steps: 2")
    assert base64.b64decode(encode_png(image, "Steps: 2")) == png_bytes(image, "Steps: 2")


class GatedEngine(DiffusersEngine):
    """The diffusers engine; an image whose prompt starts "hold" is encoded only once a job with the
    prompt "next" has started, and one starting "broken" fails its encoding."""

    def __init__(self, settings: Any) -> None:
        super().__init__(settings)
        self.started: dict[str, threading.Event] = {"hold": threading.Event(), "next": threading.Event()}
        self.encoded_on: list[str] = []  # the threads that encoded

    def generate(self, base, refiner, params, sampler, options, control):  # type: ignore[no-untyped-def]
        if params.prompt in self.started:
            self.started[params.prompt].set()
        return super().generate(base, refiner, params, sampler, options, control)

    def encode_png(self, image: Any, infotext: str) -> str:
        self.encoded_on.append(threading.current_thread().name)
        if infotext.startswith("broken"):
            raise OSError("disk quota exceeded")  # what a failing encoder might raise
        if infotext.startswith("hold") and not self.started["next"].wait(WAIT_S):
            raise TimeoutError("the next job did not start while this image was being encoded")
        return super().encode_png(image, infotext)


@pytest.fixture(scope="module")
def gated(tiny_model: TinyModel) -> Iterator[tuple[ServerThread, GatedEngine]]:
    engines: list[GatedEngine] = []

    def make(settings: Any) -> GatedEngine:
        engines.append(GatedEngine(settings))
        return engines[-1]

    with start_worker(tiny_model, engine=make, models=[tiny_model.base], refiner=None) as server:
        server.wait_ready()
        yield server, engines[0]


def _txt2img(url: str, prompt: str) -> httpx.Response:
    body = {"prompt": prompt, "steps": 2, "width": 64, "height": 64, "seed": 1, "sampler_name": "Euler"}
    return httpx.post(url + "/sdapi/v1/txt2img", json=body, timeout=120)


def test_the_next_job_starts_while_the_last_images_encode(gated: tuple[ServerThread, GatedEngine]) -> None:
    """"hold"'s image is encoded only after the "next" job has started: were encoding on the job
    thread (or before the queue moved on), "next" could not start and "hold" would fail."""
    server, engine = gated
    with ThreadPoolExecutor(2) as pool:
        held = pool.submit(_txt2img, server.url, "hold")
        assert engine.started["hold"].wait(WAIT_S)  # queued first
        following = pool.submit(_txt2img, server.url, "next")
        first, second = held.result(timeout=120), following.result(timeout=120)
    assert first.status_code == 200, first.text
    assert second.status_code == 200, second.text
    for answer in (first.json(), second.json()):
        png = base64.b64decode(answer["images"][0])
        image = _decoded(png)
        assert image.size == (64, 64)
        info = json.loads(answer["info"])
        assert image.text["parameters"] == info["infotexts"][0]
        # The pipeline's images take the fast writer, not Pillow's fallback: the same bytes again.
        assert png_bytes(Image.fromarray(np.asarray(image)), info["infotexts"][0]) == png
        assert info["sdxlpool"]["encode_seconds"] >= 0
    assert engine.encoded_on and all(name.startswith("sdxl-encode") for name in engine.encoded_on)


def test_an_encoding_failure_fails_that_request_alone(gated: tuple[ServerThread, GatedEngine]) -> None:
    """A clear 500 JSON for the request whose image failed; the request queued beside it is answered."""
    server, _engine = gated
    with ThreadPoolExecutor(2) as pool:
        broken = pool.submit(_txt2img, server.url, "broken")
        fine = pool.submit(_txt2img, server.url, "fine")
        failed, answered = broken.result(timeout=120), fine.result(timeout=120)
    assert failed.status_code == 500
    assert failed.json()["error"] == "encoding_failed"
    assert "OSError: disk quota exceeded" in failed.json()["detail"]
    assert answered.status_code == 200, answered.text
    assert _decoded(base64.b64decode(answered.json()["images"][0])).size == (64, 64)
    assert _txt2img(server.url, "after").status_code == 200  # the worker goes on serving
