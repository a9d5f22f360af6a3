"""Several queued txt2img requests as one model batch (the worker's --batch-max), each image equal
to the one its request makes alone, up to float noise.

`batch_key` (pure) decides which requests may share a batch: those whose pipeline calls differ only
in what is per row of the batch. Per row, exactly as alone: the initial noise (drawn on the CPU from
the request's seed, subseed and ENSD), the sampler's step noise (one generator, or one Brownian
tree, per image seed), and the conditioning of its prompt and negative prompt at every step of
their own schedules (prompt editing and alternation, clip skip, embeddings). Shared, so they are in
the key: the checkpoint, the size, the steps, the sampler and schedule, CFG, the refiner and its
switch point and aesthetic scores, the LoRA set (applied to the shared modules), the VAE and the
fast mode (DeepCache refreshes every row of a batch at the same evaluations).

Not batched (the key is None): img2img and inpainting (init images, masks and the strength that
picks the steps run are per request), hires fix (a second pass at another size after a per-request
upscaler), and a request's own batch_size > 1 or n_iter > 1 (A1111's batches keep their own
semantics: a skip ends one of the request's batches, not a row). Members whose prompts encode to a
different number of 75-token chunks run as separate groups, one after another: padding a prompt to
a longer one's length would change its image.

`generate_batch` runs on the GPU thread. Per member, progress goes to its own `JobControl`: an
interrupt (or skip) freezes that member's latents where they are, and its image is decoded from
them after the batch, as it would have been alone; the others go on. When every member has stopped
the pipeline stops.
"""

from __future__ import annotations

import time
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from sdxlpool.api.generation import GenerationParams
from sdxlpool.worker.checkpoints import Checkpoint
from sdxlpool.worker.conditioning import BatchConditioning, StepConditioning, chunks
from sdxlpool.worker.generate.infotext_fields import _generation_params, image_infotext
from sdxlpool.worker.generate.job import _loras_applied
from sdxlpool.worker.generate.noise import _initial_noise, image_seeds
from sdxlpool.worker.generate.options import GenerationResult, JobControl, RuntimeOptions
from sdxlpool.worker.generate.passes import _conditioning, _denoise, _txt2img_passes
from sdxlpool.worker.generate.pipelines import _decode, _job_pipeline
from sdxlpool.worker.generate.steps import _iterations
from sdxlpool.worker.loras import infotext_hashes
from sdxlpool.worker.samplers import SamplerChoice

__all__ = ["BatchMember", "batch_key", "generate_batch"]


@dataclass(frozen=True)
class BatchMember:
    params: GenerationParams
    options: RuntimeOptions
    control: JobControl


def batch_key(
    params: GenerationParams, sampler: SamplerChoice, options: RuntimeOptions, base: Checkpoint,
    refiner: Checkpoint | None,
) -> Hashable | None:
    """Requests with equal keys may run as one batch; None: this one always runs alone."""
    if params.img2img is not None or params.hires is not None or params.batch_size != 1 or params.n_iter != 1:
        return None
    use_refiner = refiner is not None and params.refiner_switch_at < 1.0
    refiner_part = None
    if use_refiner and refiner is not None:
        refiner_part = (refiner.title, refiner.sha256, params.refiner_switch_at,
                        options.refiner_aesthetic_score, options.refiner_negative_aesthetic_score)
    loras = tuple((use.file.key, use.te, use.unet) for use in options.loras)
    return (base.title, base.sha256, refiner_part, params.width, params.height, params.steps, params.cfg_scale,
            sampler.sampler.name, sampler.schedule.name, loras, options.vae_hash, id(options.vae), options.deepcache)


def generate_batch(
    base: Checkpoint, refiner: Checkpoint | None, sampler: SamplerChoice, members: Sequence[BatchMember],
) -> list[GenerationResult]:
    """One result per member, in order. The members share `batch_key` (the first one's checkpoints,
    sampler, size, LoRAs and VAE are used for all)."""
    import torch

    started = time.perf_counter()
    first = members[0]
    use_refiner = refiner is not None and first.params.refiner_switch_at < 1.0
    total = _iterations(base.pipeline, sampler, first.params.steps)
    results: dict[int, GenerationResult] = {}
    live = []
    for i, member in enumerate(members):
        if member.control.on_batch(0):
            live.append(i)
        else:  # interrupted before it started: no image, as alone
            results[i] = _result(member, base, None, sampler, [], True, 0, started)
    refiner_conds: dict[int, StepConditioning] = {}
    if use_refiner and refiner is not None:
        with torch.inference_mode():
            refiner_conds = {i: _conditioning(refiner, members[i].params.prompt, members[i].params.negative_prompt,
                                              members[i].options, total) for i in live}
    with _loras_applied(base, first.options), torch.inference_mode():
        base_conds = {i: _conditioning(base, members[i].params.prompt, members[i].params.negative_prompt,
                                       members[i].options, total) for i in live}
        groups: dict[tuple[Any, ...], list[int]] = {}
        for i in live:
            shape = (chunks(base_conds[i]), chunks(refiner_conds[i]) if i in refiner_conds else None)
            groups.setdefault(shape, []).append(i)
        for group in groups.values():
            images, frozen, steps_done = _run_group(
                base, refiner if use_refiner else None, sampler, [members[i] for i in group],
                BatchConditioning([base_conds[i] for i in group]),
                BatchConditioning([refiner_conds[i] for i in group]) if refiner_conds else None)
            for k, i in enumerate(group):
                results[i] = _result(members[i], base, refiner if use_refiner else None, sampler, [images[k]],
                                     k in frozen, steps_done[k], started)
    return [results[i] for i in range(len(members))]


def _run_group(
    base: Checkpoint, refiner: Checkpoint | None, sampler: SamplerChoice, group: list[BatchMember],
    base_cond: BatchConditioning, refiner_cond: BatchConditioning | None,
) -> tuple[list[Any], set[int], list[int]]:
    """One batched denoising of `group` (one image each): (images, members stopped, steps each saw)."""
    import torch

    for member in group:
        member.control.sharing = len(group)
    params = group[0].params
    seeds = [image_seeds(m.params.seed, 1)[0] for m in group]
    base_pipe = _job_pipeline(base.pipeline, sampler, seeds)
    refiner_pipe = _job_pipeline(refiner.pipeline, sampler, seeds) if refiner is not None else None
    noise, generators = [], []
    for member in group:  # each row's noise exactly as alone: its seed, subseed, variation strength, ENSD
        latents, own = _initial_noise(base_pipe, member.params, image_seeds(member.params.seed, 1),
                                      image_seeds(member.params.subseed, 1), member.options.eta_noise_seed_delta)
        noise.append(latents)
        generators.extend(own)
    frozen: dict[int, Any] = {}
    steps_done = [0] * len(group)

    def all_stopped() -> bool:
        return len(frozen) == len(group)

    def step_callback(pipe: Any, _step: int, _timestep: Any, tensors: dict[str, Any]) -> dict[str, Any]:
        latents = tensors["latents"]
        for k, member in enumerate(group):
            if k in frozen:
                continue
            steps_done[k] += 1
            if not member.control.on_step(latents[k:k + 1]):
                frozen[k] = latents[k:k + 1].clone()  # its image is decoded from here, as alone
        if all_stopped():
            pipe._interrupt = True  # nobody wants more: diffusers skips the remaining steps
        return tensors

    passes = _txt2img_passes(params, torch.cat(noise), refiner is not None)
    out = _denoise(base_pipe, refiner_pipe, base_cond, refiner_cond, params, group[0].options, generators,
                   passes, step_callback, all_stopped)
    if frozen:
        out = torch.cat([frozen.get(k, out[k:k + 1]).to(out.dtype) for k in range(len(group))])
    return _decode(base_pipe, out, group[0].options.vae), set(frozen), steps_done


def _result(
    member: BatchMember, base: Checkpoint, refiner: Checkpoint | None, sampler: SamplerChoice, images: list[Any],
    interrupted: bool, steps_done: int, started: float,
) -> GenerationResult:
    """The member's result as `generate` would give it alone (infotext included)."""
    params, options = member.params, member.options
    shown = params if options.infotext_prompt is None else replace(params, prompt=options.infotext_prompt)
    extra = _generation_params(params, None)
    seeds, subseeds = image_seeds(params.seed, 1), image_seeds(params.subseed, 1)
    infotexts = [image_infotext(shown, sampler, base, refiner, seeds[0], subseeds[0], 0,
                                vae_name=options.vae_name, vae_hash=options.vae_hash,
                                lora_hashes=infotext_hashes(options.loras) if options.loras else None,
                                hires_sampler=None, extra=extra) for _ in images]
    return GenerationResult(images=images, seeds=seeds, subseeds=subseeds, infotexts=infotexts,
                            interrupted=interrupted, seconds=time.perf_counter() - started, steps_done=steps_done,
                            extra={"generation_params": extra} if extra else {})
