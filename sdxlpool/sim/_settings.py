"""`SimSettings`: a worker's settings plus the simulator's timing and fault model.

Everything a real worker is configured with (limits, defaults, queue bound, labels, warm-up, and the
SDXLPOOL_* environment variables) means the same here. `models`, `refiner`, `device` and `dtype` are
accepted but unused: the simulator has one fake checkpoint and no device.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, model_validator

from sdxlpool.sim._deepcache import DEEPCACHE_CACHED_SHARE
from sdxlpool.worker.settings import WorkerSettings

__all__ = ["SimSettings", "SIM_CHECKPOINT"]

SIM_CHECKPOINT = "sim-sdxl-base"


class SimSettings(WorkerSettings):
    models: list[Path] = Field(default_factory=lambda: [Path(SIM_CHECKPOINT)], min_length=1)
    gpu_model: str = Field(min_length=1, description="the GPU model this worker pretends to be, e.g. A100")

    step_seconds: float = Field(ge=0, description="wall seconds per normalised step (one step, 1024x1024)")
    overhead_seconds: float = Field(0.0, ge=0, description="fixed seconds per request before the first step")
    fail_rate: float = Field(0.0, ge=0, le=1, description="fraction of jobs that fail part-way (HTTP 500)")
    hang_rate: float = Field(0.0, ge=0, le=1, description="fraction of jobs that never make progress")
    seed: int = Field(0, description="seed of the fault draws: same seed and job order, same faults")
    image_bytes: int = Field(0, ge=0, description="pad every PNG to at least this many bytes")
    batch_alpha: float = Field(1.0, ge=0, le=1, description="with --batch-max: a batch of n takes "
                               "1 + batch_alpha x (n - 1) times one image's time (1: batching gains nothing)")

    @model_validator(mode="after")
    def _rates_add_up(self) -> SimSettings:
        if self.fail_rate + self.hang_rate > 1:
            raise ValueError(f"fail_rate + hang_rate is {self.fail_rate + self.hang_rate:g}; at most 1")
        return self

    @model_validator(mode="after")
    def _branch_is_sdxls(self) -> SimSettings:
        # What a real worker's load refuses for SDXL's base (3 down blocks): the timing model has no other.
        if self.fast_mode == "deepcache" and self.deepcache_branch not in DEEPCACHE_CACHED_SHARE:
            raise ValueError(f"deepcache_branch must be below SDXL's 3 down blocks, got {self.deepcache_branch}")
        return self
