"""`SimEngine`: the worker's engine with a clock instead of a GPU.

It plugs into the real `WorkerService` (`sdxlpool.worker.engine.Engine`), so validation, the queue,
the metrics, /progress, /interrupt and the A1111 responses are the real worker's own. Per job:

  1. faults: with probability fail_rate the job fails part-way (in its first half) with an
     exception, which the worker answers as HTTP 500 `{"error": "internal", ...}`; with probability
     hang_rate it never completes a step and waits until it is interrupted (/interrupt, or the
     client going away). Draws come from one `random.Random(seed)` in job order; the start-up
     warm-up job is never faulted, so a worker with fail_rate 1 still becomes ready.
  2. overhead_seconds once (text encoding, VAE decode and PNG work of a real GPU).
  3. every denoising iteration sleeps step_seconds x batch_size x width x height / 1024^2 and is
     reported to the job, so a whole job takes normalised steps x step_seconds (second-order
     samplers run ~2 iterations per step, as on diffusers) and pending_steps falls step by step.
     An img2img runs only its denoised steps (`first_pass_steps`: steps x denoising_strength); a
     hires fix runs a second pass of its denoised steps at the hires size, after the first.
  4. images: one solid colour per image, from a hash of everything that makes a real image differ
     (checkpoint, prompts, seeds, size, sampler, init images and mask, ...): the same request gives
     the same image. The size is the request's, or the hires size with hires fix.

Batching (--batch-max > 1): requests the worker batches (`generate.batch_key`) run together, every
iteration taking step_seconds x pixels x (1 + batch_alpha x (n - 1)) for n members, so a batch of n
makes n images in 1 + batch_alpha x (n - 1) times one image's time (batch_alpha 1: no gain, 0: free).
Each member draws its fault as a job alone would; a failing member fails alone (its request gets the
500), a hanging one waits to be interrupted once the others are done.

DeepCache (--fast-mode deepcache, the worker's flags): each pass's iterations follow DeepCache's
schedule, a cached one taking its share of a full one's FLOPs (`_deepcache.py`).

Images that are not the simulator's own (an extras route's upscaled upload, say) are encoded as
real PNGs of their size.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import random
import time
from dataclasses import astuple, dataclass, replace
from pathlib import Path
from typing import Any, Literal

from sdxlpool.api.generation import GenerationParams, denoised_steps
from sdxlpool.errors import SDXLPoolError
from sdxlpool.sim._catalog import sim_iterations, sim_schedules
from sdxlpool.sim._deepcache import evaluation_share
from sdxlpool.sim._png import solid_png
from sdxlpool.sim._settings import SIM_CHECKPOINT, SimSettings
from sdxlpool.worker.checkpoints import Checkpoint, CheckpointSet
from sdxlpool.worker.generate import (
    BatchMember,
    GenerationResult,
    JobControl,
    RuntimeOptions,
    image_infotext,
    image_seeds,
)
from sdxlpool.worker.samplers import Sampler, SamplerChoice, Schedule

__all__ = ["SimEngine", "SimImage", "SimulatedDeviceError", "sim_checkpoint"]

_REFERENCE_PIXELS = 1024 * 1024
_HANG_POLL_SECONDS = 3600.0  # a hung job wakes only when interrupted


class SimulatedDeviceError(SDXLPoolError, RuntimeError):
    """The failure `--fail-rate` injects, standing for a CUDA error in the middle of a job."""


@dataclass(frozen=True)
class SimImage:
    width: int
    height: int
    rgb: tuple[int, int, int]


@dataclass(frozen=True)
class _Fault:
    kind: Literal["fail", "hang"]
    at: int  # iterations completed before it strikes


def sim_checkpoint() -> Checkpoint:
    """The one fake SDXL base the simulator lists in /sdapi/v1/sd-models."""
    digest = hashlib.sha256(f"sdxlpool {SIM_CHECKPOINT}".encode()).hexdigest()
    return Checkpoint(model_name=SIM_CHECKPOINT, path=Path(SIM_CHECKPOINT), kind="base", sha256=digest,
                      pipeline=None)


class SimEngine:
    device = "sim"

    def __init__(self, settings: SimSettings) -> None:
        self.settings = settings
        self._rng = random.Random(settings.seed)
        self._unfaulted_jobs = 1 if settings.warmup else 0  # the warm-up job

    def load(self) -> CheckpointSet:
        return CheckpointSet([sim_checkpoint()])

    def schedules(self, sampler: Sampler) -> tuple[Schedule, ...]:
        return sim_schedules(sampler)

    def iterations(self, base: Checkpoint, sampler: SamplerChoice, steps: int) -> int:
        return sim_iterations(sampler.sampler, steps)

    def generate(
        self, base: Checkpoint, refiner: Checkpoint | None, params: GenerationParams, sampler: SamplerChoice,
        options: RuntimeOptions, control: JobControl,
    ) -> GenerationResult:
        started = time.perf_counter()
        # The passes of one batch: (iterations, seconds each). img2img: only the denoised steps.
        pixels = params.batch_size * params.width * params.height / _REFERENCE_PIXELS
        passes = [(sim_iterations(sampler.sampler, params.first_pass_steps), self.settings.step_seconds * pixels)]
        width, height = params.width, params.height
        if params.hires is not None:  # hires fix: a second pass at the hires size
            hires = params.hires
            width, height = hires.width, hires.height
            passes.append((sim_iterations(sampler.sampler, denoised_steps(hires.steps, hires.denoising_strength)),
                           self.settings.step_seconds * params.batch_size * width * height / _REFERENCE_PIXELS))
        per_batch = sum(iterations for iterations, _ in passes)
        ticks = [tick * evaluation_share(i, options.deepcache) for iterations, tick in passes for i in range(iterations)]
        seeds = image_seeds(params.seed, params.image_count)
        subseeds = image_seeds(params.subseed, params.image_count)

        # 1. Faults, drawn in job order.
        fault = self._draw_fault(per_batch * params.n_iter)

        # 2. Fixed per-request overhead.
        overhead = self.settings.overhead_seconds
        stopped = overhead > 0 and not control.wait(overhead)

        # 3. Denoising iterations on a schedule of deadlines, so sleep overshoots do not add up.
        deadline = time.perf_counter()
        done = 0
        images: list[SimImage] = []
        for batch_no in range(params.n_iter):
            if not control.on_batch(batch_no):  # interrupted; a skip ended only the batch it hit
                stopped = True
                break
            stopped = False
            for tick in ticks:
                if fault is not None and done == fault.at:
                    if fault.kind == "fail":
                        raise SimulatedDeviceError(f"simulated device failure after {done} iterations (--fail-rate)")
                    while control.wait(_HANG_POLL_SECONDS):  # hung: only an interrupt ends it
                        pass
                    stopped = True
                    break
                deadline += tick
                if tick > 0 and not control.wait(max(0.0, deadline - time.perf_counter())):
                    stopped = True
                    break
                done += 1
                if not control.on_step(None):
                    stopped = True
                    break
            # 4. The batch's images (an interrupted batch still returns its images, as A1111 does).
            first = batch_no * params.batch_size
            images.extend(
                SimImage(width, height, _colour(base, params, sampler, options, seeds[i], subseeds[i]))
                for i in range(first, first + params.batch_size)
            )

        infotexts = [image_infotext(params, sampler, base, None, seeds[i], subseeds[i], i) for i in range(len(images))]
        return GenerationResult(images=images, seeds=seeds, subseeds=subseeds, infotexts=infotexts,
                                interrupted=stopped, seconds=time.perf_counter() - started, steps_done=done)

    def generate_batch(
        self, base: Checkpoint, refiner: Checkpoint | None, sampler: SamplerChoice, members: list[BatchMember],
    ) -> list[GenerationResult | SDXLPoolError]:
        """Jobs with one batch key (txt2img, one image each, same size and steps) as one batch."""
        started = time.perf_counter()
        count = len(members)
        first = members[0].params
        iterations = sim_iterations(sampler.sampler, first.first_pass_steps)
        tick = (self.settings.step_seconds * first.width * first.height / _REFERENCE_PIXELS
                * (1 + self.settings.batch_alpha * (count - 1)))
        faults = [self._draw_fault(iterations) for _ in members]
        outcome: list[SDXLPoolError | None] = [None] * count
        done = [0] * count
        stopped = [not m.control.on_batch(0) for m in members]  # interrupted before it started
        ran = [not s for s in stopped]
        hung: set[int] = set()
        for member in members:
            member.control.sharing = count
        if self.settings.overhead_seconds:
            time.sleep(self.settings.overhead_seconds)  # text encoding and decode, once for the batch
        deadline = time.perf_counter()
        deepcache = members[0].options.deepcache  # the worker's mode: the same for every member
        for index in range(iterations):
            live = [k for k in range(count) if not stopped[k] and k not in hung]
            for k in live:
                fault = faults[k]
                if fault is not None and done[k] == fault.at:
                    if fault.kind == "fail":
                        outcome[k] = SimulatedDeviceError(f"simulated device failure after {done[k]} iterations")
                        stopped[k] = True
                    else:
                        hung.add(k)
            live = [k for k in live if not stopped[k] and k not in hung]
            if not live:
                break
            deadline += tick * evaluation_share(index, deepcache)
            time.sleep(max(0.0, deadline - time.perf_counter()))
            for k in live:
                done[k] += 1
                if not members[k].control.on_step(None):
                    stopped[k] = True
        for k in hung:  # hung: only an interrupt ends it
            while members[k].control.wait(_HANG_POLL_SECONDS):
                pass
            stopped[k] = True
        results: list[GenerationResult | SDXLPoolError] = []
        for k, member in enumerate(members):
            error = outcome[k]
            if error is not None:
                results.append(error)
                continue
            params = member.params
            seeds, subseeds = image_seeds(params.seed, 1), image_seeds(params.subseed, 1)
            images = [SimImage(params.width, params.height,
                               _colour(base, params, sampler, member.options, seeds[0], subseeds[0]))] if ran[k] else []
            results.append(GenerationResult(
                images=images, seeds=seeds, subseeds=subseeds,
                infotexts=[image_infotext(params, sampler, base, None, seeds[0], subseeds[0], 0) for _ in images],
                interrupted=stopped[k], seconds=time.perf_counter() - started, steps_done=done[k]))
        return results

    def encode_png(self, image: SimImage | Any, infotext: str) -> str:
        if not isinstance(image, SimImage):  # a PIL image (the extras routes work on the upload itself)
            return base64.b64encode(_real_png(image, infotext)).decode("ascii")
        png = solid_png(image.width, image.height, image.rgb, {"parameters": infotext}, self.settings.image_bytes)
        return base64.b64encode(png).decode("ascii")

    def _draw_fault(self, iterations: int) -> _Fault | None:
        if self._unfaulted_jobs:
            self._unfaulted_jobs -= 1
            return None
        roll, where = self._rng.random(), self._rng.random()  # always two draws: job n's fate is fixed
        if roll < self.settings.fail_rate:
            return _Fault("fail", int(where * iterations / 2))
        if roll < self.settings.fail_rate + self.settings.hang_rate:
            return _Fault("hang", 0)
        return None


def _colour(
    base: Checkpoint, params: GenerationParams, sampler: SamplerChoice, options: RuntimeOptions,
    seed: int, subseed: int,
) -> tuple[int, int, int]:
    variation = [subseed, params.subseed_strength] if params.subseed_strength > 0 else None  # as in A1111
    inputs = [_digest(image) for image in options.init_images] + [_digest(options.mask)]
    key = json.dumps([
        base.sha256, params.prompt, params.negative_prompt, seed, variation,
        params.steps, params.cfg_scale, params.width, params.height, sampler.sampler.name, sampler.schedule.name,
        astuple(replace(options, init_images=(), mask=None)), inputs,
        repr(params.img2img), repr(params.hires),
    ])
    red, green, blue = hashlib.sha256(key.encode()).digest()[:3]
    return red, green, blue


def _digest(image: Any) -> str | None:
    """A PIL image's content, hashed: the same upload on any worker gives the same colour."""
    if image is None:
        return None
    return hashlib.sha256(f"{image.mode} {image.size}".encode() + image.tobytes()).hexdigest()


def _real_png(image: Any, infotext: str) -> bytes:
    from PIL import PngImagePlugin

    text = PngImagePlugin.PngInfo()
    if infotext:
        text.add_text("parameters", infotext)
    out = io.BytesIO()
    image.save(out, format="PNG", pnginfo=text, compress_level=1)
    return out.getvalue()
