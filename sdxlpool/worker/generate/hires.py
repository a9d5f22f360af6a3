"""Hires fix (2e): the second pass's conditioning, and the pass itself over one batch's latents."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from sdxlpool.api.generation import GenerationParams, HiresParams
from sdxlpool.worker.checkpoints import Checkpoint
from sdxlpool.worker.conditioning import StepConditioning
from sdxlpool.worker.generate.noise import _initial_noise, _noised
from sdxlpool.worker.generate.options import RuntimeOptions
from sdxlpool.worker.generate.passes import _conditioning, _run_pass, _StepSwitch
from sdxlpool.worker.generate.pipelines import _decode, _encode, _job_pipeline
from sdxlpool.worker.generate.steps import hires_schedule
from sdxlpool.worker.samplers import SamplerChoice
from sdxlpool.worker.upscalers import upscale_latents, upscale_to


def _hires_conditioning(
    checkpoint: Checkpoint, params: GenerationParams, hires: HiresParams, options: RuntimeOptions,
    first_total: int, hires_total: int,
) -> StepConditioning:
    """The hires pass's conditioning per step: hr_prompt / hr_negative_prompt (else the first pass's),
    their edits scheduled over the hires pass (`[a:b:1.5]` switches halfway through it, as in A1111)."""
    prompt = params.prompt if hires.prompt is None else hires.prompt
    negative = params.negative_prompt if hires.negative_prompt is None else hires.negative_prompt
    return _conditioning(checkpoint, prompt, negative, options, first_total, hires_total)


def _hires_pass(
    base: Checkpoint, params: GenerationParams, hires: HiresParams, sampler: SamplerChoice, options: RuntimeOptions,
    latents: Any, seeds: list[int], subseeds: list[int], conditioning: StepConditioning, step_callback: Any,
) -> Any:
    """Hires fix's second pass over one batch's first-pass latents; returns the hires latents.

    1. upscale to (upscale_width, upscale_height): a latent mode interpolates the latents; a pixel
       upscaler gets the decoded images (Lanczos, Nearest or a model) and the VAE encodes them again
       (the distribution's mean: deterministic);
    2. crop the middle to (width, height) when hr_resize_x/y asked for another aspect (A1111 truncates
       the latents the same way);
    3. an img2img pass over the base's modules: noise drawn on the CPU from each image's seed (and
       subseed) at the hires size, added at the strength's timestep; `hires.steps` steps, the last
       ones of a schedule stretched by the strength (`hires_schedule`); progress counted on.
    """
    import torch

    with torch.inference_mode():
        if hires.latent:
            latents = upscale_latents(latents.float(), hires.upscaler, hires.upscale_height, hires.upscale_width)
        else:
            decoded = _decode(base.pipeline, latents, options.vae)
            upscaled = [upscale_to(options.hires_upscaler, image, hires.upscale_width, hires.upscale_height,
                                   options.upscale_model) for image in decoded]
            latents = _encode(base.pipeline, upscaled, options.vae)
        crop_x = (hires.upscale_width - hires.width) // 8
        crop_y = (hires.upscale_height - hires.height) // 8
        latents = latents[:, :, crop_y // 2: latents.shape[2] - (crop_y + 1) // 2,
                          crop_x // 2: latents.shape[3] - (crop_x + 1) // 2]
        latents = latents.to(base.pipeline.unet.dtype)
        if hires.steps_run == 0:
            return latents  # strength 0: the upscale is the result

        pipe = _job_pipeline(base.pipeline, sampler, seeds, img2img=True)
        total, strength = hires_schedule(hires.steps, hires.denoising_strength)
        sized = replace(params, width=hires.width, height=hires.height)
        noise, generators = _initial_noise(pipe, sized, seeds, subseeds, options.eta_noise_seed_delta)
        # noised on a scheduler of its own: the pipeline's sets its timesteps when it runs
        scheduler = sampler.build(pipe.scheduler.config, image_seeds=seeds)
        noised = _noised(scheduler, latents, noise.to(latents.device), total, hires.steps)
        hires_steps = _StepSwitch(conditioning, 0, params.batch_size, step_callback)
        return _run_pass(pipe, hires_steps, params, generators, total, options.deepcache, image=latents,
                         latents=noised, strength=strength)
