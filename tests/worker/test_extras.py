"""The extras routes and png-info through real HTTP: A1111's sizes and modes, the second upscaler's
blend, face restoration not applied, text chunks kept, and bad input as 422 naming the field."""

from __future__ import annotations

import base64
import io

import httpx
import numpy as np
import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from tests.worker.imaging import decode


def png(size: tuple[int, int] = (64, 48), text: dict[str, str] | None = None, mode: str = "RGB") -> str:
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8), "RGB").convert(mode)
    meta = PngInfo()
    for key, value in (text or {}).items():
        meta.add_text(key, value)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=meta)
    return base64.b64encode(buffer.getvalue()).decode()


def single(client: httpx.Client, **body) -> httpx.Response:
    return client.post("/sdapi/v1/extra-single-image", json={"image": png(), **body})


@pytest.mark.parametrize(
    ("body", "size", "html"),
    [
        pytest.param({"upscaler_1": "Lanczos", "upscaling_resize": 2}, (128, 96),
                     "Postprocess upscale by: 2, Postprocess upscaler: Lanczos", id="by-scale"),
        pytest.param({"upscaler_1": "Nearest", "upscaling_resize": 1.5}, (96, 72),
                     "Postprocess upscale by: 1.5, Postprocess upscaler: Nearest", id="by-fraction"),
        pytest.param({"upscaler_1": "Lanczos", "resize_mode": 1, "upscaling_resize_w": 100, "upscaling_resize_h": 100},
                     (100, 100), "Postprocess upscale to: 100x100, Postprocess crop to: 100x100", id="to-size-crop"),
        pytest.param({"upscaler_1": "Lanczos", "resize_mode": 1, "upscaling_resize_w": 100, "upscaling_resize_h": 100,
                      "upscaling_crop": False}, (128, 96), "Postprocess upscale to: 100x100", id="to-size-no-crop"),
        pytest.param({"upscaler_1": "None", "upscaling_resize": 4}, (64, 48), "<p></p>", id="none-leaves-it"),
    ],
)
def test_extras_sizes_and_modes(client: httpx.Client, body: dict, size: tuple[int, int], html: str) -> None:
    response = single(client, **body)
    assert response.status_code == 200, response.text
    data = response.json()
    assert decode(data["image"]).size == size
    assert html in data["html_info"] and data["html_info"].startswith("<p>")


def test_second_upscaler_is_blended_by_its_visibility(client: httpx.Client) -> None:
    def image(**body) -> np.ndarray:
        response = single(client, upscaler_1="Lanczos", upscaling_resize=2, **body)
        assert response.status_code == 200, response.text
        return np.asarray(decode(response.json()["image"]), dtype=np.float64)

    lanczos = image()
    nearest = np.asarray(decode(single(client, upscaler_1="Nearest", upscaling_resize=2).json()["image"]), float)
    half = image(upscaler_2="Nearest", extras_upscaler_2_visibility=0.5)
    assert np.abs(half - (lanczos + nearest) / 2).max() <= 1  # PIL's blend rounds per channel
    unset = image(upscaler_2="Nearest", extras_upscaler_2_visibility=0)
    assert np.array_equal(unset, lanczos)


def test_text_chunks_are_kept_and_postprocessing_added(client: httpx.Client) -> None:
    source = png(text={"parameters": "a cat\nSteps: 4, Seed: 1, Size: 64x48"}, mode="RGBA")
    response = client.post("/sdapi/v1/extra-single-image",
                           json={"image": source, "upscaler_1": "Lanczos", "upscaling_resize": 2})
    result = decode(response.json()["image"])
    assert result.mode == "RGB"  # A1111 converts the input to RGB first
    assert result.text["parameters"] == "a cat\nSteps: 4, Seed: 1, Size: 64x48"
    assert result.text["postprocessing"] == "Postprocess upscale by: 2, Postprocess upscaler: Lanczos"
    info = client.post("/sdapi/v1/png-info", json={"image": response.json()["image"]}).json()
    assert info["info"] == "a cat\nSteps: 4, Seed: 1, Size: 64x48"
    assert info["items"] == {"postprocessing": "Postprocess upscale by: 2, Postprocess upscaler: Lanczos"}
    assert info["parameters"]["Prompt"] == "a cat" and info["parameters"]["Size-2"] == "48"


def test_batch_images(client: httpx.Client) -> None:
    files = [{"data": png((64, 48)), "name": "a.png"}, {"data": png((32, 32)), "name": "b.png"}]
    response = client.post("/sdapi/v1/extra-batch-images",
                           json={"imageList": files, "upscaler_1": "Nearest", "upscaling_resize": 2})
    assert response.status_code == 200, response.text
    assert [decode(image).size for image in response.json()["images"]] == [(128, 96), (64, 64)]


def test_face_restoration_is_listed_as_not_applied_or_refused_when_strict(client: httpx.Client) -> None:
    lenient = single(client, upscaler_1="Lanczos", gfpgan_visibility=0.5)
    assert lenient.status_code == 200
    assert "Not applied: gfpgan_visibility: 0.5 (no face restorer weights on this worker)" in lenient.json()["html_info"]
    strict = client.post("/sdapi/v1/extra-single-image", headers={"X-SDXL-Strict": "1"},
                         json={"image": png(), "upscaler_1": "Lanczos", "codeformer_visibility": 1})
    assert strict.status_code == 422 and "codeformer_visibility" in strict.json()["detail"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        pytest.param({"upscaler_1": "ESRGAN_4x"}, "upscaler_1", id="unknown-upscaler-1"),
        pytest.param({"upscaler_1": "Lanczos", "upscaler_2": "SwinIR 4x"}, "upscaler_2", id="unknown-upscaler-2"),
        pytest.param({"upscaler_1": "Latent"}, "upscaler_1", id="latent-is-hires-only"),
        pytest.param({"upscaler_1": "Lanczos", "image": "bm90IGFuIGltYWdl"}, "image", id="not-an-image"),
        pytest.param({"upscaler_1": "Lanczos", "upscaling_resize": 1000}, "upscaling_resize", id="huge-result"),
        pytest.param({"upscaler_1": "Lanczos", "upscaling_resize": 0.01}, "upscaling_resize", id="empty-result"),
        pytest.param({"upscaler_1": "Lanczos", "resize_mode": 2}, "resize_mode", id="resize-mode-2"),
    ],
)
def test_bad_extras_are_422_naming_the_field(client: httpx.Client, body: dict, field: str) -> None:
    response = single(client, **body)
    assert response.status_code == 422, response.text
    assert field in response.json()["detail"]


def test_batch_names_the_bad_image(client: httpx.Client) -> None:
    files = [{"data": png(), "name": "a.png"}, {"data": "AAAA", "name": "b.png"}]
    response = client.post("/sdapi/v1/extra-batch-images", json={"imageList": files, "upscaler_1": "Lanczos"})
    assert response.status_code == 422 and "imageList.1.data" in response.json()["detail"]


def test_png_info_of_an_image_without_infotext_and_of_none(client: httpx.Client) -> None:
    plain = client.post("/sdapi/v1/png-info", json={"image": png()}).json()
    assert plain == {"info": "", "items": {}, "parameters": {}}
    assert client.post("/sdapi/v1/png-info", json={"image": ""}).json()["info"] == ""
    bad = client.post("/sdapi/v1/png-info", json={"image": "bm90IGFuIGltYWdl"})
    assert bad.status_code == 422 and bad.json()["detail"].startswith("image")


def test_png_info_reads_a_jpeg_user_comment_as_a1111_writes_it(client: httpx.Client) -> None:
    text = "a cat, äöü\nNegative prompt: dog\nSteps: 4, Sampler: Euler, Seed: 9, Size: 64x48"
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0x9286] = b"UNICODE\x00" + text.encode("utf-16-be")
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48)).save(buffer, format="JPEG", exif=exif)
    answer = client.post("/sdapi/v1/png-info", json={"image": base64.b64encode(buffer.getvalue()).decode()}).json()
    assert answer["info"] == text
    assert answer["parameters"]["Negative prompt"] == "dog" and answer["parameters"]["Seed"] == "9"
