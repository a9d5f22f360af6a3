"""Options, checkpoint switching, and the catalogue endpoints A1111 clients read on connect."""

from __future__ import annotations

import json

import httpx
import numpy as np

from tests.worker.imaging import pixels


def test_sd_models_lists_every_loaded_checkpoint(client: httpx.Client) -> None:
    models = {m["model_name"]: m for m in client.get("/sdapi/v1/sd-models").json()}
    assert set(models) == {"tiny/base", "tiny-b/base", "tiny/refiner"}
    for model in models.values():
        assert model["title"] == f"{model['model_name']} [{model['hash']}]"
        assert len(model["hash"]) == 10 and model["sha256"].startswith(model["hash"])
    assert models["tiny/base"]["hash"] != models["tiny-b/base"]["hash"]


def test_switching_sd_model_checkpoint(client: httpx.Client) -> None:
    body = {"prompt": "a boat", "steps": 3, "seed": 77}
    options = client.get("/sdapi/v1/options").json()
    assert options["sd_model_checkpoint"].startswith("tiny/base [")
    first = client.post("/sdapi/v1/txt2img", json=body).json()
    try:
        assert client.post("/sdapi/v1/options", json={"sd_model_checkpoint": "tiny-b/base"}).status_code == 200
        assert client.get("/sdapi/v1/options").json()["sd_model_checkpoint"].startswith("tiny-b/base [")
        switched = client.post("/sdapi/v1/txt2img", json=body).json()
        assert json.loads(switched["info"])["sd_model_name"] == "tiny-b/base"
        assert not np.array_equal(pixels(first["images"][0]), pixels(switched["images"][0]))
        metrics = client.get("/metrics").text
        assert 'model="tiny-b/base [' in metrics and 'model="tiny/base [' not in metrics
    finally:
        client.post("/sdapi/v1/options", json={"sd_model_checkpoint": "tiny/base"})
    back = client.post("/sdapi/v1/txt2img", json=body).json()
    assert np.array_equal(pixels(first["images"][0]), pixels(back["images"][0]))


def test_options_round_trip_unknown_keys_and_ensd(client: httpx.Client) -> None:
    body = {"prompt": "a tree", "steps": 3, "seed": 5, "sampler_name": "Euler a"}
    plain = client.post("/sdapi/v1/txt2img", json=body).json()
    try:
        assert client.post("/sdapi/v1/options", json={"eta_noise_seed_delta": 31337,
                                                      "samples_format": "png", "some_extension_key": 1}).status_code == 200
        options = client.get("/sdapi/v1/options").json()
        assert options["eta_noise_seed_delta"] == 31337 and options["some_extension_key"] == 1
        # ENSD changes ancestral samplers' step noise, as in A1111.
        shifted = client.post("/sdapi/v1/txt2img", json=body).json()
        assert not np.array_equal(pixels(plain["images"][0]), pixels(shifted["images"][0]))
    finally:
        client.post("/sdapi/v1/options", json={"eta_noise_seed_delta": 0})


def test_samplers_and_schedulers_lists(client: httpx.Client) -> None:
    samplers = {s["name"]: s for s in client.get("/sdapi/v1/samplers").json()}
    for name in ("Euler", "Euler a", "Heun", "LMS", "DPM2", "DPM2 a", "DPM++ 2M", "DPM++ 2M SDE", "DPM++ SDE",
                 "DDIM", "UniPC"):
        assert name in samplers
    assert "karras" in samplers["DPM++ 2M"]["options"]["schedulers"]
    assert "karras" not in samplers["Euler a"]["options"]["schedulers"]
    assert samplers["Euler a"]["aliases"] == ["k_euler_a"]
    schedulers = [s["name"] for s in client.get("/sdapi/v1/schedulers").json()]
    assert schedulers[:3] == ["automatic", "uniform", "karras"]


def test_client_probe_endpoints(client: httpx.Client) -> None:
    for path in ("/sdapi/v1/sd-vae", "/sdapi/v1/loras", "/sdapi/v1/prompt-styles"):
        assert client.get(path).json() == []
    assert [u["name"] for u in client.get("/sdapi/v1/upscalers").json()] == ["None", "Lanczos", "Nearest"]
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json()["status"] == "ready"
