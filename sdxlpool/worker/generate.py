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

import math
import time
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from sdxlpool.api.generation import GenerationParams, HiresParams
from sdxlpool.prompts.schedules import prompt_schedule
from sdxlpool.worker.checkpoints import Checkpoint
from sdxlpool.worker.conditioning import StepConditioning, build_conditioning, pipeline_encoders, prompt_text
from sdxlpool.worker.img2img_inputs import (
    LATENT_FACTOR,
    Img2ImgInputs,
    apply_overlay,
    prepare_inputs,
    resize_image,
)
from sdxlpool.worker.infotext import format_infotext
from sdxlpool.worker.loras import infotext_hashes
from sdxlpool.worker.samplers import SamplerChoice
from sdxlpool.worker.upscalers import upscale_latents, upscale_to

__all__ = ["JobControl", "RuntimeOptions", "GenerationResult", "generate", "image_seeds", "image_infotext",
           "denoising_steps"]


class JobControl(Protocol):
    def on_batch(self, batch_no: int) -> bool:
        """Called before each batch; False: the job was interrupted, make no more batches."""
        ...

    def on_step(self, latents: Any) -> bool:
        """Called after each denoising step; False stops the batch at this step (an interrupt stops
        the job too: the next `on_batch` says so; a skip only ends this batch)."""
        ...

    def wait(self, seconds: float) -> bool:
        """Sleep up to `seconds` (for engines that wait rather than compute); False once interrupted."""
        ...


@dataclass(frozen=True)
class RuntimeOptions:
    """A1111 options that change generation (global, or per request via override_settings)."""

    clip_skip: int = 1  # CLIP_stop_at_last_layers: 1 = use the last layer
    eta_noise_seed_delta: int = 0  # ENSD: offsets the seed of ancestral samplers' step noise
    refiner_aesthetic_score: float = 6.0  # sdxl_refiner_high_aesthetic_score
    refiner_negative_aesthetic_score: float = 2.5  # sdxl_refiner_low_aesthetic_score
    # What the job uses besides the checkpoints, resolved by the service before the job is queued.
    loras: tuple[Any, ...] = ()  # the prompt's LoRAs with their multipliers (worker.loras.LoraUse)
    # The prompt as the client wrote it, <lora:...> calls included, for the infotext (A1111 keeps
    # them there); the params' prompt is the text the encoders see. None: the params' prompt.
    infotext_prompt: str | None = None
    vae: Any = None  # an AutoencoderKL chosen by sd_vae; None: the checkpoint's own
    vae_name: str | None = None  # that VAE's file name and short hash, for the infotext
    vae_hash: str | None = None
    embeddings: Any = None  # the textual-inversion embeddings a prompt may name (worker.embeddings)
    # img2img (params.img2img): the decoded init images (PIL, cycled over the batch as A1111 does)
    # and the inpainting mask (PIL) when the request has one.
    init_images: tuple[Any, ...] = ()
    mask: Any = None
    # hires fix (params.hires): the second pass's sampler (hr_sampler_name/hr_scheduler, else the
    # first pass's), the pixel upscaler (worker.upscalers.UpscalerEntry; None for the latent modes)
    # and what runs a model upscaler (ModelUpscalers.run), all resolved by the service.
    hires_sampler: SamplerChoice | None = None
    hires_upscaler: Any = None
    upscale_model: Any = None


@dataclass
class GenerationResult:
    images: list[Any]  # PIL images
    seeds: list[int]
    subseeds: list[int]
    infotexts: list[str]
    interrupted: bool
    seconds: float
    steps_done: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


def image_seeds(first: int, count: int) -> list[int]:
    """A1111 numbers the images of a request seed, seed + 1, ... (wrapping at 2**32)."""
    return [(first + i) % 2**32 for i in range(count)]


def denoising_steps(params: GenerationParams) -> int:
    """Steps of the schedule a job's pass really runs: all of them for txt2img; for img2img the last
    int(steps x strength) (at least one, as A1111), none at strength 0 (the init image comes back)."""
    if params.img2img is not None and params.img2img.denoising_strength == 0:
        return 0
    return params.first_pass_steps


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
            refiner_cond = _conditioning(refiner, params, options, total)
    hires = params.hires
    hires_sampler = options.hires_sampler or sampler
    images: list[Any] = []
    with _loras_applied(base, options):
        with torch.inference_mode():
            base_cond = _conditioning(base, params, options, total) if run_steps else None
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
                    passes = _Passes(
                        base={"width": params.width, "height": params.height, "latents": latents,
                              "denoising_end": params.refiner_switch_at if use_refiner else None},
                        refiner={"denoising_start": params.refiner_switch_at})
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


@dataclass
class _Passes:
    """What differs between txt2img and img2img in the shared denoising step: the pipelines' own
    arguments, and for img2img the step after which the base hands over (`base_iterations`) and
    the inpainting blend (`blend`)."""

    base: dict[str, Any]
    refiner: dict[str, Any] | None  # None: no refiner pass
    base_iterations: int | None = None  # stop the base after this many iterations (img2img + refiner)
    blend: Any = None  # _MaskBlend for inpainting


def _denoise(
    base_pipe: Any, refiner_pipe: Any, base_cond: StepConditioning, refiner_cond: StepConditioning | None,
    params: GenerationParams, options: RuntimeOptions, generators: list[Any], passes: _Passes,
    step_callback: Any, stopped: Any,
) -> Any:
    """One batch's denoising (2c, 2d), txt2img and img2img alike: the base, then the refiner from
    the handed-over latents. Latents out."""
    images_per_prompt = {"num_images_per_prompt": params.batch_size, "generator": generators}
    # 2c. Base denoising; with a refiner it stops at the switch point and hands latents over.
    #     The conditioning switches at the steps the prompt's schedule says (step_switch).
    on_step = _PassStep(step_callback, passes.blend, passes.base_iterations)
    base_steps = _StepSwitch(base_cond, 0, params.batch_size, on_step)
    out = base_pipe(
        **base_cond.pipeline_kwargs(0),
        **images_per_prompt,
        **passes.base,
        num_inference_steps=params.steps,
        guidance_scale=params.cfg_scale,
        output_type="latent",
        callback_on_step_end=base_steps,
        callback_on_step_end_tensor_inputs=_StepSwitch.TENSORS,
    ).images

    # 2d. Refiner denoising from the handed-over latents (skipped once interrupted); its
    #     steps count on from the base's, as A1111 counts them.
    if refiner_pipe is not None and refiner_cond is not None and not stopped() and passes.refiner is not None:
        on_step = _PassStep(step_callback, passes.blend, None)
        refiner_steps = _StepSwitch(refiner_cond, base_steps.iterations, params.batch_size, on_step)
        # img2img hands over after a number of steps: the refiner starts from the latents as they are.
        handed = {"latents": out} if passes.base_iterations is not None else {}
        out = refiner_pipe(
            **refiner_cond.pipeline_kwargs(base_steps.iterations),
            **images_per_prompt,
            **passes.refiner,
            **handed,
            image=out,
            num_inference_steps=params.steps,
            guidance_scale=params.cfg_scale,
            aesthetic_score=options.refiner_aesthetic_score,
            negative_aesthetic_score=options.refiner_negative_aesthetic_score,
            output_type="latent",
            callback_on_step_end=refiner_steps,
            callback_on_step_end_tensor_inputs=_StepSwitch.TENSORS,
        ).images
    return out


class _PassStep:
    """A pass's per-iteration work before the progress callback: the inpainting blend, and the
    img2img base's stop at the refiner switch (the pipeline skips its remaining iterations)."""

    def __init__(self, on_step: Any, blend: Any, stop_after: int | None) -> None:
        self.on_step, self.blend, self.stop_after = on_step, blend, stop_after

    def __call__(self, pipe: Any, index: int, timestep: Any, tensors: dict[str, Any]) -> dict[str, Any]:
        if self.blend is not None:
            tensors["latents"] = self.blend(pipe, index, tensors["latents"])
        tensors = self.on_step(pipe, index, timestep, tensors)
        if self.stop_after is not None and index + 1 >= self.stop_after:
            pipe._interrupt = True
        return tensors


class _MaskBlend:
    """Inpainting with a 4-channel UNet (diffusers' SDXL inpainting pipeline does the same): after
    every iteration the latents outside the mask are the init latents noised to the level of the
    next iteration (unnoised after the last), so only the masked area is denoised."""

    def __init__(self, init: Any, noise: Any, mask: Any) -> None:
        self.init, self.noise, self.mask = init, noise, mask

    def __call__(self, pipe: Any, index: int, latents: Any) -> Any:
        scheduler = pipe.scheduler
        # The pass runs the last `num_timesteps` of the scheduler's timesteps: where the next one is.
        following = len(scheduler.timesteps) - pipe.num_timesteps + index + 1
        kept = self.init
        if following < len(scheduler.timesteps):
            kept = scheduler.add_noise(self.init, self.noise, scheduler.timesteps[following:following + 1])
        mask = self.mask.to(device=latents.device, dtype=latents.dtype)
        return kept.to(latents.dtype) * (1 - mask) + latents * mask


def _conditioning(
    checkpoint: Checkpoint, params: GenerationParams, options: RuntimeOptions, total: int
) -> StepConditioning:
    """One pipeline's conditioning per step: the prompts' schedules over the run's `total` iterations."""
    positive = prompt_schedule(prompt_text(params.prompt).text, total)
    negative = prompt_schedule(params.negative_prompt or "", total)
    return build_conditioning(positive, negative, pipeline_encoders(checkpoint.pipeline),
                              embeddings=options.embeddings, clip_skip=options.clip_skip)


def _hires_conditioning(
    checkpoint: Checkpoint, params: GenerationParams, hires: HiresParams, options: RuntimeOptions,
    first_total: int, hires_total: int,
) -> StepConditioning:
    """The hires pass's conditioning per step: hr_prompt / hr_negative_prompt (else the first pass's),
    their edits scheduled over the hires pass (`[a:b:1.5]` switches halfway through it, as in A1111)."""
    prompt = params.prompt if hires.prompt is None else hires.prompt
    negative = params.negative_prompt if hires.negative_prompt is None else hires.negative_prompt
    positive = prompt_schedule(prompt_text(prompt).text, first_total, hires_steps=hires_total)
    negatives = prompt_schedule(negative or "", first_total, hires_steps=hires_total)
    return build_conditioning(positive, negatives, pipeline_encoders(checkpoint.pipeline),
                              embeddings=options.embeddings, clip_skip=options.clip_skip)


def hires_schedule(steps: int, denoising_strength: float) -> tuple[int, float]:
    """(num_inference_steps, strength) for diffusers' img2img so that it runs exactly `steps` steps,
    the last ones of a longer schedule, as A1111's hires pass does: A1111 stretches the schedule to
    int(steps / min(strength, 0.999)) and runs its last `steps`; diffusers runs the last
    int(n x strength), so the strength handed over is chosen to give exactly `steps`."""
    total = max(steps, int(steps / min(denoising_strength, 0.999)))
    return total, min(1.0, (steps + 0.5) / total)


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

        pipe = _img2img_pipeline(base.pipeline, sampler, seeds)
        total, strength = hires_schedule(hires.steps, hires.denoising_strength)
        sized = replace(params, width=hires.width, height=hires.height)
        noise, generators = _initial_noise(pipe, sized, seeds, subseeds, options.eta_noise_seed_delta)
        noised = _noised(sampler, pipe, latents, noise.to(latents.device), total, hires.steps, seeds)
        hires_steps = _StepSwitch(conditioning, 0, params.batch_size, step_callback)
        return pipe(
            **conditioning.pipeline_kwargs(0),
            num_images_per_prompt=params.batch_size,
            generator=generators,
            image=latents,
            latents=noised,
            strength=strength,
            num_inference_steps=total,
            guidance_scale=params.cfg_scale,
            output_type="latent",
            callback_on_step_end=hires_steps,
            callback_on_step_end_tensor_inputs=_StepSwitch.TENSORS,
        ).images


def _noised(sampler: SamplerChoice, pipe: Any, latents: Any, noise: Any, total: int, steps: int, seeds: list[int]) -> Any:
    """`latents` with `noise` added at the first timestep of the last `steps` of a `total`-step
    schedule: what the img2img pipeline would add itself, but from the noise drawn here."""
    scheduler = sampler.build(pipe.scheduler.config, image_seeds=seeds)
    scheduler.set_timesteps(total)
    start = (total - steps) * scheduler.order
    if hasattr(scheduler, "set_begin_index"):
        scheduler.set_begin_index(start)
    timestep = scheduler.timesteps[start:start + 1].repeat(latents.shape[0])
    return scheduler.add_noise(latents, noise.to(latents.dtype), timestep)


def _img2img_pipeline(loaded: Any, sampler: SamplerChoice, seeds: list[int]) -> Any:
    """An SDXL img2img pipeline over the loaded (txt2img) pipeline's modules, with this job's scheduler."""
    from diffusers import StableDiffusionXLImg2ImgPipeline

    scheduler = sampler.build(loaded.scheduler.config, image_seeds=seeds)
    flags = {k: loaded.config[k] for k in ("force_zeros_for_empty_prompt", "requires_aesthetics_score")
             if k in loaded.config}
    pipe: Any = StableDiffusionXLImg2ImgPipeline(**{**loaded.components, "scheduler": scheduler}, **flags,
                                                 add_watermarker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _loras_applied(base: Checkpoint, options: RuntimeOptions) -> AbstractContextManager[Any]:
    """The job's LoRAs active in the base pipeline for the `with` block (nothing to do without any)."""
    if not options.loras or base.loras is None:
        return nullcontext()
    return base.loras.applied(base.pipeline, options.loras)


def _iterations(loaded: Any, sampler: SamplerChoice, steps: int) -> int:
    """Model evaluations in a full run (A1111's step count for schedules; second-order: about 2x)."""
    scheduler = sampler.build(loaded.scheduler.config)
    scheduler.set_timesteps(steps)
    return len(scheduler.timesteps)


class _StepSwitch:
    """A pipeline's step-end callback: counts the iteration, then puts the next step's conditioning
    in place when the schedule changes there (diffusers reads `prompt_embeds`/`add_text_embeds`
    back from the callback's answer)."""

    TENSORS = ["latents", "prompt_embeds", "add_text_embeds"]

    def __init__(self, conditioning: StepConditioning, first_step: int, images: int, on_step: Any) -> None:
        self.conditioning = conditioning
        self.first_step = first_step
        self.images = images
        self.on_step = on_step
        self.iterations = first_step  # the run's step count after this pipeline's iterations so far

    def __call__(self, pipe: Any, index: int, timestep: Any, tensors: dict[str, Any]) -> dict[str, Any]:
        tensors = self.on_step(pipe, index, timestep, tensors)
        step = self.first_step + index + 1  # the step the next iteration runs
        self.iterations = step
        if self.conditioning.key(step) != self.conditioning.key(step - 1):
            tensors.update(self.conditioning.step_tensors(
                step, self.images, pipe.do_classifier_free_guidance, tensors))
        return tensors


def _job_pipeline(loaded: Any, sampler: SamplerChoice, seeds: list[int], *, img2img: bool = False) -> Any:
    """A pipeline object over the loaded modules with this job's scheduler (`img2img`: diffusers'
    SDXL img2img pipeline over a base's modules).

    Like diffusers' `from_pipe` without its dtype/device pass and progress bars: the modules are
    the same objects, only the scheduler and the pipeline's own flags are per job.
    """
    from diffusers import StableDiffusionXLImg2ImgPipeline

    flags = {k: v for k, v in loaded.config.items() if not k.startswith("_") and k not in loaded.components}
    scheduler = sampler.build(loaded.scheduler.config, image_seeds=seeds)
    cls: Any = StableDiffusionXLImg2ImgPipeline if img2img else type(loaded)
    pipe = cls(**{**loaded.components, "scheduler": scheduler}, **flags)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _strength(steps_run: int, steps: int) -> float:
    """The strength that makes diffusers run exactly the last `steps_run` of `steps` (it takes
    int(steps x strength); half a step over keeps float rounding from losing one)."""
    return 1.0 if steps_run >= steps else (steps_run + 0.5) / steps


def _encode_inits(pipeline: Any, inputs: Img2ImgInputs, vae: Any, params: GenerationParams) -> list[Any]:
    """Each prepared init image through the VAE (its mean: the same latents on every GPU), scaled as
    the SDXL pipelines scale them; resize mode 3 resizes these latents to the job's size (bilinear)."""
    import numpy as np
    import torch

    vae = vae if vae is not None else pipeline.vae
    encoded = []
    for image in inputs.images:
        pixels = torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.float32) / 127.5 - 1.0)
        pixels = pixels.permute(2, 0, 1).unsqueeze(0).to(device=vae.device, dtype=vae.dtype)
        latents = vae.encode(pixels).latent_dist.mode()
        mean, std = getattr(vae.config, "latents_mean", None), getattr(vae.config, "latents_std", None)
        if mean is not None and std is not None:
            mean_t = torch.tensor(mean).view(1, -1, 1, 1).to(latents)
            std_t = torch.tensor(std).view(1, -1, 1, 1).to(latents)
            latents = (latents - mean_t) * vae.config.scaling_factor / std_t
        else:
            latents = latents * vae.config.scaling_factor
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
    pipe.scheduler.set_timesteps(params.steps, device=device)  # what the pipeline does, to noise at its start
    timesteps, _ = pipe.get_timesteps(params.steps, strength, device)
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
    noised = pipe.scheduler.add_noise(init, noise, timesteps[:1].repeat(init.shape[0]))
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


def _generation_params(params: GenerationParams, inputs: Img2ImgInputs | None) -> dict[str, Any]:
    """A1111's extra_generation_params of an img2img job (none for txt2img)."""
    if inputs is None or params.img2img is None:
        return {}
    extra = dict(inputs.generation_params)
    if params.img2img.initial_noise_multiplier != 1.0:
        extra["Noise multiplier"] = params.img2img.initial_noise_multiplier
    return extra


def _initial_noise(
    pipe: Any, params: GenerationParams, seeds: list[int], subseeds: list[int], ensd: int
) -> tuple[Any, list[Any]]:
    """A1111's noise: randn(seed), slerped towards randn(subseed) by subseed_strength."""
    import torch

    shape = (pipe.unet.config.in_channels, params.height // pipe.vae_scale_factor,
             params.width // pipe.vae_scale_factor)
    noise, generators = [], []
    for seed, subseed in zip(seeds, subseeds, strict=True):
        generator = torch.Generator("cpu").manual_seed(seed)
        sample = torch.randn(shape, generator=generator)
        if params.subseed_strength > 0:
            sub = torch.randn(shape, generator=torch.Generator("cpu").manual_seed(subseed))
            sample = _slerp(params.subseed_strength, sample, sub)
        if ensd:
            generator.manual_seed(seed + ensd)  # ancestral step noise starts from seed + ENSD
        noise.append(sample)
        generators.append(generator)
    return torch.stack(noise).to(pipe.unet.dtype), generators


def _slerp(t: float, low: Any, high: Any) -> Any:
    """Spherical interpolation, as A1111 uses for variation seeds."""
    import torch

    low_norm = low / torch.norm(low)
    high_norm = high / torch.norm(high)
    dot = (low_norm * high_norm).sum()
    if dot.abs() > 0.9995:
        return low * (1 - t) + high * t
    omega = torch.acos(dot)
    so = torch.sin(omega)
    return torch.sin((1.0 - t) * omega) / so * low + torch.sin(t * omega) / so * high


def _decode(pipe: Any, latents: Any, vae: Any = None) -> list[Any]:
    """VAE decode as the SDXL pipeline does it (the loader keeps an fp16 model's VAE in fp32).

    `vae`: the one chosen by sd_vae (RuntimeOptions.vae); None: the checkpoint's own."""
    import torch

    vae = vae if vae is not None else pipe.vae
    latents = latents.to(device=vae.device, dtype=vae.dtype)
    mean, std = getattr(vae.config, "latents_mean", None), getattr(vae.config, "latents_std", None)
    if mean is not None and std is not None:
        mean_t = torch.tensor(mean).view(1, -1, 1, 1).to(latents)
        std_t = torch.tensor(std).view(1, -1, 1, 1).to(latents)
        latents = latents * std_t / vae.config.scaling_factor + mean_t
    else:
        latents = latents / vae.config.scaling_factor
    decoded = vae.decode(latents, return_dict=False)[0]
    return pipe.image_processor.postprocess(decoded, output_type="pil")


def _encode(pipe: Any, images: list[Any], vae: Any = None) -> Any:
    """PIL images to latents, the inverse of `_decode` (the latent distribution's mean)."""
    import torch

    vae = vae if vae is not None else pipe.vae
    pixels = pipe.image_processor.preprocess(images).to(device=vae.device, dtype=vae.dtype)
    latents = vae.encode(pixels).latent_dist.mode()
    mean, std = getattr(vae.config, "latents_mean", None), getattr(vae.config, "latents_std", None)
    if mean is not None and std is not None:
        mean_t = torch.tensor(mean).view(1, -1, 1, 1).to(latents)
        std_t = torch.tensor(std).view(1, -1, 1, 1).to(latents)
        return (latents - mean_t) * vae.config.scaling_factor / std_t
    return latents * vae.config.scaling_factor


def image_infotext(
    params: GenerationParams,
    sampler: SamplerChoice,
    base: Checkpoint,
    refiner: Checkpoint | None,
    seed: int,
    subseed: int,
    index: int,
    *,
    vae_name: str | None = None,
    vae_hash: str | None = None,
    lora_hashes: str | None = None,
    extra: dict[str, Any] | None = None,
    hires_sampler: SamplerChoice | None = None,
) -> str:
    """The A1111 infotext of image `index` of a job (refiner: None when it was not used; vae_*: the
    VAE chosen by sd_vae, None for the checkpoint's own; lora_hashes: "name: hash, ..." of the LoRAs
    applied, as A1111's Lora extension writes them; extra: img2img's A1111 extra_generation_params,
    "Denoising strength" in A1111's place, the inpainting keys after the refiner's; hires_sampler:
    the hires pass's, with params.hires).

    Size is the first pass's, as A1111 writes it; the hires fields follow A1111's txt2img `init`."""
    hires = params.hires
    extra = dict(extra or {})
    denoising = extra.pop("Denoising strength", None)
    if denoising is None and hires is not None:
        denoising = f"{hires.denoising_strength:g}"
    fields: dict[str, Any] = {
        "Steps": params.steps,
        "Sampler": sampler.sampler.name,
        "Schedule type": sampler.schedule.label if sampler.schedule.name != "automatic" else None,
        "CFG scale": f"{params.cfg_scale:g}",
        "Seed": seed,
        "Size": f"{params.width}x{params.height}",
        "Model hash": base.short_hash,
        "Model": base.model_name,
        "VAE hash": vae_hash,
        "VAE": vae_name,
        "Variation seed": subseed if params.subseed_strength > 0 else None,
        "Variation seed strength": f"{params.subseed_strength:g}" if params.subseed_strength > 0 else None,
        "Denoising strength": denoising,
        "Batch size": params.batch_size if params.batch_size > 1 else None,
        "Batch pos": index % params.batch_size if params.batch_size > 1 else None,
        **(hires_infotext(params, sampler, hires_sampler or sampler) if hires is not None else {}),
        "Refiner": f"{refiner.model_name} [{refiner.short_hash}]" if refiner else None,
        "Refiner switch at": f"{params.refiner_switch_at:g}" if refiner else None,
        "Hires refiner": "first pass" if refiner and hires is not None else None,
        **extra,
        "Lora hashes": lora_hashes,
        "Version": "sdxlpool",
    }
    return format_infotext(params.prompt, params.negative_prompt, fields)


def hires_infotext(params: GenerationParams, sampler: SamplerChoice, hires_sampler: SamplerChoice) -> dict[str, Any]:
    """The hires fields of an infotext, in A1111's order and with its rules: the sampler and
    schedule type when they differ from the first pass's, the prompts when given and different,
    "Hires upscale" (by hr_scale) or "Hires resize" (as sent), and steps and upscaler when set."""
    hires = params.hires
    assert hires is not None
    first_schedule = sampler.schedule.label if sampler.schedule.name != "automatic" else None
    hires_schedule_label = hires_sampler.schedule.label if hires_sampler.schedule.name != "automatic" else None
    by_scale = hires.resize_x == 0 and hires.resize_y == 0
    return {
        "Hires sampler": hires_sampler.sampler.name if hires_sampler.sampler.name != sampler.sampler.name else None,
        "Hires prompt": hires.prompt if hires.prompt not in (None, params.prompt) else None,
        "Hires negative prompt": (hires.negative_prompt if hires.negative_prompt not in (None, params.negative_prompt)
                                  else None),
        "Hires schedule type": hires_schedule_label if hires_schedule_label != first_schedule else None,
        "Hires upscale": f"{hires.scale:g}" if by_scale else None,
        "Hires resize": None if by_scale else f"{hires.resize_x}x{hires.resize_y}",
        "Hires steps": hires.steps if hires.steps_set else None,
        "Hires upscaler": hires.upscaler if hires.upscaler_set else None,
    }
