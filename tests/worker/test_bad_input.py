"""Every kind of bad input gets a clear JSON error naming what is wrong, never a 500."""

from __future__ import annotations

import httpx
import pytest


@pytest.mark.parametrize(
    ("body", "status", "names"),
    [
        pytest.param({"steps": "many"}, 422, "steps", id="wrong-type-steps"),
        pytest.param({"width": [512]}, 422, "width", id="wrong-type-width"),
        pytest.param({"prompt": 42}, 422, "prompt", id="wrong-type-prompt"),
        pytest.param({"seed": 1.5}, 422, "seed", id="fractional-seed"),
        pytest.param({"steps": -5}, 422, "steps", id="negative-steps"),
        pytest.param({"steps": 0}, 422, "steps", id="zero-steps"),
        pytest.param({"steps": 10_000}, 422, "steps", id="over-max-steps"),
        pytest.param({"width": 100_000, "height": 100_000}, 422, "width", id="huge-size"),
        pytest.param({"width": 2048, "height": 4096}, 422, "width", id="over-max-pixels"),
        pytest.param({"width": 16}, 422, "width", id="tiny-width"),
        pytest.param({"height": -64}, 422, "height", id="negative-height"),
        pytest.param({"batch_size": 0}, 422, "batch_size", id="zero-batch"),
        pytest.param({"batch_size": 3, "n_iter": 3}, 422, "n_iter", id="over-max-images"),
        pytest.param({"cfg_scale": 500}, 422, "cfg_scale", id="cfg-out-of-range"),
        pytest.param({"seed": 2**40}, 422, "seed", id="seed-too-large"),
        pytest.param({"subseed_strength": 2}, 422, "subseed_strength", id="subseed-strength"),
        pytest.param({"refiner_switch_at": 1.5}, 422, "refiner_switch_at", id="switch-out-of-range"),
        pytest.param({"prompt": "x" * 10_240}, 422, "prompt", id="10kB-prompt"),
        pytest.param({"negative_prompt": "y" * 10_240}, 422, "negative_prompt", id="10kB-negative"),
        pytest.param({"prompt": "nul\x00byte"}, 422, "prompt", id="nul-in-prompt"),
        pytest.param({"sampler_name": "Warp Drive"}, 404, "Warp Drive", id="unknown-sampler"),
        pytest.param({"sampler_name": "Euler", "scheduler": "Wobbly"}, 404, "Wobbly", id="unknown-scheduler"),
        pytest.param({"sampler_name": "Euler a", "scheduler": "Karras"}, 422, "scheduler", id="unsupported-pair"),
        pytest.param({"refiner_checkpoint": "nope.safetensors"}, 404, "nope.safetensors", id="unknown-refiner"),
        pytest.param({"refiner_checkpoint": "tiny/base"}, 404, "refiner_checkpoint", id="base-as-refiner"),
        pytest.param({"override_settings": {"sd_model_checkpoint": "ghost"}}, 404, "ghost", id="unknown-override"),
        pytest.param({"override_settings": {"CLIP_stop_at_last_layers": "two"}}, 422, "CLIP_stop_at_last_layers",
                     id="override-wrong-type"),
        pytest.param({"override_settings": "yes"}, 422, "override_settings", id="override-not-object"),
    ],
)
def test_bad_txt2img_bodies(client: httpx.Client, body: dict, status: int, names: str) -> None:
    response = client.post("/sdapi/v1/txt2img", json={"prompt": "p", "steps": 2, **body})
    assert response.status_code == status, response.text
    error = response.json()
    assert error["error"] in {"invalid_request", "not_found"}
    assert names in error["detail"]


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b'{"prompt": "unterminated', id="truncated"),
        pytest.param(b"not json at all", id="garbage"),
        pytest.param(b"[1, 2, 3]", id="array-not-object"),
        pytest.param(b"", id="empty"),
        pytest.param(b'{"prompt": "\xff\xfe"}', id="invalid-utf8"),
    ],
)
def test_malformed_json_is_422(client: httpx.Client, raw: bytes) -> None:
    response = client.post("/sdapi/v1/txt2img", content=raw, headers={"content-type": "application/json"})
    assert response.status_code == 422, response.text
    assert response.json()["error"] == "invalid_request"
    assert response.json()["detail"]


def test_bad_options_are_rejected_before_anything_changes(client: httpx.Client) -> None:
    before = client.get("/sdapi/v1/options").json()
    response = client.post("/sdapi/v1/options", json={"eta_noise_seed_delta": 31337,
                                                      "sd_model_checkpoint": "missing-model"})
    assert response.status_code == 404
    assert "missing-model" in response.json()["detail"] and "tiny/base" in response.json()["detail"]
    after = client.get("/sdapi/v1/options").json()
    assert after == before  # nothing applied, not even the valid key
    bad_type = client.post("/sdapi/v1/options", json={"CLIP_stop_at_last_layers": 99})
    assert bad_type.status_code == 422 and "CLIP_stop_at_last_layers" in bad_type.json()["detail"]
    not_object = client.post("/sdapi/v1/options", json=["x"])
    assert not_object.status_code == 422


def test_unknown_route_and_method(client: httpx.Client) -> None:
    assert client.get("/sdapi/v1/nonexistent").status_code == 404
    assert client.get("/sdapi/v1/txt2img").status_code == 405
