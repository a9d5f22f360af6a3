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
"""

from __future__ import annotations

from typing import Any, Protocol

from sdxlpool.api.generation import GenerationParams
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

    def load(self) -> CheckpointSet:
        settings = self.settings
        self.device = choose_device(settings.device)
        checkpoints = load_checkpoints(settings.models, settings.refiner, device=self.device,
                                       dtype=torch_dtype(self.device, settings.dtype), cache_dir=default_cache_dir())
        adapters = LoraAdapters(settings.lora_cache_mb * 2**20)  # one bound for every base's LoRAs
        for checkpoint in checkpoints.all:
            if checkpoint.kind == "base":
                checkpoint.loras = adapters
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
        return generate(base, refiner, params, sampler, options, control)

    def generate_batch(
        self, base: Checkpoint, refiner: Checkpoint | None, sampler: SamplerChoice, members: list[BatchMember],
    ) -> list[GenerationResult]:
        """Several jobs with one `generate.batch_key` as one model batch (an engine without this
        method never batches)."""
        return generate_batch(base, refiner, sampler, members)

    def encode_png(self, image: Any, infotext: str) -> str:
        return encode_png(image, infotext)
