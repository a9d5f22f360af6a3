"""img2img through real HTTP on the tiny model: sizes, seeds, denoising strength, input formats,
batches, the refiner handoff, LoRAs, infotexts and bad images.

The tiny model's weights are random, so a denoised image looks nothing like its init image: what
these tests can and do check is which pixels come from where, and that the same request gives the
same pixels."""

from __future__ import annotations

import base64
import io
import json
import struct
import threading
import zlib
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.conftest import ServerThread, TinyModel, start_worker
from tests.polling import wait_for
from tests.worker.imaging import decode, pixels
from tests.worker.img2img_inputs import encoded, gradient

FAST = {"prompt": "a lighthouse at dusk", "sampler_name": "Euler", "steps": 4, "seed": 11}
INIT = gradient(64, 64)


@pytest.fixture(scope="module")
def img2img_worker(tiny_model: TinyModel) -> Iterator[ServerThread]:
    with start_worker(tiny_model, models=[tiny_model.base], lora_dir=tiny_model.base.parent / "loras") as server:
        server.wait_ready()
        yield server


@pytest.fixture
def http(img2img_worker: ServerThread) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=img2img_worker.url, timeout=120) as c:
        yield c


def img2img(client: httpx.Client, init: Image.Image | list[str] = INIT, **body) -> tuple[list[str], dict, dict]:
    images = init if isinstance(init, list) else [encoded(init)]
    response = client.post("/sdapi/v1/img2img", json={**FAST, "init_images": images, **body})
    assert response.status_code == 200, response.text
    data = response.json()
    return data["images"], json.loads(data["info"]), data["parameters"]


def distance(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


def test_size_infotext_and_info(http: httpx.Client) -> None:
    images, info, parameters = img2img(http, gradient(96, 64))
    assert decode(images[0]).size == (96, 64)  # no width/height: the init image's size
    assert (info["width"], info["height"]) == (96, 64)
    assert info["denoising_strength"] == 0.75 and info["is_using_inpainting_conditioning"] is False
    assert info["extra_generation_params"] == {"Denoising strength": 0.75}
    text = info["infotexts"][0]
    assert "Size: 96x64" in text and "Denoising strength: 0.75" in text
    assert "Mask blur" not in text  # A1111 writes it only when a mask is used
    assert decode(images[0]).text["parameters"] == text
    assert parameters["init_images"] is None and parameters["mask"] is None  # include_init_images is off
    assert info["sdxlpool"]["steps_done"] == 3  # int(4 x 0.75): the last 3 of the 4 steps

    sized, info, _ = img2img(http, width=96, height=64, resize_mode=1)
    assert decode(sized[0]).size == (96, 64) and "Size: 96x64" in info["infotexts"][0]


def test_same_seed_same_pixels_other_seed_differs(http: httpx.Client) -> None:
    first, _, _ = img2img(http, seed=5)
    again, _, _ = img2img(http, seed=5)
    other, _, _ = img2img(http, seed=6)
    assert np.array_equal(pixels(first[0]), pixels(again[0]))
    assert distance(pixels(first[0]), pixels(other[0])) > 1
    # initial_noise_multiplier scales the seed's noise: applied, and written as A1111 writes it.
    damped, info, _ = img2img(http, seed=5, initial_noise_multiplier=0.5)
    assert "Noise multiplier: 0.5" in info["infotexts"][0] and info["sdxlpool"]["ignored"] == []
    assert distance(pixels(first[0]), pixels(damped[0])) > 1


def test_denoising_strength(http: httpx.Client) -> None:
    init = np.asarray(INIT)
    untouched, info, _ = img2img(http, denoising_strength=0)
    assert np.array_equal(pixels(untouched[0]), init)  # strength 0: the init image, not denoised
    assert info["sdxlpool"]["steps_done"] == 0 and "Denoising strength: 0.0" in info["infotexts"][0]
    done = {}
    for strength in (0.25, 0.5, 1.0):
        images, info, _ = img2img(http, denoising_strength=strength)
        done[strength] = info["sdxlpool"]["steps_done"], pixels(images[0])
    assert [steps for steps, _ in done.values()] == [1, 2, 4]  # the last int(4 x strength) steps run
    assert distance(done[1.0][1], init) > 20  # strength 1: nothing of the init image is left
    # The more is denoised, the nearer the result comes to strength 1's (the same seed's noise).
    assert distance(done[0.25][1], done[1.0][1]) > distance(done[0.5][1], done[1.0][1])


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda: encoded(INIT, "JPEG", quality=95), id="jpeg"),
        pytest.param(lambda: encoded(INIT, "WEBP", lossless=True), id="webp"),
        pytest.param(lambda: "data:image/png;base64," + encoded(INIT), id="png-data-url"),
        pytest.param(lambda: "data:image/jpeg;base64," + encoded(INIT, "JPEG"), id="jpeg-data-url"),
        pytest.param(lambda: encoded(INIT.convert("RGBA")), id="rgba-png"),
        pytest.param(lambda: encoded(INIT.convert("L")), id="grey-png"),
    ],
)
def test_input_formats(http: httpx.Client, make) -> None:
    images, info, _ = img2img(http, [make()], denoising_strength=0)
    assert decode(images[0]).size == (64, 64)
    assert distance(pixels(images[0]), np.asarray(INIT.convert("RGB"))) < 60  # the picture came through


def test_batch_seeds_and_init_images_cycled_over_the_batch(http: httpx.Client) -> None:
    other = gradient(64, 64).transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    images, info, _ = img2img(http, [encoded(INIT), encoded(other)], batch_size=3, n_iter=2, denoising_strength=0)
    assert len(images) == 6 and info["all_seeds"] == [11, 12, 13, 14, 15, 16]
    expected = [INIT, other, INIT] * 2  # per batch: image i takes init image i modulo their number
    for image, init in zip(images, expected, strict=True):
        assert np.array_equal(pixels(image), np.asarray(init))


def test_batch_image_is_its_seeds_image(http: httpx.Client) -> None:
    batch, info, _ = img2img(http, batch_size=2, n_iter=2, seed=100)
    assert info["all_seeds"] == [100, 101, 102, 103] and "Seed: 103" in info["infotexts"][3]
    single, _, _ = img2img(http, seed=102)
    assert np.abs(pixels(batch[2]) - pixels(single[0])).max() <= 2
    assert distance(pixels(batch[3]), pixels(single[0])) > 1


def test_include_init_images_echoes_them(http: httpx.Client) -> None:
    sent = encoded(INIT)
    _, _, parameters = img2img(http, [sent], include_init_images=True, denoising_strength=0)
    assert parameters["init_images"] == [sent]


def test_latent_mask_is_listed_as_not_applied(http: httpx.Client) -> None:
    _, info, _ = img2img(http, denoising_strength=0, latent_mask=encoded(INIT))
    assert info["sdxlpool"]["ignored"] == ["latent_mask"]


def test_refiner_handoff_counts_the_steps_that_run(http: httpx.Client) -> None:
    body = {"steps": 8, "denoising_strength": 0.5}
    base_only, base_info, _ = img2img(http, **body)
    refined, info, _ = img2img(http, **body, refiner_checkpoint="tiny/refiner", refiner_switch_at=0.5)
    # 4 steps run (the last half of 8); the refiner takes the last 2 and continues, not restarts.
    assert base_info["sdxlpool"]["steps_done"] == info["sdxlpool"]["steps_done"] == 4
    assert "Refiner: tiny/refiner" in info["infotexts"][0] and "Denoising strength: 0.5" in info["infotexts"][0]
    assert distance(pixels(base_only[0]), pixels(refined[0])) > 1


def test_lora_prompt(http: httpx.Client) -> None:
    plain, _, _ = img2img(http)
    styled, info, _ = img2img(http, prompt="a lighthouse at dusk <lora:tiny_all:1>")
    assert info["sdxlpool"]["ignored"] == [] and "Lora hashes:" in info["infotexts"][0]
    assert distance(pixels(plain[0]), pixels(styled[0])) > 1


def test_latent_upscale_resize_mode(http: httpx.Client) -> None:
    images, info, _ = img2img(http, gradient(40, 24), resize_mode=3, width=96, height=64)
    assert decode(images[0]).size == (96, 64) and info["sdxlpool"]["steps_done"] == 3


def test_progress_counts_the_steps_that_run(img2img_worker: ServerThread) -> None:
    """/progress (and the job's cost behind the pending-steps metric) counts the 8 steps a 16-step
    img2img at strength 0.5 runs, not 16."""
    url = img2img_worker.url
    body = {**FAST, "init_images": [encoded(gradient(128, 128))], "steps": 16, "denoising_strength": 0.5,
            "force_task_id": "img2img-progress"}
    done: list[httpx.Response] = []
    job = threading.Thread(target=lambda: done.append(httpx.post(url + "/sdapi/v1/img2img", json=body, timeout=300)))
    job.start()
    seen = []
    with httpx.Client(base_url=url, timeout=10) as client:
        def sample() -> bool:
            progress = client.get("/sdapi/v1/progress", params={"skip_current_image": True}).json()
            if progress["state"]["job"] == "img2img-progress":
                seen.append((progress["state"]["sampling_step"], progress["state"]["sampling_steps"],
                             progress["progress"]))
            return not job.is_alive()
        wait_for(sample, timeout=300, interval=0.05)
    assert done and done[0].status_code == 200, done
    assert seen, "never saw the job running"
    assert {steps for _, steps, _ in seen} == {8}
    assert max(step for step, _, _ in seen) >= 4 and max(fraction for _, _, fraction in seen) > 0.5


# -- bad images ------------------------------------------------------------------------------------------

def png_claiming(width: int, height: int) -> str:
    """A tiny PNG file whose header declares width x height (a decompression bomb's shape)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    raw = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b"")
    return base64.b64encode(raw).decode()


def truncated_png() -> str:
    buffer = io.BytesIO()
    INIT.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()[: len(buffer.getvalue()) // 2]).decode()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        pytest.param({"init_images": ["not base64 at all!"]}, "init_images.0", id="not-base64"),
        pytest.param({"init_images": [base64.b64encode(b"hello, not an image").decode()]}, "init_images.0",
                     id="not-an-image"),
        pytest.param({"init_images": [truncated_png()]}, "init_images.0", id="truncated-png"),
        pytest.param({"init_images": [png_claiming(100_000, 100_000)]}, "init_images.0", id="huge-declared-size"),
        pytest.param({"init_images": [encoded(INIT), "AAAA"]}, "init_images.1", id="second-image-bad"),
        pytest.param({"init_images": []}, "init_images", id="no-images"),
        pytest.param({"mask": encoded(Image.new("L", (32, 64)))}, "mask", id="mask-of-the-wrong-size"),
        pytest.param({"mask": "%%%"}, "mask", id="mask-not-an-image"),
        pytest.param({"denoising_strength": 1.5}, "denoising_strength", id="strength-over-1"),
        pytest.param({"resize_mode": 4}, "resize_mode", id="unknown-resize-mode"),
    ],
)
def test_bad_images_are_422_naming_the_field(http: httpx.Client, body: dict, field: str) -> None:
    response = http.post("/sdapi/v1/img2img", json={**FAST, "init_images": [encoded(INIT)], **body})
    assert response.status_code == 422, response.text
    assert field in response.text
