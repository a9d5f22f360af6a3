"""Inpainting through real HTTP on the tiny model (a 4-channel UNet): pixels outside the blurred mask
are the init image's exactly, inside they are repainted; "only masked", mask invert, the four
kinds of masked content, and A1111's infotext keys."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import numpy as np
import pytest

from tests.conftest import ServerThread, TinyModel, start_worker
from tests.worker.imaging import pixels
from tests.worker.img2img_inputs import box_mask, encoded, gradient

INIT = gradient(64, 64)
BOX = (24, 24, 40, 40)  # the painted square
BODY = {"prompt": "a red door", "sampler_name": "Euler", "steps": 2, "seed": 3, "denoising_strength": 1.0,
        "init_images": [encoded(INIT)], "mask": encoded(box_mask(64, 64, BOX)), "mask_blur": 4}
# mask_blur 4: a kernel of 2 * int(2.5 * 4 + 0.5) + 1 = 21 taps, so the blurred mask reaches 10 px out.
FAR = np.ones((64, 64), dtype=bool)
FAR[BOX[1] - 10:BOX[3] + 10, BOX[0] - 10:BOX[2] + 10] = False


@pytest.fixture(scope="module")
def inpaint_worker(tiny_model: TinyModel) -> Iterator[ServerThread]:
    with start_worker(tiny_model, models=[tiny_model.base]) as server:
        server.wait_ready()
        yield server


@pytest.fixture
def http(inpaint_worker: ServerThread) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=inpaint_worker.url, timeout=120) as c:
        yield c


def inpaint(client: httpx.Client, **body) -> tuple[np.ndarray, dict]:
    response = client.post("/sdapi/v1/img2img", json={**BODY, **body})
    assert response.status_code == 200, response.text
    data = response.json()
    return pixels(data["images"][0]), json.loads(data["info"])


def changed(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b.astype(np.int16)).mean())


@pytest.mark.parametrize(
    ("full_res", "keys"),
    [
        pytest.param(False, "Denoising strength: 1.0, Mask blur: 4, Masked content: fill", id="whole-picture"),
        pytest.param(True, "Denoising strength: 1.0, Mask blur: 4, Inpaint area: Only masked, "
                           "Masked area padding: 32, Masked content: fill", id="only-masked"),
    ],
)
def test_outside_the_blurred_mask_stays_the_init_image(http: httpx.Client, full_res: bool, keys: str) -> None:
    image, info = inpaint(http, inpaint_full_res=full_res, inpaint_full_res_padding=32)
    init = np.asarray(INIT, dtype=np.int16)
    assert image.shape == (64, 64, 3)
    assert np.array_equal(image[FAR], init[FAR])  # every pixel the blurred mask does not reach
    assert changed(image[28:36, 28:36], init[28:36, 28:36]) > 10  # the middle of the mask: repainted
    assert keys in info["infotexts"][0]
    assert info["extra_generation_params"]["Masked content"] == "fill"
    assert info["is_using_inpainting_conditioning"] is False  # a 4-channel UNet: no mask conditioning


def test_invert_repaints_the_unmasked_part(http: httpx.Client) -> None:
    image, info = inpaint(http, inpainting_mask_invert=1, mask_blur=0, inpaint_full_res=False)
    init = np.asarray(INIT, dtype=np.int16)
    inside = (slice(BOX[1], BOX[3]), slice(BOX[0], BOX[2]))
    assert np.array_equal(image[inside], init[inside])
    assert changed(image[:16], init[:16]) > 10
    assert "Mask mode: Inpaint not masked" in info["infotexts"][0] and "Mask blur" not in info["infotexts"][0]


def test_each_masked_content_gives_its_own_picture_and_repeats(http: httpx.Client) -> None:
    body = {"inpaint_full_res": False, "denoising_strength": 0.5, "steps": 4}
    middles = {}
    for fill in range(4):
        image, info = inpaint(http, inpainting_fill=fill, **body)
        middles[fill] = image[26:38, 26:38]
        assert ("Masked content" in info["infotexts"][0]) == (fill != 1)  # A1111 writes none for "original"
    for a in range(4):
        for b in range(a + 1, 4):
            assert changed(middles[a], middles[b]) > 1, (a, b)
    again, _ = inpaint(http, inpainting_fill=2, **body)  # latent noise comes from the seed: a retry matches
    assert np.array_equal(again[26:38, 26:38], middles[2])
