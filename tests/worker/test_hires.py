"""Hires fix on txt2img through real HTTP on the tiny model: sizes, upscalers, reproducibility,
A1111's infotext fields, progress over both passes, bad input, and png-info reading it back."""

from __future__ import annotations

import json

import httpx
import numpy as np
import pytest

from tests.polling import wait_for
from tests.worker.imaging import decode, pixels
from tests.worker.test_queue_progress import Background

HIRES = {"prompt": "a lighthouse at dusk", "steps": 3, "width": 64, "height": 64, "seed": 5, "sampler_name": "Euler",
         "enable_hr": True, "hr_scale": 2, "denoising_strength": 0.5, "hr_second_pass_steps": 2}


_answers: dict[str, tuple[list[str], dict]] = {}  # body -> answer: tests share identical requests (CPU time)


def hires(client: httpx.Client, *, fresh: bool = False, **body) -> tuple[list[str], dict]:
    """A hires txt2img; an identical earlier request's answer unless `fresh` (the worker is deterministic,
    which the tests asking for `fresh` answers check)."""
    key = json.dumps({**HIRES, **body}, sort_keys=True)
    if key not in _answers or fresh:
        response = client.post("/sdapi/v1/txt2img", json={**HIRES, **body})
        assert response.status_code == 200, response.text
        data = response.json()
        _answers[key] = data["images"], json.loads(data["info"])
    return _answers[key]


def fields(infotext: str) -> dict[str, str]:
    from sdxlpool.worker.infotext import parse_infotext

    return parse_infotext(infotext)


def test_hires_scale_gives_the_hires_size_and_a1111_infotext(client: httpx.Client) -> None:
    images, info = hires(client, hr_upscaler="Lanczos", negative_prompt="blurry, dark")
    assert decode(images[0]).size == (128, 128)
    assert (info["width"], info["height"]) == (64, 64)  # A1111 reports the first pass's size
    assert info["denoising_strength"] == 0.5
    text = info["infotexts"][0]
    last = text.split("\n")[-1]
    assert "Size: 64x64" in last
    assert "Denoising strength: 0.5, " in last
    assert last.index("Denoising strength") < last.index("Hires upscale: 2, Hires steps: 2, Hires upscaler: Lanczos")
    for absent in ("Hires sampler", "Hires prompt", "Hires negative prompt", "Hires schedule type", "Hires resize"):
        assert absent not in text
    assert info["sdxlpool"]["steps_done"] == 3 + 2  # both passes' steps were run and counted


def test_hires_defaults_latent_and_writes_only_what_was_set(client: httpx.Client) -> None:
    images, info = hires(client, hr_second_pass_steps=0, hr_scale=1.5)
    assert decode(images[0]).size == (96, 96)
    last = info["infotexts"][0].split("\n")[-1]
    assert "Hires upscale: 1.5" in last
    assert "Hires steps" not in last and "Hires upscaler" not in last
    assert info["sdxlpool"]["steps_done"] == 3 + 3  # the second pass runs the first pass's steps


@pytest.mark.parametrize(
    ("size", "resize", "expected", "infotext"),
    [
        pytest.param((64, 128), {"hr_resize_x": 96}, (96, 192), "Hires resize: 96x0", id="x-only-keeps-aspect"),
        pytest.param((64, 64), {"hr_resize_x": 128, "hr_resize_y": 96}, (128, 96), "Hires resize: 128x96",
                     id="both-cover-then-crop"),
    ],
)
def test_hires_resize_to_given_sides(client: httpx.Client, size: tuple[int, int], resize: dict,
                                     expected: tuple[int, int], infotext: str) -> None:
    images, info = hires(client, width=size[0], height=size[1], hr_upscaler="Nearest", **resize)
    assert decode(images[0]).size == expected
    assert infotext in info["infotexts"][0] and "Hires upscale:" not in info["infotexts"][0]


def test_latent_and_lanczos_differ_and_each_repeats(client: httpx.Client) -> None:
    latent, _ = hires(client)  # hr_upscaler unset: "Latent"
    latent_again, _ = hires(client, fresh=True, hr_upscaler="Latent")
    lanczos, _ = hires(client, hr_upscaler="Lanczos", negative_prompt="blurry, dark")
    lanczos_again, _ = hires(client, fresh=True, hr_upscaler="Lanczos", negative_prompt="blurry, dark")
    nearest_exact, _ = hires(client, hr_upscaler="Latent (nearest-exact)")
    assert np.array_equal(pixels(latent[0]), pixels(latent_again[0]))
    assert np.array_equal(pixels(lanczos[0]), pixels(lanczos_again[0]))
    plain_lanczos, _ = hires(client, hr_upscaler="Lanczos")
    assert np.abs(pixels(latent[0]) - pixels(plain_lanczos[0])).mean() > 1
    assert np.abs(pixels(latent[0]) - pixels(nearest_exact[0])).mean() > 0.5


def test_second_pass_denoises_from_each_images_seed(client: httpx.Client) -> None:
    """A batch's second image is the image of seed + 1 on its own (noise per image, on the CPU)."""
    batch, info = hires(client, batch_size=2, seed=40)
    single, _ = hires(client, seed=41)
    assert info["all_seeds"] == [40, 41]
    assert np.abs(pixels(batch[1]) - pixels(single[0])).max() <= 2
    assert np.abs(pixels(batch[0]) - pixels(single[0])).mean() > 1


def test_hires_prompt_sampler_and_schedule_are_applied_and_written(client: httpx.Client) -> None:
    plain, _ = hires(client)
    other, info = hires(client, hr_prompt="a red castle, at night", hr_negative_prompt="fog",
                        hr_sampler_name="DPM++ 2M", hr_scheduler="Karras")
    assert np.abs(pixels(plain[0]) - pixels(other[0])).mean() > 0.5
    parsed = fields(info["infotexts"][0])
    assert parsed["Hires prompt"] == "a red castle, at night"  # quoted in the infotext, read back whole
    assert parsed["Hires negative prompt"] == "fog"
    assert parsed["Hires sampler"] == "DPM++ 2M"
    assert parsed["Hires schedule type"] == "Karras"
    same, info = hires(client, hr_sampler_name="Euler", hr_prompt=HIRES["prompt"])
    assert np.array_equal(pixels(same[0]), pixels(plain[0]))  # the same choices as the first pass
    assert "Hires sampler" not in info["infotexts"][0] and "Hires prompt" not in info["infotexts"][0]


def test_hires_with_refiner_hands_over_in_the_first_pass(client: httpx.Client) -> None:
    images, info = hires(client, refiner_checkpoint="tiny/refiner", refiner_switch_at=0.5)
    assert decode(images[0]).size == (128, 128)
    last = info["infotexts"][0].split("\n")[-1]
    assert "Refiner: tiny/refiner" in last and "Hires refiner: first pass" in last
    assert last.index("Hires upscale:") < last.index("Refiner:")


def test_progress_counts_both_passes(client: httpx.Client, worker) -> None:
    body = {**HIRES, "steps": 4, "hr_second_pass_steps": 16, "denoising_strength": 0.6}
    job = Background(worker.url, body)
    seen = wait_for(lambda: (p := client.get("/sdapi/v1/progress?skip_current_image=true").json())["state"][
        "sampling_step"] > 4 and p, timeout=120)
    assert seen["state"]["sampling_steps"] == 4 + 16  # A1111 counts the hires steps on after the first pass's
    response = job.result()
    assert response.status_code == 200, response.text
    assert json.loads(response.json()["info"])["sdxlpool"]["steps_done"] == 20


@pytest.mark.parametrize(
    ("body", "field"),
    [
        pytest.param({"hr_upscaler": "ESRGAN_4x"}, "hr_upscaler", id="unknown-upscaler"),
        pytest.param({"hr_upscaler": "latent"}, "hr_upscaler", id="names-are-exact"),
        pytest.param({"hr_sampler_name": "Warp Drive"}, "hr_sampler_name", id="unknown-sampler"),
        pytest.param({"hr_sampler_name": "Euler a", "hr_scheduler": "Karras"}, "hr_scheduler", id="unsupported-pair"),
        pytest.param({"hr_scale": 0.5}, "hr_scale", id="scale-below-one"),
        pytest.param({"hr_resize_x": -8}, "hr_resize_x", id="negative-resize"),
        pytest.param({"denoising_strength": 1.5}, "denoising_strength", id="strength-out-of-range"),
    ],
)
def test_bad_hires_fields_are_422_naming_them(client: httpx.Client, body: dict, field: str) -> None:
    response = client.post("/sdapi/v1/txt2img", json={**HIRES, **body})
    assert response.status_code == 422, response.text
    assert response.json()["detail"].startswith(field + ":")


def test_lists_of_upscalers_and_latent_modes(client: httpx.Client) -> None:
    from sdxlpool.api.generation import LATENT_UPSCALE_MODES

    upscalers = client.get("/sdapi/v1/upscalers").json()
    assert [u["name"] for u in upscalers[:3]] == ["None", "Lanczos", "Nearest"]
    assert all(set(u) == {"name", "model_name", "model_path", "model_url", "scale"} for u in upscalers)
    modes = client.get("/sdapi/v1/latent-upscale-modes").json()
    assert modes == [{"name": name} for name in LATENT_UPSCALE_MODES]
    assert modes[0] == {"name": "Latent"}


def test_png_info_reads_a_hires_infotext_back(client: httpx.Client) -> None:
    images, info = hires(client, hr_upscaler="Lanczos", negative_prompt="blurry, dark")  # the first test's
    answer = client.post("/sdapi/v1/png-info", json={"image": images[0]})
    assert answer.status_code == 200, answer.text
    data = answer.json()
    assert data["info"] == info["infotexts"][0]
    params = data["parameters"]
    assert params["Prompt"] == HIRES["prompt"] and params["Negative prompt"] == "blurry, dark"
    assert (params["Size-1"], params["Size-2"]) == ("64", "64")
    assert params["Hires upscale"] == "2" and params["Hires upscaler"] == "Lanczos"
    assert params["Denoising strength"] == "0.5" and params["Seed"] == "5"
    assert params["Hires sampler"] == "Use same sampler"  # A1111's defaults for what is not written
    assert "parameters" not in data["items"]


@pytest.mark.parametrize(("steps", "strength", "total"), [(10, 0.5, 20), (2, 0.5, 4), (3, 1.0, 3), (7, 0.3, 23),
                                                          (20, 0.75, 26), (1, 0.01, 100)])
def test_hires_schedule_runs_exactly_the_hires_steps(steps: int, strength: float, total: int) -> None:
    """A1111 stretches the schedule to int(steps / strength) and runs its last `steps`; diffusers runs
    the last int(n x strength) of n: the strength handed to it must give exactly `steps`."""
    from sdxlpool.worker.generate import hires_schedule

    n, handed = hires_schedule(steps, strength)
    assert n == total
    assert min(int(n * handed), n) == steps
