"""The PyPI `webuiapi` client (0.9.x) against a pool: a gateway over two tiny-model workers.

Everything goes through the client's own methods, so the requests are exactly the ones it sends
(webuiapi/webuiapi.py): its whole default payload on txt2img/img2img (`sampler_index`,
`script_args`, `alwayson_scripts`, `hr_checkpoint_name: null`, ...), init images and masks as
`data:image/png;base64,...` URLs, and its parsing of the answers (`images` decoded with PIL, `info`
as JSON when it parses, `extra-single-image`'s single `image`, `png-info`'s `info` string and
`parameters` dict, `progress`/`interrupt`/`options` with `response.json()` and no status check,
so each of those must answer JSON).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
from PIL import Image, ImageFilter

from tests.clients.conftest import Pool
from tests.polling import wait_for

webuiapi = pytest.importorskip("webuiapi")  # in the test extra; skip only where it is not installed

SMALL = {"width": 64, "height": 64, "steps": 3, "cfg_scale": 5.0}
BASE, OTHER = "tiny/base", "tiny-b/base"


@pytest.fixture(scope="module")
def api(pool: Pool):
    host, port = pool.host_port
    return webuiapi.WebUIApi(host=host, port=port, sampler="Euler", steps=3)


@pytest.fixture
def on_base(api, pool: Pool) -> Iterator[None]:
    """The caller's model is `tiny/base` before and after (a test that changes it puts it back)."""
    api.set_options({"sd_model_checkpoint": title(pool, BASE)})
    yield
    api.set_options({"sd_model_checkpoint": title(pool, BASE)})


def title(pool: Pool, model_name: str) -> str:
    models = httpx.get(pool.url + "/sdapi/v1/sd-models", timeout=10).json()
    return next(m["title"] for m in models if m["model_name"] == model_name)


def rgb(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.int16)


def draw(api, prompt: str = "a red cat on a chair", seed: int = 5, **fields):
    result = api.txt2img(prompt=prompt, seed=seed, **{**SMALL, **fields})
    assert len(result.images) == 1, result.json
    return result


def test_the_client_waits_for_an_idle_pool_and_lists_its_models(api, pool: Pool) -> None:
    api.util_wait_for_ready(check_interval=0.05)  # GET /progress: progress 0.0 and state.job_count 0
    progress = api.get_progress()
    assert progress["progress"] == 0 and progress["state"]["job_count"] == 0
    assert {"eta_relative", "state", "current_image"} <= set(progress)

    models = api.get_sd_models()
    assert {m["model_name"] for m in models} == {BASE, OTHER}
    assert all({"title", "model_name", "hash", "sha256", "filename"} <= set(m) for m in models)
    assert api.util_get_model_names() == sorted(m["title"] for m in models)
    scripts = api.get_scripts()  # the client's constructor reads it too, to find ControlNet/ADetailer
    assert set(scripts) == {"txt2img", "img2img"} and isinstance(scripts["txt2img"], list)


def test_set_model_makes_the_callers_next_images_use_it_and_flips_no_worker(api, pool: Pool, on_base) -> None:
    before = rgb(draw(api).images[0])
    api.util_set_model(OTHER)  # find_closest: lower-cases, picks the nearest title, POSTs options
    assert api.util_get_current_model() == title(pool, OTHER)  # GET options: the caller's view

    result = draw(api)
    assert result.info["sd_model_name"] == OTHER and f"Model: {OTHER}" in result.info["infotexts"][0]
    assert not np.array_equal(rgb(result.images[0]), before)  # other weights, same seed
    for worker in pool.workers:  # a pool applies it per request; it never switches a worker for everyone
        assert httpx.get(worker.url + "/sdapi/v1/options", timeout=10).json()["sd_model_checkpoint"] == title(pool, BASE)

    api.util_set_model(BASE)
    assert np.array_equal(rgb(draw(api).images[0]), before)


@pytest.mark.parametrize("upscaler", [webuiapi.HiResUpscaler.Latent, webuiapi.HiResUpscaler.LatentNearest,
                                      webuiapi.HiResUpscaler.Lanczos, webuiapi.HiResUpscaler.Nearest])
def test_txt2img_with_hires_fix(api, on_base, upscaler) -> None:
    plain = draw(api, seed=11)
    result = draw(api, seed=11, enable_hr=True, hr_scale=2, hr_upscaler=upscaler, denoising_strength=0.5,
                  hr_second_pass_steps=2)
    assert result.images[0].size == (128, 128)
    info = result.info
    assert info["seed"] == 11 and info["all_seeds"] == [11]
    infotext = info["infotexts"][0]
    for part in ("Seed: 11", "Size: 64x64", "Hires upscale: 2", f"Hires upscaler: {upscaler.value}",
                 "Hires steps: 2", "Denoising strength: 0.5"):
        assert part in infotext, (part, infotext)
    assert plain.images[0].size == (64, 64) and "Hires" not in plain.info["infotexts"][0]
    again = draw(api, seed=11, enable_hr=True, hr_scale=2, hr_upscaler=upscaler, denoising_strength=0.5,
                 hr_second_pass_steps=2)
    assert np.array_equal(rgb(again.images[0]), rgb(result.images[0]))  # same seed, same pixels, either worker


def test_hires_fix_by_target_size(api, on_base) -> None:
    result = draw(api, seed=3, enable_hr=True, hr_resize_x=96, hr_resize_y=128, hr_upscaler="Latent",
                  denoising_strength=0.6, hr_second_pass_steps=2)
    assert result.images[0].size == (96, 128)
    assert "Hires resize: 96x128" in result.info["infotexts"][0]


def test_img2img_through_the_client(api, on_base) -> None:
    init = draw(api, seed=21).images[0]
    first = api.img2img(images=[init], prompt="a blue dog", seed=9, denoising_strength=0.5, **SMALL)
    assert len(first.images) == 1 and first.images[0].size == (64, 64)
    assert first.info["seed"] == 9 and first.info["denoising_strength"] == 0.5
    assert "Denoising strength: 0.5" in first.info["infotexts"][0]
    out = rgb(first.images[0])
    assert not np.array_equal(out, rgb(init))
    again = api.img2img(images=[init], prompt="a blue dog", seed=9, denoising_strength=0.5, **SMALL)
    assert np.array_equal(rgb(again.images[0]), out)  # same seed, same pixels, whichever worker ran it
    # The strength acts: with 4 steps, 0.25 denoises 1 step and 0.75 three, from other noise levels.
    light = api.img2img(images=[init], prompt="a blue dog", seed=9, denoising_strength=0.25, **{**SMALL, "steps": 4})
    heavy = api.img2img(images=[init], prompt="a blue dog", seed=9, denoising_strength=0.75, **{**SMALL, "steps": 4})
    assert light.info["denoising_strength"] == 0.25 and heavy.info["denoising_strength"] == 0.75
    assert not np.array_equal(rgb(light.images[0]), rgb(heavy.images[0]))


def test_img2img_resizes_the_init_image_to_the_requested_size(api, on_base) -> None:
    init = draw(api, seed=22).images[0].resize((96, 96))
    result = api.img2img(images=[init], prompt="a cat", seed=4, denoising_strength=0.4, resize_mode=0, **SMALL)
    assert result.images[0].size == (64, 64)


def test_inpainting_with_a_mask_keeps_the_pixels_outside_it(api, on_base) -> None:
    init = draw(api, seed=31).images[0]
    mask = Image.new("L", (64, 64), 0)
    mask.paste(255, (32, 0, 64, 64))  # white: repaint the right half
    result = api.img2img(images=[init], mask_image=mask, prompt="a green tree", seed=13, denoising_strength=0.9,
                         mask_blur=4, inpainting_fill=1, inpaint_full_res=False, **SMALL)
    assert len(result.images) == 1 and result.images[0].size == (64, 64)
    out, before = rgb(result.images[0]), rgb(init)
    # The blur (4 px, A1111's kernel reaches ~10 px) softens the edge at x=32; the far left is the init image's.
    assert np.array_equal(out[:, :16], before[:, :16])
    assert not np.array_equal(out[:, 48:], before[:, 48:])
    assert result.info["seed"] == 13

    # "Only masked" (the client's default): the masked region is worked at full size and pasted back.
    masked = api.img2img(images=[init], mask_image=mask.filter(ImageFilter.MinFilter(3)), prompt="a green tree",
                         seed=13, denoising_strength=0.9, mask_blur=0, inpaint_full_res=True,
                         inpaint_full_res_padding=8, **SMALL)
    assert np.array_equal(rgb(masked.images[0])[:, :16], before[:, :16])
    assert not np.array_equal(rgb(masked.images[0])[:, 48:], before[:, 48:])


def test_extra_single_image_upscales_with_the_pools_upscalers(api, on_base) -> None:
    image = draw(api, seed=41).images[0].convert("RGB")
    nearest = api.extra_single_image(image=image, upscaler_1="Nearest", upscaling_resize=2)
    assert nearest.image.size == (128, 128)
    assert np.array_equal(rgb(nearest.image), rgb(image.resize((128, 128), Image.Resampling.NEAREST)))
    assert isinstance(nearest.info, str)  # html_info

    lanczos = api.extra_single_image(image=image, upscaler_1="Lanczos", resize_mode=1, upscaling_resize_w=96,
                                     upscaling_resize_h=80, upscaling_crop=True)
    assert lanczos.image.size == (96, 80)

    batch = api.extra_batch_images(images=[image, image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)],
                                   upscaler_1="Nearest", upscaling_resize=2)
    assert [i.size for i in batch.images] == [(128, 128), (128, 128)]
    assert np.array_equal(rgb(batch.images[0]), rgb(nearest.image))


def test_png_info_reads_back_what_the_pool_wrote(api, on_base) -> None:
    made = draw(api, prompt="a lighthouse at dusk", seed=51)
    assert made.images[0].info["parameters"] == made.info["infotexts"][0]  # the PNG carries the infotext
    read = api.png_info(made.images[0])  # the client re-encodes the PNG with its text chunks
    assert read.info == made.info["infotexts"][0]
    assert read.parameters["Prompt"] == "a lighthouse at dusk"
    assert str(read.parameters["Seed"]) == "51" and str(read.parameters["Steps"]) == "3"
    assert str(read.parameters["Size-1"]) == "64" and str(read.parameters["Size-2"]) == "64"

    assert api.png_info(Image.new("RGB", (8, 8))).info == ""  # no infotext: A1111 answers an empty one


def test_the_client_lists_loras_upscalers_and_latent_modes(api) -> None:
    assert {"tiny_all", "tiny_unet"} <= {lora["name"] for lora in api.get_loras()}
    upscalers = api.get_upscalers()
    assert {"None", "Lanczos", "Nearest"} <= {u["name"] for u in upscalers}
    assert all({"name", "model_name", "model_path", "model_url", "scale"} <= set(u) for u in upscalers)
    latent = {m["name"] for m in api.get_latent_upscale_modes()}
    assert {"Latent", "Latent (antialiased)", "Latent (bicubic)", "Latent (bicubic antialiased)",
            "Latent (nearest)", "Latent (nearest-exact)"} <= latent
    assert {"Euler", "Euler a"} <= set(api.util_get_sampler_names())
    assert "tiny-vae.safetensors" in [vae["model_name"] for vae in api.get_sd_vae()]
    for listing in (api.get_hypernetworks(), api.get_face_restorers(), api.get_realesrgan_models()):
        assert isinstance(listing, list)
    memory = api.get_memory()
    assert {"ram", "cuda"} <= set(memory)
    assert isinstance(api.get_cmd_flags(), dict)


def test_interrupt_stops_the_callers_running_job_and_progress_shows_it(api, on_base) -> None:
    steps = 60
    done: dict = {}
    runner = threading.Thread(target=lambda: done.update(result=draw(api, seed=61, steps=steps)), daemon=True)
    runner.start()

    def running() -> dict | None:
        state = api.get_progress()
        return state if state.get("state", {}).get("job_count", 0) > 0 and state.get("progress", 0) > 0 else None

    seen = wait_for(running, timeout=60, interval=0.05)
    assert 0 < seen["progress"] < 1 and seen["state"]["sampling_steps"] == steps
    assert seen["eta_relative"] >= 0
    assert api.interrupt() is not None  # JSON ({} as A1111)
    runner.join(timeout=120)
    result = done["result"]
    assert len(result.images) == 1 and result.images[0].size == (64, 64)  # A1111 returns what it has so far
    assert result.info["interrupted"] is True and result.info["sdxlpool"]["steps_done"] < steps
    api.util_wait_for_ready(check_interval=0.05)
    idle = api.get_progress()
    assert idle["progress"] == 0 and idle["state"]["job_count"] == 0
