"""The PyPI `webuiapi` client (a real A1111 client) against a worker with every fine-tune folder.

What an A1111 user of that client does: list the LoRAs, embeddings, VAEs and styles, then
generate with a gallery-style prompt (attention, a LoRA, an embedding, a style). The client sends
its whole default payload, so `ignored` must stay empty, and the prompt language must act.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from tests.conftest import ServerThread, TinyModel, start_worker

webuiapi = pytest.importorskip("webuiapi")  # in the test extra; skip only where it is not installed


@pytest.fixture(scope="module")
def served(tiny_model: TinyModel) -> Iterator[ServerThread]:
    assets = tiny_model.base.parent
    with start_worker(tiny_model, models=[tiny_model.base], refiner=None, lora_dir=assets / "loras",
                      vae_dir=assets / "vae", styles=assets / "styles.csv") as server:
        server.wait_ready()
        yield server


@pytest.fixture(scope="module")
def api(served: ServerThread):
    host, port = served.url.removeprefix("http://").split(":")
    return webuiapi.WebUIApi(host=host, port=int(port), sampler="Euler a", steps=3)


def draw(api, prompt: str, **fields) -> tuple[np.ndarray, dict]:
    result = api.txt2img(prompt=prompt, seed=5, width=64, height=64, **fields)
    assert len(result.images) == 1 and result.images[0].size == (64, 64)
    return np.asarray(result.images[0].convert("RGB"), dtype=np.int16), result.info


def test_the_client_lists_the_fine_tunes(api) -> None:
    assert {"tiny_all", "tiny_unet"} <= {lora["name"] for lora in api.get_loras()}
    assert "tiny-style" in api.get_embeddings()["loaded"]
    assert "tiny-vae.safetensors" in [vae["model_name"] for vae in api.get_sd_vae()]
    assert {"photo", "cinematic"} <= {style["name"] for style in api.get_prompt_styles()}


def test_a_gallery_prompt_through_the_client_is_applied_whole(api) -> None:
    plain, info = draw(api, "a red cat sitting on a chair")
    assert info["sdxlpool"]["ignored"] == []  # the client's default payload asks for nothing we skip

    weighted, info = draw(api, "(a red cat:1.3) sitting on a chair")
    assert info["sdxlpool"]["ignored"] == [] and not np.array_equal(weighted, plain)
    same, _ = draw(api, "(a red cat sitting on a chair:1.0)")
    assert np.array_equal(same, plain)

    prompt = "(a red cat:1.3) sitting on a chair, tiny-style <lora:tiny_all:0.8>"
    styled, info = draw(api, prompt, styles=["photo"])
    assert info["sdxlpool"]["ignored"] == []
    assert "<lora:tiny_all:0.8>" in info["infotexts"][0] and "Lora hashes: " in info["infotexts"][0]
    assert not np.array_equal(styled, weighted)
    assert np.array_equal(draw(api, "a red cat sitting on a chair")[0], plain)  # nothing stays behind


def test_what_the_client_asks_for_and_is_not_applied_is_named(api) -> None:
    _, info = draw(api, "a cat <lora:not_here:1>", restore_faces=True)
    assert info["sdxlpool"]["ignored"] == ["restore_faces", "prompt: <lora:not_here:1> (no such LoRA)"]
