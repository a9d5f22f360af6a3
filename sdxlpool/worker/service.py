"""`WorkerService`: the loaded model, the job queue and the A1111 options, behind the HTTP routes.

Created once in the app's lifespan (loading SDXL takes seconds to minutes) and reached by routes
through `deps.WorkerDep`. Routes stay thin: they translate HTTP to these methods and back. What
makes the images is the service's `Engine` (`engine.py`): diffusers here, a clock in the simulator;
everything else a client or the gateway sees is this class's, whichever engine runs.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from dataclasses import dataclass, replace
from typing import Any

from sdxlpool._images import check_mask_size, decode_image
from sdxlpool.api.a1111 import (
    ExtrasBatchImagesRequest,
    ExtrasSingleImageRequest,
    Img2ImgRequest,
    Img2ImgResponse,
    PngInfoRequest,
    ProcessingRequest,
    ProgressResponse,
    ProgressState,
    Txt2ImgRequest,
    Txt2ImgResponse,
)
from sdxlpool.api.generation import MAX_SEED, GenerationParams, resolve_request
from sdxlpool.api.strict import check_strict
from sdxlpool.errors import InvalidRequest, NotFound, RequestError
from sdxlpool.prompts import LORA_KINDS, apply_styles, extract_networks
from sdxlpool.worker import deepcache
from sdxlpool.worker.checkpoints import Checkpoint, CheckpointSet
from sdxlpool.worker.conditioning import prompt_text
from sdxlpool.worker.embeddings import EmbeddingDatabase, load_embeddings
from sdxlpool.worker.encoding import ImageEncoder, ImageEncodingFailed
from sdxlpool.worker.engine import DiffusersEngine, Engine
from sdxlpool.worker.extras import (
    extras_png,
    html_info,
    output_size,
    plan_extras,
    png_info,
    postprocess_text,
    run_extras,
)
from sdxlpool.worker.generate import BatchMember, GenerationResult, RuntimeOptions, batch_key, denoising_steps
from sdxlpool.worker.jobs import Job, JobQueue
from sdxlpool.worker.loras import LoraLibrary, LoraUse, resolve_loras
from sdxlpool.worker.metrics import WorkerMetrics
from sdxlpool.worker.preview import preview_png_base64
from sdxlpool.worker.samplers import SamplerChoice, resolve_sampler
from sdxlpool.worker.settings import WorkerSettings, default_cache_dir
from sdxlpool.worker.styles import StyleFile
from sdxlpool.worker.upscalers import ModelUpscalers, available_upscalers, find_upscaler
from sdxlpool.worker.vaes import LoadedVae, VaeSet

__all__ = ["WorkerService", "Placement"]

log = logging.getLogger(__name__)
_WARM_UP_STEPS = 6  # first-to-last over 5 intervals: one late wake-up moves the estimate a fifth as much

# A1111 option keys this worker acts on, with A1111's defaults and the accepted type.
_OPTION_TYPES: dict[str, type] = {
    "CLIP_stop_at_last_layers": int,
    "eta_noise_seed_delta": int,
    "sdxl_refiner_high_aesthetic_score": float,
    "sdxl_refiner_low_aesthetic_score": float,
    "live_previews_enable": bool,
    "show_progress_every_n_steps": int,
}
_OPTION_DEFAULTS: dict[str, Any] = {
    "CLIP_stop_at_last_layers": 1,
    "eta_noise_seed_delta": 0,
    "sdxl_refiner_high_aesthetic_score": 6.0,
    "sdxl_refiner_low_aesthetic_score": 2.5,
    "live_previews_enable": True,
    "show_progress_every_n_steps": 1,
    "samples_format": "png",
    "sd_vae": "Automatic",
}


@dataclass(frozen=True)
class InputImages:
    """An img2img request's decoded images (PIL); empty for txt2img."""

    images: tuple[Any, ...] = ()
    mask: Any = None


class Placement(dict):
    """gpu_model / provider / location / worker: where a job ran (the `sdxlpool` info object)."""


class WorkerService:
    def __init__(
        self, settings: WorkerSettings, checkpoints: CheckpointSet, placement: Placement,
        engine: Engine | None = None,
    ) -> None:
        self.settings = settings
        self.engine: Engine = engine if engine is not None else DiffusersEngine(settings)
        self.checkpoints = checkpoints
        self.placement = placement
        self.queue = JobQueue(max_queued=settings.max_queue, batch_max=settings.batch_max,
                              batch_wait=settings.batch_wait_ms / 1000)
        # PNG encoding runs here, not on the job thread: the next job starts while it runs.
        self.encoder = ImageEncoder(self.engine.encode_png)
        self.loras = LoraLibrary(settings.lora_dir)  # the files; what is loaded is the engine's (checkpoint.loras)
        self.metrics = WorkerMetrics(self.queue, ready=lambda: self.ready, info=self._info_labels(),
                                     loaded_loras=self._loaded_loras)
        self.options: dict[str, Any] = dict(_OPTION_DEFAULTS)
        self.styles = StyleFile(settings.styles)
        self.vaes = VaeSet(settings.vae_dir, default_cache_dir())
        self.embeddings: EmbeddingDatabase = load_embeddings(settings.embeddings_dir, _text_widths(checkpoints.current))
        self.ready = False
        self._job_timestamp = "0"
        self._model_upscalers: ModelUpscalers | None = None  # made on first use, on the job thread
        self._compiling: asyncio.Task[None] | None = None  # compiling the shapes after the first

    # -- lifecycle ----------------------------------------------------------------------------------
    async def start(self) -> None:
        self.queue.start()
        shapes = self._compiled_shapes()
        if shapes:  # the first compiled shape warm before ready, on the job thread (worker.fastpath)
            await self._compile(shapes[0], self.queue.run_now)
        if self.settings.warmup:
            await self._warm_up()
        self.ready = True
        if shapes[1:]:
            self._compiling = asyncio.get_running_loop().create_task(self._compile_rest(shapes[1:]))

    def _compiled_shapes(self) -> tuple[Any, ...]:
        fast = getattr(self.engine, "fast", None)  # fastpath.FastPath on a diffusers engine with it on
        return fast.pending if fast is not None else ()

    def _compile_job(self, shape: Any) -> Job:
        """A short job at `shape` (base, then the refiner when there is one; VAE decode) that compiles
        every module for it. The job runs on the job thread, like every generation."""
        refiner = self.checkpoints.refiners[0].title if self.checkpoints.refiners else None
        job = self._start_up_job(Txt2ImgRequest(
            prompt="warm-up", seed=0, subseed=0, steps=self._start_up_steps(4), width=shape.width, height=shape.height,
            batch_size=shape.batch, refiner_checkpoint=refiner, refiner_switch_at=0.5), refined=True)
        fast = self.engine.fast  # type: ignore[attr-defined]
        run = job.run

        def compile_run(job: Job) -> Any:
            with fast.warming(shape):
                return run(job)

        return Job(run=compile_run, cost=0.0, iterations=0)  # start-up work: no pending steps

    async def _compile_rest(self, shapes: tuple[Any, ...]) -> None:
        """The other compiled shapes, one queued job each after ready (requests go between them; a
        request at a shape not yet warm runs eager). One that fails is logged and left eager."""
        for shape in shapes:
            await self._compile(shape, self.queue.submit)

    async def _compile(self, shape: Any, run: Any) -> None:
        try:
            await run(self._compile_job(shape))
        except RequestError as exc:  # outside the pool's limits: never asked for
            log.warning("compile shape %s skipped: %s", shape, exc)
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - the shape stays eager
            log.exception("compiling %s failed; it runs eager", shape)

    def compiled_state(self) -> dict[str, Any] | None:
        """For /readyz: the compiled shapes warm and still to warm (None: the fast path is off)."""
        fast = getattr(self.engine, "fast", None)
        if fast is None:
            return None
        return {"warm": [str(s) for s in fast.warm], "pending": [str(s) for s in fast.pending],
                "mode": fast.mode, "cache_loaded": fast.cache_loaded}

    async def close(self) -> None:
        self.ready = False
        if self._compiling is not None:
            self._compiling.cancel()
            await asyncio.gather(self._compiling, return_exceptions=True)
        await self.queue.close()
        self.encoder.close()

    async def _warm_up(self) -> None:
        """One short job at the default size: first-call kernel set-up, and a first step_seconds.

        Several steps, not two: step_seconds is measured from the first to the last iteration, so
        one late wake-up on a loaded machine is divided by the intervals between them; from a single
        interval it could make one of two equal workers look twice as slow and skew routing.
        """
        job = self._start_up_job(Txt2ImgRequest(
            prompt="warm-up", seed=0, subseed=0, steps=self._start_up_steps(_WARM_UP_STEPS)), refined=False)
        started = time.perf_counter()
        await self.queue.run_now(job)  # its iterations give the first step_seconds
        log.info("warm-up done in %.2fs, %.4fs per normalised step", time.perf_counter() - started,
                 self.queue.step_seconds)

    def _start_up_job(self, request: Txt2ImgRequest, *, refined: bool) -> Job:
        """A job the worker runs for itself (warm-up, compiling a shape): Euler on the current base,
        with the request's refiner when `refined`."""
        params = resolve_request(request, self.settings.defaults, self.settings.limits)
        sampler = resolve_sampler("Euler", schedules_of=self.engine.schedules)
        refiner = self._refiner_for(params) if refined else None
        return self._job(params, self.checkpoints.current, refiner, sampler, self._runtime({}))

    def _start_up_steps(self, steps: int) -> int:
        return min(steps, self.settings.limits.max_steps)  # a pool may allow fewer

    # -- txt2img and img2img ----------------------------------------------------------------------------
    async def txt2img(self, request: Txt2ImgRequest, *, strict: bool | None = None) -> Txt2ImgResponse:
        """One request. `strict` (the X-SDXL-Strict header; None: --strict) refuses it with a 422
        when anything in it would not be applied, instead of making the image without it."""
        return Txt2ImgResponse(**await self._process(request, strict=strict))

    async def img2img(self, request: Img2ImgRequest, *, strict: bool | None = None) -> Img2ImgResponse:
        """img2img, or inpainting when the request has a mask; `strict` as for txt2img. The images
        are decoded (and checked: a bad one is a 422 naming its field) before the job is queued."""
        answer = await self._process(request, strict=strict)
        if not request.include_init_images:  # A1111 echoes the images only when asked to
            answer["parameters"].update(init_images=None, mask=None)
        return Img2ImgResponse(**answer)

    async def _process(self, request: ProcessingRequest, *, strict: bool | None) -> dict[str, Any]:
        """What txt2img and img2img share: check, queue, run, answer (images, parameters, info)."""
        try:
            inputs = await self._inputs(request)
            params = resolve_request(request, self.settings.defaults, self.settings.limits,
                                     init_size=inputs.images[0].size if inputs.images else None)
            sampler = resolve_sampler(params.sampler_name, params.scheduler, schedules_of=self.engine.schedules)
            hires = await self._hires(params, sampler)
            overrides = self._check_options(params.override_settings, field_prefix="override_settings.")
            base = self._base_for(overrides)
            refiner = self._refiner_for(params)
            # What is not applied, in one list (info.sdxlpool.ignored; strict mode's refusal): the
            # fields, then each later step appends its own entries ("styles: ...", "prompt: ...").
            ignored = list(params.ignored_fields)
            params = self._styled(params, request.styles or [], ignored)
            ignored += _prompt_constructs(params.prompt)
            written = params.prompt  # as the client wrote it, styled: the info and infotext keep it
            params, loras = await self._take_loras(params, base, ignored)
            check_strict(ignored, self.settings.strict if strict is None else strict)
            vae = await self._vae_for(overrides, base)
        except RequestError:
            self.metrics.requests.labels("invalid").inc()
            raise
        params = _with_seeds(params)
        if self.settings.log_prompts:  # opt-in: prompts are users' data, never logged otherwise
            log.info("job: seed %d, %d steps, %dx%d, prompt %r, negative prompt %r", params.seed, params.steps,
                     params.width, params.height, params.prompt, params.negative_prompt)
        if overrides and not request.override_settings_restore_afterwards:
            self._apply_options(overrides)  # A1111: the override becomes the new global value
        runtime = replace(self._runtime(overrides, vae), loras=loras, infotext_prompt=written,
                          init_images=inputs.images, mask=inputs.mask, **hires)
        job = self._job(params, base, refiner, sampler, runtime)
        job.task_id = request.force_task_id  # the gateway names its attempts, to follow their /progress
        try:
            result: GenerationResult = await self.queue.submit(job)
        except asyncio.CancelledError:
            self.metrics.requests.labels("cancelled").inc()
            raise
        except RequestError:
            self.metrics.requests.labels("rejected").inc()
            raise
        except Exception:
            self.metrics.requests.labels("error").inc()
            log.exception("generation failed")
            raise
        self.metrics.inference_seconds.observe(result.seconds)
        self.metrics.batch_images.observe(job.sharing * params.batch_size)
        # The job thread has moved on to the next job; this request waits for its own images only.
        shown = (result.images, result.infotexts) if params.send_images else ([], [])
        encoded = self.encoder.submit(*shown)
        try:
            images = await encoded.result()
        except ImageEncodingFailed:
            self.metrics.requests.labels("error").inc()
            log.exception("PNG encoding failed")
            raise
        self.metrics.requests.labels("interrupted" if result.interrupted else "success").inc()
        info = self._info(replace(params, prompt=written), sampler, base, refiner, result, job,
                          request.styles or [], vae, ignored)
        info["sdxlpool"]["encode_seconds"] = round(encoded.seconds, 4)
        info["sdxlpool"]["fast_mode"] = runtime.fast_mode  # "off": the exact path (X-SDXL-Fast-Mode)
        return {"images": images, "parameters": request.model_dump(), "info": json.dumps(info)}

    async def _inputs(self, request: ProcessingRequest) -> InputImages:
        """An img2img request's init images and mask, decoded in a thread (a txt2img has none)."""
        if not isinstance(request, Img2ImgRequest) or not request.init_images:
            return InputImages()
        limit = self.settings.limits.max_input_pixels

        def decode() -> InputImages:
            images = tuple(decode_image(f"init_images.{i}", data, max_pixels=limit)
                           for i, data in enumerate(request.init_images or []))
            mask = decode_image("mask", request.mask, max_pixels=limit) if request.mask else None
            if mask is not None:
                check_mask_size(mask.size, images[0].size)
            return InputImages(images, mask)

        return await asyncio.to_thread(decode)

    async def _hires(self, params: GenerationParams, sampler: SamplerChoice) -> dict[str, Any]:
        """A hires fix's sampler and upscaler (RuntimeOptions fields), checked: an unknown one is a 422
        naming hr_sampler_name, hr_scheduler or hr_upscaler. Nothing for a request without hires fix."""
        hires = params.hires
        if hires is None:
            return {}
        hires_sampler = sampler
        if hires.sampler_name is not None or hires.scheduler is not None:
            name = hires.sampler_name or params.sampler_name
            field = "hr_sampler_name" if hires.sampler_name is not None else "hr_scheduler"
            try:
                hires_sampler = resolve_sampler(name, hires.scheduler or params.scheduler,
                                                schedules_of=self.engine.schedules)
            except NotFound as exc:
                raise InvalidRequest(field, str(exc)) from None
            except InvalidRequest as exc:
                raise InvalidRequest("hr_scheduler", exc.message) from None
        if hires.latent:
            return {"hires_sampler": hires_sampler}
        entries = await asyncio.to_thread(available_upscalers, self.settings)
        entry = find_upscaler(entries, hires.upscaler, field="hr_upscaler")
        return {"hires_sampler": hires_sampler, "hires_upscaler": entry,
                "upscale_model": self._upscale_model if entry.kind == "model" else None}

    async def _take_loras(
        self, params: GenerationParams, base: Checkpoint, ignored: list[str]
    ) -> tuple[GenerationParams, tuple[LoraUse, ...]]:
        """The prompt without its <lora:...> calls (the encoders' text), and the LoRAs they name.

        What cannot be applied is appended to `ignored`: a LoRA not found (after one re-scan of the
        folder, as A1111 does), or any LoRA when the engine applies none. Other network kinds are
        `_prompt_constructs`' to list.
        """
        try:
            text, calls = extract_networks(params.prompt)
        except ValueError as exc:
            raise InvalidRequest("prompt", str(exc)) from None
        if not calls:
            return params, ()
        if any(c.kind in LORA_KINDS and self.loras.find(c.name) is None for c in calls):
            await asyncio.to_thread(self.loras.refresh)
        uses, not_applied = resolve_loras(calls, self.loras.find)
        if uses and base.loras is None:
            not_applied += [f"prompt: {c.raw} (this worker's engine does not apply LoRAs)" for c in calls
                            if c.kind in LORA_KINDS and self.loras.find(c.name) is not None]
            uses = ()
        ignored += not_applied
        return replace(params, prompt=text), uses

    def _loaded_loras(self) -> list[tuple[str, str]]:
        """(name, alias) of every LoRA the engine holds loaded, for the sdxl_worker_lora_loaded metric."""
        adapters = next((c.loras for c in self.checkpoints.all if c.loras is not None), None)
        return [(f.name, f.alias) for f in adapters.loaded()] if adapters is not None else []

    def _job(
        self, params: GenerationParams, base: Checkpoint, refiner: Checkpoint | None,
        sampler: SamplerChoice, options: RuntimeOptions,
    ) -> Job:
        # The iterations that really run: img2img denoises only the last part of its schedule.
        steps = denoising_steps(params)
        per_batch = self.engine.iterations(base, sampler, steps) if steps else 0
        if params.hires is not None and params.hires.steps_run:  # the second pass runs all its steps
            per_batch += self.engine.iterations(base, options.hires_sampler or sampler, params.hires.steps)
            steps += params.hires.steps
        iterations = per_batch * params.n_iter
        # Normalised cost counts denoising iterations (second-order samplers run two per step).
        cost = params.normalised_steps * per_batch / steps if steps else 0.0
        job = Job(run=lambda job: self.engine.generate(base, refiner, params, sampler, options, job),
                  cost=cost, iterations=iterations, batches=params.n_iter, steps=steps)
        batched = getattr(self.engine, "generate_batch", None)  # an engine without it never batches
        if batched is not None and self.settings.batch_max > 1 and (
                key := batch_key(params, sampler, options, base, refiner)) is not None:
            job.batch_key, job.batch_input = key, (params, options)
            job.run_batch = lambda jobs: batched(base, refiner, sampler,
                                                 [BatchMember(j.batch_input[0], j.batch_input[1], j) for j in jobs])
        return job

    def _base_for(self, overrides: dict[str, Any]) -> Checkpoint:
        name = overrides.get("sd_model_checkpoint")
        if name is None:
            return self.checkpoints.current
        return self.checkpoints.find(name, kind="base", field="override_settings.sd_model_checkpoint")

    def _refiner_for(self, params: GenerationParams) -> Checkpoint | None:
        if not params.refiner_checkpoint or params.refiner_checkpoint.lower() == "none":
            return None
        return self.checkpoints.find(params.refiner_checkpoint, kind="refiner", field="refiner_checkpoint")

    def _styled(self, params: GenerationParams, names: list[str], ignored: list[str]) -> GenerationParams:
        """The request's styles merged into its prompts (A1111: before anything else reads them)."""
        if not names:
            return params
        styled = apply_styles(params.prompt, params.negative_prompt, names, self.styles.current())
        ignored += [f"styles: {name} (no such style)" for name in styled.unknown]
        return replace(params, prompt=styled.prompt, negative_prompt=styled.negative_prompt)

    async def _vae_for(self, overrides: dict[str, Any], base: Checkpoint) -> LoadedVae | None:
        """The VAE `sd_vae` (the request's override, else the option) means for `base`; None: its own.
        Choosing (a scan of --vae-dir for a named VAE) and loading (or finding it cached) run in one
        thread hop, off the event loop."""
        field = "override_settings.sd_vae" if "sd_vae" in overrides else "sd_vae"
        value = overrides.get("sd_vae", self.options["sd_vae"])
        own = getattr(base.pipeline, "vae", None)  # None: an engine without a model (the simulator)

        def chosen() -> LoadedVae | None:
            entry = self.vaes.choose(value, base, field=field)
            return None if entry is None or own is None else self.vaes.load(entry, own, field=field)

        return await asyncio.to_thread(chosen)

    def _runtime(self, overrides: dict[str, Any], vae: LoadedVae | None = None) -> RuntimeOptions:
        opts = {**self.options, **overrides}
        return RuntimeOptions(
            clip_skip=opts["CLIP_stop_at_last_layers"],
            eta_noise_seed_delta=opts["eta_noise_seed_delta"],
            refiner_aesthetic_score=opts["sdxl_refiner_high_aesthetic_score"],
            refiner_negative_aesthetic_score=opts["sdxl_refiner_low_aesthetic_score"],
            vae=vae.module if vae is not None else None,
            vae_name=vae.name if vae is not None else None,
            vae_hash=vae.short_hash if vae is not None else None,
            embeddings=self.embeddings,
            deepcache=deepcache.chosen(self.settings.fast_mode, self.settings.deepcache_interval,
                                       self.settings.deepcache_branch),
        )

    def _info(
        self, params: GenerationParams, sampler: SamplerChoice, base: Checkpoint, refiner: Checkpoint | None,
        result: GenerationResult, job: Job, styles: list[str], vae: LoadedVae | None, ignored: list[str],
    ) -> dict[str, Any]:
        queue_seconds = (job.started_at or job.enqueued_at) - job.enqueued_at
        return {
            "prompt": params.prompt,
            "all_prompts": [params.prompt] * len(result.images),
            "negative_prompt": params.negative_prompt,
            "all_negative_prompts": [params.negative_prompt] * len(result.images),
            "seed": params.seed,
            "all_seeds": result.seeds[: len(result.images)],
            "subseed": params.subseed,
            "all_subseeds": result.subseeds[: len(result.images)],
            "subseed_strength": params.subseed_strength,
            "width": params.width,
            "height": params.height,
            "sampler_name": sampler.sampler.name,
            "scheduler": sampler.schedule.label,
            "cfg_scale": params.cfg_scale,
            "steps": params.steps,
            "batch_size": params.batch_size,
            "n_iter": params.n_iter,
            "sd_model_name": base.model_name,
            "sd_model_hash": base.short_hash,
            "sd_vae_name": vae.name if vae is not None else None,
            "sd_vae_hash": vae.short_hash if vae is not None else None,
            "refiner_checkpoint": refiner.title if refiner else None,
            "refiner_switch_at": params.refiner_switch_at if refiner else None,
            "clip_skip": self._runtime(params.override_settings).clip_skip,
            "seed_resize_from_w": -1,
            "seed_resize_from_h": -1,
            "denoising_strength": _denoising_strength(params),
            "extra_generation_params": {**result.extra.get("generation_params", {}),
                                        **({"Refiner": refiner.title} if refiner else {})},
            "index_of_first_image": 0,
            "infotexts": result.infotexts,
            "styles": styles,
            "job_timestamp": self._job_timestamp,
            "is_using_inpainting_conditioning": False,
            "version": "sdxlpool",
            "interrupted": result.interrupted,
            "sdxlpool": {
                **self.placement,
                "inference_seconds": round(result.seconds, 4),
                "queue_seconds": round(queue_seconds, 4),
                "steps_done": result.steps_done,
                **({"path": result.extra["path"]} if "path" in result.extra else {}),  # compiled or eager
                "batch_images": job.sharing * params.batch_size,  # images in the model batch it ran in
                "ignored": ignored,
            },
        }

    # -- upscalers, extras and png-info ------------------------------------------------------------------
    def _upscale_model(self, path: Any, image: Any) -> Any:
        """A model upscaler's pass over one image (ModelRunner); called on the job thread only."""
        if self._model_upscalers is None:
            self._model_upscalers = ModelUpscalers(self.engine.device or "cpu")
        return self._model_upscalers.run(path, image)

    async def extras(
        self, request: ExtrasSingleImageRequest | ExtrasBatchImagesRequest, *, strict: bool | None = None,
    ) -> tuple[list[str], str]:
        """The extras routes: (base64 PNGs, html_info). Images are decoded and checked in a thread;
        PIL upscalers run there too, a model upscaler runs as a job on the queue (it may use the
        GPU: never beside a generation)."""
        entries = await asyncio.to_thread(available_upscalers, self.settings)
        plan = plan_extras(request, entries)
        check_strict(list(plan.ignored), self.settings.strict if strict is None else strict)
        if isinstance(request, ExtrasSingleImageRequest):
            files = [("image", request.image)]
        else:
            files = [(f"imageList.{i}.data", item.data) for i, item in enumerate(request.imageList)]
        limit = self.settings.limits.max_input_pixels

        def decode() -> list[Any]:
            images = [decode_image(name, data, max_pixels=limit) for name, data in files]
            for image in images:
                output_size(plan, image.width, image.height, max_pixels=limit)
            return images

        images = await asyncio.to_thread(decode)

        def work() -> tuple[list[str], str]:
            outputs, text = [], ""
            for image in images:
                result, info = run_extras(plan, image, self._upscale_model if plan.uses_model else None)
                text = postprocess_text(info)
                outputs.append(extras_png(result, image.info, text))
            return outputs, html_info(text, plan.ignored)

        if not plan.uses_model:
            return await asyncio.to_thread(work)
        result: tuple[list[str], str] = await self.queue.submit(Job(run=lambda job: work(), cost=0.0, iterations=0))
        return result

    async def png_info(self, request: PngInfoRequest) -> dict[str, Any]:
        """POST /sdapi/v1/png-info: the image's infotext, other text, and the infotext parsed."""
        if not request.image.strip():  # A1111 answers an empty info for no image
            return {"info": "", "items": {}, "parameters": {}}
        limit = self.settings.limits.max_input_pixels
        return await asyncio.to_thread(lambda: png_info(decode_image("image", request.image, max_pixels=limit)))

    # -- options --------------------------------------------------------------------------------------
    def get_options(self) -> dict[str, Any]:
        current = self.checkpoints.current
        return {**self.options, "sd_model_checkpoint": current.title, "sd_checkpoint_hash": current.sha256}

    def set_options(self, values: dict[str, Any]) -> None:
        """POST /sdapi/v1/options: all values are checked before any is applied (a VAE is loaded
        first, as A1111 does, so one that does not fit the checkpoint is refused here)."""
        checked = self._check_options(values)
        if "sd_vae" in checked:
            name = checked.get("sd_model_checkpoint")
            base = self.checkpoints.find(name, kind="base", field="sd_model_checkpoint") if name else self.checkpoints.current
            entry = self.vaes.choose(checked["sd_vae"], base)
            own = getattr(base.pipeline, "vae", None)
            if entry is not None and own is not None:
                self.vaes.load(entry, own)
        self._apply_options(checked)

    def _check_options(self, values: dict[str, Any], field_prefix: str = "") -> dict[str, Any]:
        checked = dict(values)
        for key, expected in _OPTION_TYPES.items():
            if key not in values:
                continue
            value = values[key]
            ok = isinstance(value, expected) or (expected is float and isinstance(value, int))
            if not ok or isinstance(value, bool) != (expected is bool):
                raise InvalidRequest(key, f"must be {expected.__name__}, got {value!r}")
        if "CLIP_stop_at_last_layers" in values and not 1 <= values["CLIP_stop_at_last_layers"] <= 12:
            raise InvalidRequest("CLIP_stop_at_last_layers", "must be between 1 and 12")
        if "sd_model_checkpoint" in values:
            name = values["sd_model_checkpoint"]
            if not isinstance(name, str):
                raise InvalidRequest("sd_model_checkpoint", f"must be a checkpoint title, got {name!r}")
            checked["sd_model_checkpoint"] = self.checkpoints.find(name, kind="base", field="sd_model_checkpoint").title
        if "sd_vae" in values:
            checked["sd_vae"] = self.vaes.check(values["sd_vae"], field=field_prefix + "sd_vae")
        return checked

    def _apply_options(self, values: dict[str, Any]) -> None:
        for key, value in values.items():
            if key == "sd_model_checkpoint":
                self.checkpoints.current = self.checkpoints.find(value, kind="base", field=key)
                self.metrics.set_info(self._info_labels())
            elif key != "sd_checkpoint_hash":
                self.options[key] = value

    def _info_labels(self) -> dict[str, str]:
        return {**self.placement, "model": self.checkpoints.current.title}

    # -- progress and interrupt -----------------------------------------------------------------------
    async def progress(self, *, skip_current_image: bool, task_id: str | None = None) -> ProgressResponse:
        """The running job's progress; `task_id`: that running job's (a batch runs several), when running."""
        job = self.queue.running
        if task_id is not None:
            job = next((j for j in self.queue.batch if j.label == task_id), job)
        waiting = self.queue.snapshot().queue_depth
        if job is None or job.started_at is None:
            return ProgressResponse(progress=0.0, eta_relative=0.0, state=ProgressState(job_count=waiting),
                                    textinfo="Waiting..." if waiting else None)
        fraction = job.fraction_done
        elapsed = time.monotonic() - job.started_at
        eta = elapsed / fraction - elapsed if fraction > 0 else job.remaining_cost * self.queue.step_seconds
        step, steps = job.step_in_batch()
        image = None
        if not skip_current_image and self.options.get("live_previews_enable") and job.latest_latents is not None:
            image = await asyncio.to_thread(preview_png_base64, job.latest_latents)
        state = ProgressState(
            interrupted=job.interrupt.is_set(),
            skipped=job.skip_batch.is_set(),
            job=job.label,
            job_count=job.batches,
            job_no=job.batch_no,
            job_timestamp=time.strftime("%Y%m%d%H%M%S"),
            sampling_step=step,
            sampling_steps=steps,
        )
        return ProgressResponse(progress=round(fraction, 4), eta_relative=max(0.0, eta), state=state,
                                current_image=image, textinfo=None)

    def interrupt(self, task_id: str | None = None) -> bool:
        return self.queue.interrupt(task_id)

    def skip(self, task_id: str | None = None) -> bool:
        return self.queue.skip(task_id)


def _prompt_constructs(prompt: str) -> list[str]:
    """The prompt's constructs this worker does not apply ("prompt: AND (...)"), for `ignored`."""
    try:
        return list(prompt_text(prompt).ignored)
    except ValueError as exc:  # a network call with a malformed multiplier
        raise InvalidRequest("prompt", str(exc)) from None


def _text_widths(checkpoint: Checkpoint) -> tuple[int, int] | None:
    """The base's two text encoders' widths (768, 1280 for SDXL): which embeddings fit it."""
    pipeline = checkpoint.pipeline
    encoders = [getattr(pipeline, name, None) for name in ("text_encoder", "text_encoder_2")]
    if any(getattr(e, "config", None) is None for e in encoders):
        return None  # an engine without real text encoders (the simulator)
    return int(encoders[0].config.hidden_size), int(encoders[1].config.hidden_size)  # type: ignore[union-attr]


def _denoising_strength(params: GenerationParams) -> float | None:
    if params.img2img is not None:
        return params.img2img.denoising_strength
    return params.hires.denoising_strength if params.hires is not None else None


def _with_seeds(params: GenerationParams) -> GenerationParams:
    """Resolve -1 seeds now, so the info, infotext and a gateway retry all see the same number."""
    seed = params.seed if params.seed >= 0 else random.randint(0, MAX_SEED)
    subseed = params.subseed if params.subseed >= 0 else random.randint(0, MAX_SEED)
    return replace(params, seed=seed, subseed=subseed)
