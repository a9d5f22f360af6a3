"""The shared denoising step (2c, 2d) of every pass, txt2img and img2img alike, and what a pass's
step-end callback does: the prompt schedule's conditioning switch, progress, the inpainting blend."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sdxlpool.api.generation import GenerationParams
from sdxlpool.prompts.schedules import prompt_schedule
from sdxlpool.worker import deepcache
from sdxlpool.worker.checkpoints import Checkpoint
from sdxlpool.worker.conditioning import (
    Conditioning,
    StepConditioning,
    build_conditioning,
    pipeline_encoders,
    prompt_text,
)
from sdxlpool.worker.generate.options import RuntimeOptions


@dataclass
class _Passes:
    """What differs between txt2img and img2img in the shared denoising step: the pipelines' own
    arguments, and for img2img the step after which the base hands over (`base_iterations`) and
    the inpainting blend (`blend`)."""

    base: dict[str, Any]
    refiner: dict[str, Any] | None  # None: no refiner pass
    base_iterations: int | None = None  # stop the base after this many iterations (img2img + refiner)
    blend: Any = None  # _MaskBlend for inpainting


def _txt2img_passes(params: GenerationParams, latents: Any, use_refiner: bool) -> _Passes:
    """txt2img's arguments for the shared denoising step: the seeds' noise as the base's latents at
    the job's size, and with a refiner the handoff at `refiner_switch_at` (diffusers'
    denoising_end / denoising_start)."""
    return _Passes(
        base={"width": params.width, "height": params.height, "latents": latents,
              "denoising_end": params.refiner_switch_at if use_refiner else None},
        refiner={"denoising_start": params.refiner_switch_at})


def _denoise(
    base_pipe: Any, refiner_pipe: Any, base_cond: Conditioning, refiner_cond: Conditioning | None,
    params: GenerationParams, options: RuntimeOptions, generators: list[Any], passes: _Passes,
    step_callback: Any, stopped: Any,
) -> Any:
    """One batch's denoising (2c, 2d), txt2img and img2img alike: the base, then the refiner from
    the handed-over latents. Latents out."""
    # 2c. Base denoising; with a refiner it stops at the switch point and hands latents over.
    #     The conditioning switches at the steps the prompt's schedule says (step_switch).
    on_step = _PassStep(step_callback, passes.blend, passes.base_iterations)
    base_steps = _StepSwitch(base_cond, 0, params.batch_size, on_step)
    out = _run_pass(base_pipe, base_steps, params, generators, params.steps, options.deepcache, **passes.base)

    # 2d. Refiner denoising from the handed-over latents (skipped once interrupted); its
    #     steps count on from the base's, as A1111 counts them.
    if refiner_pipe is not None and refiner_cond is not None and not stopped() and passes.refiner is not None:
        on_step = _PassStep(step_callback, passes.blend, None)
        refiner_steps = _StepSwitch(refiner_cond, base_steps.iterations, params.batch_size, on_step)
        # img2img hands over after a number of steps: the refiner starts from the latents as they are.
        handed = {"latents": out} if passes.base_iterations is not None else {}
        out = _run_pass(
            refiner_pipe, refiner_steps, params, generators, params.steps, options.deepcache,
            **passes.refiner,
            **handed,
            image=out,
            aesthetic_score=options.refiner_aesthetic_score,
            negative_aesthetic_score=options.refiner_negative_aesthetic_score,
        )
    return out


def _run_pass(pipe: Any, steps: _StepSwitch, params: GenerationParams, generators: list[Any],
              num_inference_steps: int, fast: deepcache.DeepCache | None, **arguments: Any) -> Any:
    """One pipeline call of a pass (base, refiner or hires) over the batch: its conditioning from
    the step the pass starts at, `steps` as the step-end callback, the pass's own `arguments`
    (latents, image, strength, ...); latents out. `fast`: DeepCache for this pass alone (its cache
    is made and dropped here), None: the exact UNet."""
    with deepcache.for_pass(pipe, fast):
        return pipe(
            **steps.conditioning.pipeline_kwargs(steps.first_step),
            **arguments,
            num_images_per_prompt=params.batch_size,
            generator=generators,
            num_inference_steps=num_inference_steps,
            guidance_scale=params.cfg_scale,
            output_type="latent",
            callback_on_step_end=steps,
            callback_on_step_end_tensor_inputs=_StepSwitch.TENSORS,
        ).images


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


class _StepSwitch:
    """A pipeline's step-end callback: counts the iteration, then puts the next step's conditioning
    in place when the schedule changes there (diffusers reads `prompt_embeds`/`add_text_embeds`
    back from the callback's answer)."""

    TENSORS = ["latents", "prompt_embeds", "add_text_embeds"]

    def __init__(self, conditioning: Conditioning, first_step: int, images: int, on_step: Any) -> None:
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



def _conditioning(
    checkpoint: Checkpoint, prompt: str, negative_prompt: str | None, options: RuntimeOptions, total: int,
    hires_total: int | None = None,
) -> StepConditioning:
    """One pass's conditioning per step: the prompts' schedules over the run's `total` iterations
    (with `hires_total`: over the hires pass that follows them, as `prompt_schedule` counts it)."""
    positive = prompt_schedule(prompt_text(prompt).text, total, hires_steps=hires_total)
    negative = prompt_schedule(negative_prompt or "", total, hires_steps=hires_total)
    return build_conditioning(positive, negative, pipeline_encoders(checkpoint.pipeline),
                              embeddings=options.embeddings, clip_skip=options.clip_skip)
