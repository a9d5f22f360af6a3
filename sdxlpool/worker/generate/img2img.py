"""img2img and inpainting: the init images through the VAE, their passes' arguments (noised init
latents, the refiner handoff, the inpainting blend), and the strength-0 batch that is not denoised."""

from __future__ import annotations

import math
from typing import Any

from sdxlpool.api.generation import GenerationParams
from sdxlpool.worker.generate.noise import _noised
from sdxlpool.worker.generate.passes import _MaskBlend, _Passes
from sdxlpool.worker.generate.pipelines import _encode_pixels
from sdxlpool.worker.generate.steps import _strength
from sdxlpool.worker.img2img_inputs import LATENT_FACTOR, Img2ImgInputs, apply_overlay, resize_image


def _encode_inits(pipeline: Any, inputs: Img2ImgInputs, vae: Any, params: GenerationParams) -> list[Any]:
    """Each prepared init image through the VAE (`_encode_pixels`); resize mode 3 resizes these
    latents to the job's size (bilinear)."""
    import numpy as np
    import torch

    vae = vae if vae is not None else pipeline.vae
    encoded = []
    for image in inputs.images:
        pixels = torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.float32) / 127.5 - 1.0)
        latents = _encode_pixels(vae, pixels.permute(2, 0, 1).unsqueeze(0))
        if inputs.latent_upscale:
            size = (params.height // LATENT_FACTOR, params.width // LATENT_FACTOR)
            latents = torch.nn.functional.interpolate(latents, size=size, mode="bilinear")
        encoded.append(latents.to(device=pipeline.unet.device, dtype=pipeline.unet.dtype))
    return encoded


def _img2img_passes(
    pipe: Any, params: GenerationParams, encoded: list[Any], noise: Any, seeds: list[int], latent_mask: Any,
    use_refiner: bool,
) -> _Passes:
    """img2img's arguments for the shared denoising step: the batch's init latents (the init images
    cycled over it) noised from the seeds' noise to the first of the last `steps_run` steps, and with
    a refiner the handoff after `refiner_switch_at` of the steps that run (A1111 counts those)."""
    import torch

    assert params.img2img is not None
    img2img = params.img2img
    device = pipe._execution_device
    steps_run = params.first_pass_steps
    strength = _strength(steps_run, params.steps)
    init = torch.cat([encoded[i % len(encoded)] for i in range(params.batch_size)]).to(device)
    noise = noise.to(device=device, dtype=init.dtype) * img2img.initial_noise_multiplier
    blend = None
    if latent_mask is not None:
        mask = torch.from_numpy(latent_mask)[None, None].to(device=device, dtype=init.dtype)
        if img2img.inpainting_fill == 2:  # latent noise: each image's own seed's noise in the hole
            fill = torch.stack([torch.randn(init.shape[1:], generator=torch.Generator("cpu").manual_seed(seed))
                                for seed in seeds]).to(device=device, dtype=init.dtype)
            init = init * (1 - mask) + fill * mask
        elif img2img.inpainting_fill == 3:  # latent nothing
            init = init * (1 - mask)
        blend = _MaskBlend(init, noise, mask)
    # what the pipeline does to its scheduler first, then the noise added at the first step that runs
    noised = _noised(pipe.scheduler, init, noise, params.steps, steps_run, device)
    passes = _Passes(base={"image": init, "latents": noised, "strength": strength}, refiner=None)
    passes.blend = blend
    if use_refiner:
        base_steps = max(1, math.ceil(params.refiner_switch_at * steps_run - 1e-9))
        if base_steps < steps_run:
            passes.base_iterations = base_steps * pipe.scheduler.order
            passes.refiner = {"strength": _strength(steps_run - base_steps, params.steps)}
    return passes


def _undenoised(inputs: Img2ImgInputs, params: GenerationParams) -> list[Any]:
    """A batch at strength 0: the prepared init images at the job's size, overlaid as any result."""
    images = []
    for index in range(params.batch_size):
        image = inputs.image_for(index)
        if image.size != (params.width, params.height):
            image = resize_image(0, image, params.width, params.height)
        images.append(apply_overlay(image, inputs, index))
    return images
