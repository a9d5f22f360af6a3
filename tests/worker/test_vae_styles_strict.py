"""VAE choice, styles and strict mode through real HTTP on the tiny model and its assets
(`write_tiny_model`: DIR/vae/tiny-vae.safetensors, DIR/styles.csv)."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.api.test_ignored import WEBUIAPI_DEFAULT_PAYLOAD
from tests.conftest import ServerThread, TinyModel, start_worker
from tests.worker.imaging import decode, pixels

SMALL = {"steps": 3, "width": 64, "height": 64, "sampler_name": "Euler", "seed": 11}
VAE = "tiny-vae.safetensors"


@pytest.fixture(scope="module")
def assets(tiny_model: TinyModel, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model's vae/ folder and a copy of its styles.csv that tests may change."""
    folder = tmp_path_factory.mktemp("assets")
    shutil.copy(tiny_model.base.parent / "styles.csv", folder / "styles.csv")
    return folder


@pytest.fixture(scope="module")
def served(tiny_model: TinyModel, assets: Path) -> Iterator[ServerThread]:
    with start_worker(tiny_model, models=[tiny_model.base], refiner=None, vae_dir=tiny_model.base.parent / "vae",
                      styles=assets / "styles.csv") as server:
        server.wait_ready()
        yield server


@pytest.fixture
def http(served: ServerThread) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=served.url, timeout=120) as client:
        yield client


def generate(client: httpx.Client, headers: dict | None = None, **fields) -> tuple[np.ndarray, dict]:
    response = client.post("/sdapi/v1/txt2img", json={"prompt": "a lighthouse", **SMALL, **fields}, headers=headers)
    assert response.status_code == 200, response.text
    data = response.json()
    return pixels(data["images"][0]), json.loads(data["info"])


# -- VAE ----------------------------------------------------------------------------------------------

def test_sd_vae_lists_the_vae_folder(http: httpx.Client, tiny_model: TinyModel) -> None:
    assert http.get("/sdapi/v1/sd-vae").json() == [
        {"model_name": VAE, "filename": str(tiny_model.base.parent / "vae" / VAE)}]
    assert http.post("/sdapi/v1/refresh-vae").status_code == 200


def test_a_chosen_vae_decodes_and_is_named_in_info_and_infotext(http: httpx.Client, tiny_model: TinyModel) -> None:
    baseline, info = generate(http)
    assert (info["sd_vae_name"], info["sd_vae_hash"]) == (None, None)
    assert "VAE" not in info["infotexts"][0]
    other, info = generate(http, override_settings={"sd_vae": VAE})
    assert not np.array_equal(baseline, other), "the chosen VAE was not used"
    digest = hashlib.sha256((tiny_model.base.parent / "vae" / VAE).read_bytes()).hexdigest()[:10]
    assert (info["sd_vae_name"], info["sd_vae_hash"]) == (VAE, digest)
    assert f"Model: tiny/base, VAE hash: {digest}, VAE: {VAE}, " in info["infotexts"][0]
    again, _ = generate(http, override_settings={"sd_vae": VAE})  # cached, and the same
    assert np.array_equal(other, again)
    for own in ("Automatic", "None"):  # the checkpoint's own VAE (no file next to a folder checkpoint)
        image, info = generate(http, override_settings={"sd_vae": own})
        assert np.array_equal(baseline, image), own
        assert info["sd_vae_name"] is None
    after, _ = generate(http)  # an override is for one request
    assert np.array_equal(baseline, after)


def test_the_vae_option_persists_until_changed(http: httpx.Client) -> None:
    baseline, _ = generate(http)
    with_vae, _ = generate(http, override_settings={"sd_vae": VAE})
    try:
        assert http.post("/sdapi/v1/options", json={"sd_vae": VAE}).status_code == 200
        assert http.get("/sdapi/v1/options").json()["sd_vae"] == VAE
        image, info = generate(http)
        assert np.array_equal(with_vae, image) and info["sd_vae_name"] == VAE
        image, _ = generate(http, override_settings={"sd_vae": "None"})  # a request may still take the own one
        assert np.array_equal(baseline, image)
    finally:
        assert http.post("/sdapi/v1/options", json={"sd_vae": "Automatic"}).status_code == 200
    image, _ = generate(http)
    assert np.array_equal(baseline, image)


@pytest.mark.parametrize("bad", ["nope.safetensors", "tiny-vae", 3])
def test_an_unknown_vae_is_a_422_naming_it(http: httpx.Client, bad) -> None:
    answer = http.post("/sdapi/v1/txt2img", json={"prompt": "x", **SMALL, "override_settings": {"sd_vae": bad}})
    assert answer.status_code == 422
    assert answer.json()["detail"].startswith("override_settings.sd_vae: ") and repr(bad) in answer.json()["detail"]
    answer = http.post("/sdapi/v1/options", json={"sd_vae": bad})
    assert answer.status_code == 422 and answer.json()["detail"].startswith("sd_vae: ")
    assert http.get("/sdapi/v1/options").json()["sd_vae"] == "Automatic"


# -- styles -------------------------------------------------------------------------------------------

def test_prompt_styles_lists_the_file(http: httpx.Client) -> None:
    assert http.get("/sdapi/v1/prompt-styles").json() == [
        {"name": "photo", "prompt": "photograph, 35mm, sharp focus", "negative_prompt": "drawing, painting"},
        {"name": "cinematic", "prompt": "cinematic still of {prompt}, film grain", "negative_prompt": ""},
        {"name": "clean", "prompt": "", "negative_prompt": "lowres, blurry, watermark"},
    ]


def test_styles_make_the_image_of_the_merged_prompt(http: httpx.Client) -> None:
    styled, info = generate(http, prompt="a cat", negative_prompt="ugly", styles=["photo", "cinematic", "clean"])
    merged = "cinematic still of a cat, photograph, 35mm, sharp focus, film grain"
    merged_negative = "ugly, drawing, painting, lowres, blurry, watermark"
    by_hand, _ = generate(http, prompt=merged, negative_prompt=merged_negative)
    plain, _ = generate(http, prompt="a cat", negative_prompt="ugly")
    assert np.array_equal(styled, by_hand)
    assert not np.array_equal(styled, plain)
    # A1111: info and infotext carry the styled prompts, `styles` the names
    assert (info["prompt"], info["negative_prompt"], info["styles"]) == (
        merged, merged_negative, ["photo", "cinematic", "clean"])
    assert info["all_prompts"] == [merged]
    assert info["infotexts"][0].startswith(f"{merged}\nNegative prompt: {merged_negative}\nSteps: 3,")
    assert info["sdxlpool"]["ignored"] == []


def test_an_unknown_style_is_listed_and_the_rest_applied(http: httpx.Client) -> None:
    image, info = generate(http, prompt="a cat", styles=["nope", "photo"])
    by_hand, _ = generate(http, prompt="a cat, photograph, 35mm, sharp focus", negative_prompt="drawing, painting")
    assert np.array_equal(image, by_hand)
    assert info["sdxlpool"]["ignored"] == ["styles: nope (no such style)"]


def test_the_styles_file_is_read_again_when_it_changes(http: httpx.Client, assets: Path) -> None:
    path = assets / "styles.csv"
    before = path.read_text(encoding="utf-8-sig")
    try:
        path.write_text(before + 'sketch,"pencil sketch of {prompt}",\n', encoding="utf-8")
        assert [s["name"] for s in http.get("/sdapi/v1/prompt-styles").json()][-1] == "sketch"
        _, info = generate(http, prompt="a cat", styles=["sketch"])
        assert info["prompt"] == "pencil sketch of a cat" and info["sdxlpool"]["ignored"] == []
    finally:
        path.write_text(before, encoding="utf-8")
    assert "sketch" not in [s["name"] for s in http.get("/sdapi/v1/prompt-styles").json()]


# -- ignored and strict -------------------------------------------------------------------------------

def test_the_webuiapi_default_payload_ignores_nothing(http: httpx.Client) -> None:
    # the client's defaults, but small and fast (size and steps are not in question here)
    _, info = generate(http, **{**WEBUIAPI_DEFAULT_PAYLOAD, **SMALL, "sampler_name": "Euler a"})
    assert info["sdxlpool"]["ignored"] == []


def test_strict_header_refuses_what_would_not_be_applied(http: httpx.Client) -> None:
    body = {"prompt": "a cat", **SMALL, "restore_faces": True, "styles": ["nope"], "s_min_uncond": 2}
    answer = http.post("/sdapi/v1/txt2img", json=body, headers={"X-SDXL-Strict": "1"})
    assert answer.status_code == 422, answer.text
    refusal = answer.json()
    expected = ["restore_faces", "s_min_uncond", "styles: nope (no such style)"]
    assert refusal["error"] == "not_applied"
    assert [e["field"] for e in refusal["errors"]] == expected
    assert all(entry in refusal["detail"] for entry in expected)
    _, info = generate(http, **body)  # not strict: the image, and the same list
    assert info["sdxlpool"]["ignored"] == expected
    _, info = generate(http, headers={"X-SDXL-Strict": "1"}, prompt="a cat", styles=["photo"])  # nothing to refuse
    assert info["sdxlpool"]["ignored"] == []
    answer = http.post("/sdapi/v1/txt2img", json=body, headers={"X-SDXL-Strict": "maybe"})
    assert answer.status_code == 422 and answer.json()["detail"].startswith("X-SDXL-Strict: ")


def test_strict_flag_and_the_header_that_turns_it_off(tiny_model: TinyModel) -> None:
    with start_worker(tiny_model, models=[tiny_model.base], refiner=None, strict=True, warmup=False) as server:
        server.wait_ready()
        with httpx.Client(base_url=server.url, timeout=120) as client:
            body = {"prompt": "a cat", **SMALL, "tiling": True, "alwayson_scripts": {"ADetailer": {"args": [True]}}}
            answer = client.post("/sdapi/v1/txt2img", json=body)
            assert answer.status_code == 422, answer.text
            assert [e["field"] for e in answer.json()["errors"]] == ["tiling", "alwayson_scripts.ADetailer"]
            image, info = generate(client, headers={"X-SDXL-Strict": "0"}, **body)
            assert info["sdxlpool"]["ignored"] == ["tiling", "alwayson_scripts.ADetailer"]
            assert image.shape == (64, 64, 3)
            _, info = generate(client, prompt="a cat")
            assert info["sdxlpool"]["ignored"] == []


def test_png_of_a_styled_image_carries_the_styled_infotext(http: httpx.Client) -> None:
    response = http.post("/sdapi/v1/txt2img", json={"prompt": "a cat", **SMALL, "styles": ["cinematic"]})
    png = decode(response.json()["images"][0])
    assert png.info["parameters"].startswith("cinematic still of a cat, film grain\nSteps: 3,")
