"""One txt2img or img2img job on SDXL base (+ refiner), read top to bottom like a diffusers `__call__`.

`generate()` runs on the worker's GPU thread. Its steps:

  1. seeds: every image gets seed + i (and subseed + i), as A1111 numbers them
  1a. img2img: the init images and mask prepared as A1111 prepares them, in pixels
     (`worker.img2img_inputs`: resize modes, mask blur, "only masked" crop, fill, the overlay)
  1b. conditioning: the prompt and negative prompt encoded as A1111 encodes them (weights, 75-token
     chunks, BREAK, embeddings; `worker.conditioning`), for every step of their schedules (prompt
     editing and alternation): the refiner's first, then the job's LoRAs go on (`worker.loras`)
     and the base's is encoded through them; they stay on until the job's last image and are
     switched off whatever happens. img2img: the init images through the VAE, once per job
  2. per batch (n_iter times):
     2a. a fresh diffusers scheduler for the requested A1111 sampler and schedule
     2b. initial noise drawn *on the CPU* from each image's seed, so every GPU model in the pool
         draws the same noise and a request retried on another worker gives the same picture;
         img2img noises the batch's init latents with it to the first of the steps that run
     2c. base denoising (`_denoise`, shared by txt2img and img2img), stopping at
         `refiner_switch_at` when a refiner is used; the conditioning is switched from the
         step-end callback where the prompt's schedule changes; inpainting blends the noised init
         latents back outside the mask after every step
     2d. refiner denoising from the handed-over latents (text_encoder_2 and VAE are shared), its
         steps numbered on from the base's
     2e. hires fix (params.hires, txt2img): the latents upscaled (`_hires_pass`: interpolated in
         latent space, or decoded, upscaled as pixels and encoded again), cropped to the hires size,
         then denoised again by an img2img pass over the base's modules, its noise drawn on the CPU
         from each image's seed at the hires size; with a refiner, the first pass hands over to it
         and the hires pass runs on the base (A1111's `hires_fix_refiner_pass: first pass`)
     2f. VAE decode; img2img puts the init image's pixels back outside the (blurred) mask
  3. infotexts, one per image, in A1111's format

img2img runs the last int(steps x denoising_strength) steps of the schedule (at least one), as
A1111 and diffusers do; at strength 0 it returns the prepared init images without denoising.
Inpainting models with a 9-channel UNet are not supported: inpainting is the 4-channel way.

Progress and interruption go through `JobControl`, called after every denoising step: it counts
steps for /progress and the pending-steps metric, and returns False to stop; the job then decodes
and returns what it has, as A1111's Interrupt does.
"""

from __future__ import annotations

import time
from contextlib import AbstractContextManager, nullcontext
from dataclasses import replace
from typing import Any

from sdxlpool.api.generation import GenerationParams
from sdxlpool.worker.checkpoints import Checkpoint
from sdxlpool.worker.generate.hires import _hires_conditioning, _hires_pass
from sdxlpool.worker.generate.img2img import _encode_inits, _img2img_passes, _undenoised
from sdxlpool.worker.generate.infotext_fields import _generation_params, image_infotext
from sdxlpool.worker.generate.noise import _initial_noise, image_seeds
from sdxlpool.worker.generate.options import GenerationResult, JobControl, RuntimeOptions
from sdxlpool.worker.generate.passes import _conditioning, _denoise, _txt2img_passes
from sdxlpool.worker.generate.pipelines import _decode, _job_pipeline
from sdxlpool.worker.generate.steps import _iterations, denoising_steps
from sdxlpool.worker.img2img_inputs import apply_overlay, prepare_inputs
from sdxlpool.worker.loras import infotext_hashes
from sdxlpool.worker.samplers import SamplerChoice


def generate(
    base: Checkpoint,
    refiner: Checkpoint | None,
    params: GenerationParams,
    sampler: SamplerChoice,
    options: RuntimeOptions,
    control: JobControl,
) -> GenerationResult:
    import torch

    started = time.perf_counter()
    assert params.seed >= 0 and params.subseed >= 0, "seeds are resolved before a job runs"
    use_refiner = refiner is not None and params.refiner_switch_at < 1.0

    # 1. Seeds of every image.
    seeds = image_seeds(params.seed, params.image_count)
    subseeds = image_seeds(params.subseed, params.image_count)
    stopped = False
    steps_done = 0

    def step_callback(pipe: Any, _step: int, _timestep: Any, tensors: dict[str, Any]) -> dict[str, Any]:
        nonlocal stopped, steps_done
        steps_done += 1
        if not control.on_step(tensors["latents"]):
            stopped = True
            pipe._interrupt = True  # diffusers skips the remaining steps, then returns the latents
        return tensors

    def is_stopped() -> bool:
        return stopped

    # 1a. img2img: the init images (and mask) prepared as A1111 prepares them (pixels only).
    inputs = None
    if params.img2img is not None:
        inputs = prepare_inputs(options.init_images, options.mask, params.img2img, params.width, params.height)
    run_steps = denoising_steps(params)

    # 1b. The prompts' conditioning per sampling step (once per job): the refiner's before the job's
    #     LoRAs go on, since its text_encoder_2 is the base's and the LoRAs are not for the refiner;
    #     the base's through them. They stay on for the base's denoising (the refiner's UNet is its
    #     own module, the VAE has none) and are off again when the block ends, whatever happens.
    total = _iterations(base.pipeline, sampler, params.steps)
    refiner_cond = None
    if use_refiner and refiner is not None and run_steps:
        with torch.inference_mode():
            refiner_cond = _conditioning(refiner, params.prompt, params.negative_prompt, options, total)
    hires = params.hires
    hires_sampler = options.hires_sampler or sampler
    images: list[Any] = []
    with _loras_applied(base, options):
        with torch.inference_mode():
            base_cond = (_conditioning(base, params.prompt, params.negative_prompt, options, total)
                         if run_steps else None)
            encoded = _encode_inits(base.pipeline, inputs, options.vae, params) if inputs and run_steps else None
            hires_cond = None if hires is None else _hires_conditioning(
                base, params, hires, options, total, _iterations(base.pipeline, hires_sampler, hires.steps))
        for batch_no in range(params.n_iter):
            if not control.on_batch(batch_no):  # interrupted; a skip ended only the batch it hit
                stopped = True
                break
            stopped = False
            batch = slice(batch_no * params.batch_size, (batch_no + 1) * params.batch_size)
            if inputs is not None and (base_cond is None or encoded is None):  # strength 0: no denoising
                images.extend(_undenoised(inputs, params))
                continue
            assert base_cond is not None
            # 2a. A fresh scheduler, in pipeline objects over the loaded modules (cheap: no weights are
            #     copied) so per-run state such as the interrupt flag is never shared between jobs.
            base_pipe = _job_pipeline(base.pipeline, sampler, seeds[batch], img2img=inputs is not None)
            refiner_pipe = _job_pipeline(refiner.pipeline, sampler, seeds[batch]) if use_refiner and refiner else None

            # 2b. Initial noise, per image, on the CPU.
            latents, generators = _initial_noise(
                base_pipe, params, seeds[batch], subseeds[batch], options.eta_noise_seed_delta
            )
            with torch.inference_mode():
                if inputs is None or encoded is None:
                    passes = _txt2img_passes(params, latents, use_refiner)
                else:
                    passes = _img2img_passes(base_pipe, params, encoded, latents, seeds[batch],
                                             inputs.latent_mask, use_refiner)
                out = _denoise(base_pipe, refiner_pipe, base_cond, refiner_cond, params, options, generators,
                               passes, step_callback, is_stopped)

                # 2e. Hires fix: upscale, then the second pass (skipped once interrupted, as A1111 does).
                if hires is not None and hires_cond is not None and not stopped:
                    out = _hires_pass(base, params, hires, hires_sampler, options, out, seeds[batch],
                                      subseeds[batch], hires_cond, step_callback)

                # 2f. Decode; img2img keeps the init image's pixels outside the mask.
                decoded = _decode(base_pipe, out, options.vae)
            if inputs is not None:
                decoded = [apply_overlay(image, inputs, i) for i, image in enumerate(decoded)]
            images.extend(decoded)

    # 3. Infotexts, one per image actually made.
    shown = params if options.infotext_prompt is None else replace(params, prompt=options.infotext_prompt)
    lora_hashes = infotext_hashes(options.loras) if options.loras else None
    extra = _generation_params(params, inputs)
    infotexts = [
        image_infotext(shown, sampler, base, refiner if use_refiner else None, seeds[i], subseeds[i], i,
                       vae_name=options.vae_name, vae_hash=options.vae_hash, lora_hashes=lora_hashes,
                       hires_sampler=hires_sampler if hires is not None else None, extra=extra)
        for i in range(len(images))
    ]
    return GenerationResult(
        images=images,
        seeds=seeds,
        subseeds=subseeds,
        infotexts=infotexts,
        interrupted=stopped,
        seconds=time.perf_counter() - started,
        steps_done=steps_done,
        extra={"generation_params": extra} if extra else {},
    )


def _loras_applied(base: Checkpoint, options: RuntimeOptions) -> AbstractContextManager[Any]:
    """The job's LoRAs active in the base pipeline for the `with` block (nothing to do without any)."""
    if not options.loras or base.loras is None:
        return nullcontext()
    return base.loras.applied(base.pipeline, options.loras)

