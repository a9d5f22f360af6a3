"""The engine behind `WorkerService`: what turns checked parameters into images.

`WorkerService` owns everything a client or the gateway can see (validation, the job queue, the
metrics, progress and interrupt, A1111 responses); an engine owns only the model. Two engines exist:

* `DiffusersEngine` (here): SDXL checkpoints on a GPU or the CPU, and `generate.generate`;
* `sdxlpool.sim.SimEngine`: one fake checkpoint and a clock, for benchmarks (`sdxlpool sim-worker`).

An engine is made cheaply with the app. `schedules` may be asked at any time (it answers
/sdapi/v1/samplers while the model is still loading); `load` runs once, in a thread, at start-up;
`iterations` and `encode_png` are called per request; `generate` runs on the queue's one job thread
and reports every denoising iteration to its `JobControl` (that is what /progress, /interrupt and
the pending_steps metric see).

`DiffusersEngine.fast` is the exact fast path (`fastpath.py`: channels_last, fused QKV, compiled
UNets and VAE decode at whitelisted shapes) when `--compile` is on; the service warms its shapes on
the job thread, and each job's result names the path it took (`extra["path"]`).

`--fast-mode deepcache` (`deepcache.py`, inexact, opt-in) runs each pass's UNet through DeepCache's
split forward; `load` refuses a UNet it cannot cut. Its UNet evaluations never take the compiled
forward (the VAE decode still may), so such a job's path is `eager` or `mixed`.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any, Protocol

from sdxlpool.api.generation import GenerationParams
from sdxlpool.worker import deepcache, fastpath
from sdxlpool.worker.checkpoints import (
    Checkpoint,
    CheckpointSet,
    choose_device,
    load_checkpoints,
    torch_dtype,
)
from sdxlpool.worker.generate import (
    BatchMember,
    GenerationResult,
    JobControl,
    RuntimeOptions,
    generate,
    generate_batch,
)
from sdxlpool.worker.infotext import encode_png
from sdxlpool.worker.loras import LoraAdapters
from sdxlpool.worker.samplers import Sampler, SamplerChoice, Schedule
from sdxlpool.worker.settings import WorkerSettings, default_cache_dir

__all__ = ["Engine", "DiffusersEngine"]


class Engine(Protocol):
    device: str  # where images are made: "cuda", "cpu", ... ("sim" for the simulator); set by load()

    def load(self) -> CheckpointSet:
        """Load the checkpoints (blocking: seconds to minutes for real weights)."""
        ...

    def schedules(self, sampler: Sampler) -> tuple[Schedule, ...]:
        """The schedule types `sampler` can run with here, in A1111's order."""
        ...

    def iterations(self, base: Checkpoint, sampler: SamplerChoice, steps: int) -> int:
        """Denoising iterations of one batch of `steps` (second-order samplers take ~2 per step)."""
        ...

    def generate(
        self, base: Checkpoint, refiner: Checkpoint | None, params: GenerationParams, sampler: SamplerChoice,
        options: RuntimeOptions, control: JobControl,
    ) -> GenerationResult:
        """Run one job; call `control.on_step` after every denoising iteration and stop when it says so."""
        ...

    def encode_png(self, image: Any, infotext: str) -> str:
        """base64 PNG of one of `generate`'s images, with the infotext under the `parameters` key."""
        ...


class DiffusersEngine:
    """SDXL base (+ refiner) on diffusers: `checkpoints.load_checkpoints` and `generate.generate`."""

    def __init__(self, settings: WorkerSettings) -> None:
        self.settings = settings
        self.device = ""
        self.fast: fastpath.FastPath | None = None  # the exact fast path, when on (set by load())

    def load(self) -> CheckpointSet:
        settings = self.settings
        self.device = choose_device(settings.device)
        checkpoints = load_checkpoints(settings.models, settings.refiner, device=self.device,
                                       dtype=torch_dtype(self.device, settings.dtype), cache_dir=default_cache_dir())
        adapters = LoraAdapters(settings.lora_cache_mb * 2**20)  # one bound for every base's LoRAs
        for checkpoint in checkpoints.all:
            if checkpoint.kind == "base":
                checkpoint.loras = adapters
        if settings.vae_dtype == "bf16":
            import torch

            for checkpoint in checkpoints.all:
                checkpoint.pipeline.vae.to(dtype=torch.bfloat16)
        if settings.fast_mode == "deepcache":  # refuse a UNet the split forward cannot cut, before any job
            for checkpoint in checkpoints.all:
                deepcache.check_unet(checkpoint.pipeline.unet, settings.deepcache_branch)
        if fastpath.fast_path_on(settings.compile, self.device):
            self.fast = _fast_path(settings, self.device)
            self.fast.install([c.pipeline for c in checkpoints.all])
        return checkpoints

    def schedules(self, sampler: Sampler) -> tuple[Schedule, ...]:
        return sampler.schedules  # what the diffusers class really implements

    def iterations(self, base: Checkpoint, sampler: SamplerChoice, steps: int) -> int:
        scheduler = sampler.build(base.pipeline.scheduler.config)
        scheduler.set_timesteps(steps)
        return len(scheduler.timesteps)

    def generate(
        self, base: Checkpoint, refiner: Checkpoint | None, params: GenerationParams, sampler: SamplerChoice,
        options: RuntimeOptions, control: JobControl,
    ) -> GenerationResult:
        fast = self.fast
        if fast is None:
            return generate(base, refiner, params, sampler, options, control)
        with fast.job() as paths, fast.eager() if options.loras else nullcontext():
            result = generate(base, refiner, params, sampler, options, control)
        if options.deepcache is not None:
            paths.add("eager")  # DeepCache calls the UNet's blocks itself, never its compiled forward
        # "compiled": every UNet and VAE call ran compiled; "eager": none did (a size not compiled).
        result.extra = {**result.extra, "path": "mixed" if len(paths) > 1 else next(iter(paths), "eager")}
        return result

    def generate_batch(
        self, base: Checkpoint, refiner: Checkpoint | None, sampler: SamplerChoice, members: list[BatchMember],
    ) -> list[GenerationResult]:
        """Several jobs with one `generate.batch_key` as one model batch (an engine without this
        method never batches)."""
        return generate_batch(base, refiner, sampler, members)

    def encode_png(self, image: Any, infotext: str) -> str:
        return encode_png(image, infotext)


def _fast_path(settings: WorkerSettings, device: str) -> fastpath.FastPath:
    shapes = fastpath.whitelist(settings.compile_shapes, settings.compile_batch_sizes, device=device,
                                default_size=(settings.default_width, settings.default_height))
    gpu = "cpu"
    if device.startswith("cuda"):
        import torch

        gpu = torch.cuda.get_device_name(torch.device(device))
    return fastpath.FastPath(
        device=device, shapes=shapes, mode=fastpath.compile_mode(settings.compile_mode, device),
        backend=settings.compile_backend, fuse_qkv=settings.lora_dir is None, gpu=gpu,
        cache_dir=settings.compile_cache_dir or default_cache_dir() / "compile")
