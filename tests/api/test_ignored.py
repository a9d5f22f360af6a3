"""`info.sdxlpool.ignored`: exactly the fields that would change an A1111 image and are not applied."""

from __future__ import annotations

import pytest

from sdxlpool.api.a1111 import Txt2ImgRequest
from sdxlpool.api.generation import GenerationDefaults, RequestLimits, resolve_request
from sdxlpool.api.ignored import ignored_fields

# What the `webuiapi` PyPI client (mix1009/sdwebuiapi, WebUIApi.txt2img) sends when called with
# nothing but a prompt: every field at its default, so nothing may be listed.
WEBUIAPI_DEFAULT_PAYLOAD = {
    "enable_hr": False, "hr_scale": 2, "hr_upscaler": "Latent", "hr_second_pass_steps": 0, "hr_resize_x": 0,
    "hr_resize_y": 0, "denoising_strength": 0.7, "firstphase_width": 0, "firstphase_height": 0,
    "prompt": "a cat", "styles": [], "seed": -1, "subseed": -1, "subseed_strength": 0.0,
    "seed_resize_from_h": 0, "seed_resize_from_w": 0, "batch_size": 1, "n_iter": 1, "steps": 20,
    "cfg_scale": 7.0, "width": 512, "height": 512, "restore_faces": False, "tiling": False,
    "do_not_save_samples": False, "do_not_save_grid": False, "negative_prompt": "", "eta": 1.0,
    "s_churn": 0, "s_tmax": 0, "s_tmin": 0, "s_noise": 1, "override_settings": {},
    "override_settings_restore_afterwards": True, "sampler_name": "Euler a", "sampler_index": "Euler a",
    "script_name": None, "script_args": [], "send_images": True, "save_images": False, "alwayson_scripts": {},
}


def ignored(**fields) -> tuple[str, ...]:
    request = Txt2ImgRequest.model_validate({**WEBUIAPI_DEFAULT_PAYLOAD, **fields})
    return resolve_request(request, GenerationDefaults(), RequestLimits()).ignored_fields


@pytest.mark.parametrize("sampler", ["Euler a", "Euler", "Heun", "DPM2", "DPM2 a", "DPM++ SDE", "DPM++ 2M SDE",
                                     "DPM++ 2M", "DDIM", "UniPC", "LMS", "PLMS"])
def test_the_webuiapi_default_payload_lists_nothing_whatever_the_sampler(sampler: str) -> None:
    # eta 1.0 is the default of the k-diffusion samplers that take it; DDIM's is 0, see below.
    expected = ("eta",) if sampler == "DDIM" else ()
    assert ignored(sampler_name=sampler, sampler_index=sampler) == expected


def test_a_bare_request_lists_nothing() -> None:
    assert resolve_request(Txt2ImgRequest(prompt="x"), GenerationDefaults(), RequestLimits()).ignored_fields == ()


@pytest.mark.parametrize(("fields", "expected"), [
    # off values: false, null, "" are all A1111's "not asked for"
    ({"restore_faces": None, "tiling": None, "enable_hr": False, "infotext": "", "script_name": ""}, ()),
    ({"restore_faces": True}, ("restore_faces",)),
    ({"tiling": True}, ("tiling",)),
    ({"enable_hr": True}, ()),  # hires fix is applied
    ({"firstpass_image": "iVBOR..."}, ("firstpass_image",)),
    ({"infotext": "a cat\nSteps: 20"}, ("infotext",)),
    ({"script_name": "x/y/z plot", "script_args": [1, 2]}, ("script_name",)),
    ({"script_args": [1, 2]}, ()),  # without a script they feed nothing
    # hires-fix parameters act only with enable_hr
    ({"denoising_strength": 0.3, "hr_scale": 4, "hr_upscaler": "ESRGAN", "firstphase_width": 512}, ()),
    # server-side saving is not the image
    ({"save_images": True, "do_not_save_samples": True, "do_not_save_grid": True, "send_images": False}, ()),
    ({"comments": {"a": 1}, "force_task_id": "t", "override_settings_restore_afterwards": False}, ()),
    # seed resize: only when both are > 0, and not when it is the image's own size
    ({"seed_resize_from_h": -1, "seed_resize_from_w": -1}, ()),
    ({"seed_resize_from_h": 256, "seed_resize_from_w": 0}, ()),
    ({"seed_resize_from_h": 512, "seed_resize_from_w": 512}, ()),
    ({"seed_resize_from_h": 515, "seed_resize_from_w": 519}, ()),  # the same latent size
    ({"seed_resize_from_h": 256, "seed_resize_from_w": 512}, ("seed_resize_from_h", "seed_resize_from_w")),
    # NGMS acts with any sampler
    ({"s_min_uncond": 0}, ()),
    ({"s_min_uncond": 1.5}, ("s_min_uncond",)),
    # extension fields A1111 itself does not know
    ({"my_extension": {"on": True}}, ("my_extension",)),
])
def test_fields(fields: dict, expected: tuple[str, ...]) -> None:
    assert ignored(**fields) == expected


@pytest.mark.parametrize(("sampler", "fields", "expected"), [
    # eta: only samplers that take it, against their own default
    ("Euler a", {"eta": 1.0}, ()),
    ("Euler a", {"eta": None}, ()),
    ("Euler a", {"eta": 0.5}, ("eta",)),
    ("DPM++ 2M SDE Karras", {"eta": 0.0}, ("eta",)),  # a legacy name with its schedule
    ("k_dpm_2_a", {"eta": 0.3}, ("eta",)),  # an alias
    ("DDIM", {"eta": 0.0}, ()),
    ("DDIM", {"eta": 0.5}, ("eta",)),
    ("Euler", {"eta": 0.5}, ()),  # Euler has no eta
    ("DPM++ 2M Karras", {"eta": 0.0}, ()),
    # s_churn & co: Euler, Heun, DPM2 only; tmin/tmax/noise only matter with churn
    ("Euler", {"s_churn": 0, "s_tmin": 1, "s_tmax": 5, "s_noise": 0.9}, ()),
    ("Euler", {"s_churn": 0.5}, ("s_churn",)),
    ("Heun", {"s_churn": 0.5, "s_tmin": 1, "s_tmax": 5, "s_noise": 0.9}, ("s_churn", "s_tmin", "s_tmax", "s_noise")),
    ("DPM2", {"s_churn": 0.5, "s_tmax": float("inf")}, ("s_churn",)),
    ("Euler a", {"s_churn": 0.5}, ()),
    ("DPM++ 2M", {"s_churn": 0.5, "s_noise": 0.5}, ()),
    # s_noise alone: the noise-adding samplers that take it (A1111 does not pass it to Euler a)
    ("DPM++ SDE", {"s_noise": 1.0}, ()),
    ("DPM++ SDE", {"s_noise": 0.9}, ("s_noise",)),
    ("DPM2 a", {"s_noise": 1.1}, ("s_noise",)),
    ("Euler a", {"s_noise": 0.9}, ()),
])
def test_sampler_parameters(sampler: str, fields: dict, expected: tuple[str, ...]) -> None:
    assert ignored(sampler_name=sampler, sampler_index=sampler, **fields) == expected


@pytest.mark.parametrize(("scripts", "expected"), [
    ({}, ()),
    ({"ControlNet": {"args": []}}, ()),  # webuiapi's "no units" workaround
    ({"ADetailer": {"args": [False]}}, ()),  # the first argument is the script's on switch
    ({"ControlNet": {"args": [{"enabled": False, "model": "x"}]}}, ()),
    ({"x": {}}, ()),
    ({"ADetailer": {"args": [True, {"ad_model": "face_yolov8n.pt"}]}}, ("alwayson_scripts.ADetailer",)),
    ({"ControlNet": {"args": [{"enabled": True, "model": "x"}]}, "Sag": {"args": [False]}},
     ("alwayson_scripts.ControlNet",)),
    ({"b": {"args": [1]}, "a": {"args": [1]}}, ("alwayson_scripts.b", "alwayson_scripts.a")),
])
def test_alwayson_scripts(scripts: dict, expected: tuple[str, ...]) -> None:
    assert ignored(alwayson_scripts=scripts) == expected


@pytest.mark.parametrize(("override", "expected"), [
    ({"sd_model_checkpoint": "x", "sd_vae": "Automatic", "CLIP_stop_at_last_layers": 2}, ()),
    ({"samples_format": "jpg", "samples_save": False, "live_previews_enable": False}, ()),
    ({"randn_source": "CPU", "samples_format": "png"}, ("override_settings.randn_source",)),
])
def test_override_settings(override: dict, expected: tuple[str, ...]) -> None:
    assert ignored(override_settings=override) == expected


def test_the_order_is_fixed() -> None:
    request = Txt2ImgRequest(prompt="x", zz=1, restore_faces=True, alwayson_scripts={"s": {"args": [1]}},
                             s_min_uncond=1, tiling=True)
    assert ignored_fields(request, sampler_name="Euler", width=64, height=64) == (
        "restore_faces", "tiling", "s_min_uncond", "alwayson_scripts.s", "zz")
