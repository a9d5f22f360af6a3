"""img2img and the hires fix's second pass equal a run built by hand from diffusers' public API.

The other img2img tests check determinism, sizes and overlays: a change that moved every pixel of
img2img would pass them. Here the worker's image (real HTTP, tiny model) is compared pixel for pixel
with a reference written independently of the worker's generate/ code: the init image as pixels in
[-1, 1], the VAE's latent distribution's mean times the scaling factor, torch.randn on the CPU from
the seed at the latent shape, added with the scheduler's `add_noise` at the first of the last
int(steps x strength) timesteps, then diffusers' SDXL img2img pipeline from those latents and the VAE
decode. Only the prompt's conditioning comes from the worker's encoder (`encode_group`: A1111's
prompt encoding, pinned in test_prompt_encoding.py); an empty negative prompt is zeros, as there.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import numpy as np
import torch

from tests.worker.imaging import pixels
from tests.worker.img2img_inputs import encoded, gradient

PROMPT = "a lighthouse at dusk"
SEED, STEPS, CFG = 11, 4, 7.0


def post(client: httpx.Client, route: str, body: dict[str, Any]) -> tuple[np.ndarray, dict]:
    response = client.post(route, json={"prompt": PROMPT, "seed": SEED, "steps": STEPS, "cfg_scale": CFG,
                                        "sampler_name": "Euler", **body})
    assert response.status_code == 200, response.text
    data = response.json()
    return pixels(data["images"][0]), json.loads(data["info"])


def conditioning(pipe: Any) -> dict[str, torch.Tensor]:
    """The prompt as the worker encodes it (A1111's encoding), an empty negative prompt as zeros."""
    from sdxlpool.worker.conditioning import encode_group, pipeline_encoders

    (text,) = encode_group([PROMPT], pipeline_encoders(pipe))
    return {"prompt_embeds": text.embeds[None], "pooled_prompt_embeds": text.pooled[None],
            "negative_prompt_embeds": torch.zeros_like(text.embeds)[None],
            "negative_pooled_prompt_embeds": torch.zeros_like(text.pooled)[None]}


def reference_pipeline(tiny_model: Any) -> Any:
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLImg2ImgPipeline

    pipe = StableDiffusionXLImg2ImgPipeline.from_pretrained(tiny_model.base, local_files_only=True)
    pipe.scheduler = EulerDiscreteScheduler.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def noised(pipe: Any, latents: torch.Tensor, total: int, steps_run: int) -> torch.Tensor:
    """randn(seed) on the CPU at the latents' shape, added at the first of the last `steps_run`
    timesteps of a `total`-step schedule (a scheduler of its own: the pipeline sets its own)."""
    from diffusers import EulerDiscreteScheduler

    noise = torch.randn(latents.shape[1:], generator=torch.Generator("cpu").manual_seed(SEED))[None]
    scheduler = EulerDiscreteScheduler.from_config(pipe.scheduler.config)
    scheduler.set_timesteps(total)
    return scheduler.add_noise(latents, noise, scheduler.timesteps[total - steps_run:][:1])


def decoded(pipe: Any, latents: torch.Tensor) -> np.ndarray:
    vae = pipe.vae
    assert getattr(vae.config, "latents_mean", None) is None  # SDXL's VAE (and the tiny one): no per-channel stats
    image = vae.decode(latents / vae.config.scaling_factor, return_dict=False)[0]
    (pil,) = pipe.image_processor.postprocess(image, output_type="pil")
    return np.asarray(pil.convert("RGB"), dtype=np.int16)


def test_img2img_equals_a_hand_built_diffusers_run(client: httpx.Client, tiny_model) -> None:
    init = gradient(64, 64)
    worker, info = post(client, "/sdapi/v1/img2img", {"init_images": [encoded(init)], "resize_mode": 0,
                                                       "width": 64, "height": 64, "denoising_strength": 0.5})
    assert info["sdxlpool"]["steps_done"] == 2  # int(4 x 0.5)

    pipe = reference_pipeline(tiny_model)
    with torch.inference_mode():
        # The init image as pixels in [-1, 1], channels first; the VAE's mean (no sampling), scaled.
        rgb = torch.from_numpy(np.asarray(init, dtype=np.float32) / 127.5 - 1.0).permute(2, 0, 1)[None]
        latents = pipe.vae.encode(rgb).latent_dist.mean * pipe.vae.config.scaling_factor
        start = noised(pipe, latents, STEPS, 2)
        out = pipe(**conditioning(pipe), image=latents, latents=start, strength=0.5, num_inference_steps=STEPS,
                   guidance_scale=CFG, output_type="latent").images
        by_hand = decoded(pipe, out)
    assert np.array_equal(worker, by_hand), int(np.abs(worker - by_hand).max())


def test_hires_latent_second_pass_equals_a_hand_built_diffusers_run(client: httpx.Client, tiny_model) -> None:
    """txt2img 64x64 with hires fix x1.5 through "Latent" (bilinear, as A1111's default latent
    upscaler), 2 hires steps at denoising 0.5: A1111 stretches the schedule to int(2 / 0.5) = 4 steps
    and runs its last 2, from the upscaled latents noised with randn(seed) at the hires size."""
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline

    worker, info = post(client, "/sdapi/v1/txt2img", {"width": 64, "height": 64, "enable_hr": True,
                                                       "hr_scale": 1.5, "hr_upscaler": "Latent",
                                                       "hr_second_pass_steps": 2, "denoising_strength": 0.5})
    assert worker.shape == (96, 96, 3)

    img2img = reference_pipeline(tiny_model)
    base = StableDiffusionXLPipeline(**img2img.components)  # the same modules, txt2img
    base.scheduler = EulerDiscreteScheduler.from_config(img2img.scheduler.config)
    base.set_progress_bar_config(disable=True)
    with torch.inference_mode():
        cond = conditioning(base)
        first_noise = torch.randn((4, 8, 8), generator=torch.Generator("cpu").manual_seed(SEED))[None]
        first = base(**cond, latents=first_noise, num_inference_steps=STEPS, guidance_scale=CFG, width=64,
                     height=64, output_type="latent").images
        upscaled = torch.nn.functional.interpolate(first, size=(12, 12), mode="bilinear")
        start = noised(img2img, upscaled, 4, 2)
        out = img2img(**cond, image=upscaled, latents=start, strength=0.5, num_inference_steps=4,
                      guidance_scale=CFG, output_type="latent").images
        by_hand = decoded(img2img, out)
    assert np.array_equal(worker, by_hand), int(np.abs(worker - by_hand).max())

