"""The worker's one typed configuration. Flags override environment variables (SDXLPOOL_*)."""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from sdxlpool._limits import DEFAULT_BODY_TIMEOUT, DEFAULT_MAX_BODY_BYTES
from sdxlpool.api.generation import GenerationDefaults, RequestLimits

__all__ = ["WorkerSettings", "default_cache_dir"]


def default_cache_dir() -> Path:
    """Skeleton configs and checkpoint hashes live here: $SDXLPOOL_CACHE, else ~/.cache/sdxlpool."""
    configured = os.environ.get("SDXLPOOL_CACHE")
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "sdxlpool"


class WorkerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SDXLPOOL_", extra="forbid")

    models: list[Path] = Field(min_length=1, description="base checkpoints; the first is loaded as current")
    refiner: Path | None = None
    host: str = "127.0.0.1"
    port: int = Field(7860, ge=0, le=65535)
    device: str = "auto"
    dtype: Literal["auto", "fp16", "bf16", "fp32"] = "auto"
    gpu_model: str = ""  # empty: the CUDA device's name, or "cpu"
    provider: str = ""
    location: str = ""
    worker_name: str = ""  # empty: host:port

    max_steps: int = Field(150, ge=1)
    max_pixels: int = Field(2048 * 2048, ge=64 * 64)
    max_batch: int = Field(8, ge=1)
    max_prompt_chars: int = Field(2000, ge=1)
    max_queue: int = Field(16, ge=0, description="requests that may wait behind the running one")
    max_body_bytes: int = Field(DEFAULT_MAX_BODY_BYTES, ge=1024, description="larger request bodies get 413")
    body_timeout: float = Field(DEFAULT_BODY_TIMEOUT, gt=0, description="a body stalled this long gets 408")
    log_prompts: bool = Field(False, description="log each job's prompts at INFO (off: prompts are never logged)")

    default_sampler: str = "DPM++ SDE Karras"
    default_steps: int = Field(25, ge=1)
    default_cfg_scale: float = 7.0
    default_width: int = Field(1024, ge=64)
    default_height: int = Field(1024, ge=64)
    default_refiner_switch_at: float = Field(0.8, ge=0, le=1)

    warmup: bool = True  # one short job at start-up: compiles kernels and measures step_seconds

    @field_validator("device")
    @classmethod
    def _known_device(cls, value: str) -> str:
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", value):
            raise ValueError(f"must be auto, cpu, cuda or cuda:N, got {value!r}")
        return value

    @model_validator(mode="after")
    def _defaults_within_limits(self) -> WorkerSettings:
        if self.default_steps > self.max_steps:
            raise ValueError(f"default_steps {self.default_steps} is over max_steps {self.max_steps}")
        if self.default_width * self.default_height > self.max_pixels:
            raise ValueError("default_width x default_height is over max_pixels")
        return self

    @property
    def limits(self) -> RequestLimits:
        return RequestLimits(self.max_steps, self.max_pixels, self.max_batch, self.max_prompt_chars)

    @property
    def defaults(self) -> GenerationDefaults:
        return GenerationDefaults(
            sampler=self.default_sampler,
            steps=self.default_steps,
            cfg_scale=self.default_cfg_scale,
            width=self.default_width,
            height=self.default_height,
            refiner_switch_at=self.default_refiner_switch_at,
        )

    @property
    def name(self) -> str:
        return self.worker_name or f"{socket.gethostname()}:{self.port}"
