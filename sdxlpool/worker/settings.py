"""The worker's one typed configuration. Flags override environment variables (SDXLPOOL_*)."""

from __future__ import annotations

import re
import socket
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from sdxlpool._limits import DEFAULT_BODY_TIMEOUT, DEFAULT_MAX_BODY_BYTES
from sdxlpool._settings import GenerationSettings
from sdxlpool.api.fast_modes import FastMode
from sdxlpool.api.pool_config import WORKER_DRAIN_SECONDS

__all__ = ["WorkerSettings", "default_cache_dir"]


class _CacheSettings(BaseSettings):
    # Apart from WorkerSettings: `sdxlpool up` and the single-file loader need the cache without a worker.
    model_config = SettingsConfigDict(env_prefix="SDXLPOOL_")

    cache: Path | None = None


def default_cache_dir() -> Path:
    """Skeleton configs and checkpoint hashes live here: $SDXLPOOL_CACHE, else ~/.cache/sdxlpool."""
    configured = _CacheSettings().cache
    return configured.expanduser() if configured else Path.home() / ".cache" / "sdxlpool"


class WorkerSettings(GenerationSettings):
    """Limits and defaults (`max_*`, `default_*`) come from `GenerationSettings`, as on the gateway."""

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

    max_queue: int = Field(16, ge=0, description="requests that may wait behind the running one")
    batch_max: int = Field(1, ge=1, le=64, description="queued txt2img requests of the same shape (size, steps, "
                           "sampler, CFG, checkpoints, LoRAs, ...) run as one model batch of up to this many "
                           "(1: off)")
    batch_wait_ms: float = Field(0.0, ge=0, le=10_000, description="with --batch-max: how long the oldest request "
                                 "may wait for partners when fewer are queued (0: batch only what is waiting)")
    max_body_bytes: int = Field(DEFAULT_MAX_BODY_BYTES, ge=1024, description="larger request bodies get 413")
    body_timeout: float = Field(DEFAULT_BODY_TIMEOUT, gt=0, description="a body stalled this long gets 408")
    log_prompts: bool = Field(False, description="log each job's prompts at INFO (off: prompts are never logged)")

    # A1111's fine-tune folders (models/Lora, embeddings, models/VAE) and styles.csv; None: none offered.
    lora_dir: Path | None = Field(None, description="folder of LoRA .safetensors files (kohya/A1111 format)")
    lora_cache_mb: int = Field(2048, ge=0, description="memory the loaded LoRAs may hold; least recently used go first")
    embeddings_dir: Path | None = Field(None, description="folder of SDXL textual-inversion embeddings")
    vae_dir: Path | None = Field(None, description="folder of VAE files selectable by sd_vae")
    upscaler_dir: Path | None = Field(None, description="folder of upscaler models (ESRGAN, Real-ESRGAN, SwinIR, "
                                      "... .pth/.safetensors) for hires fix and extras; needs sdxlpool[upscalers]")
    styles: Path | None = Field(None, description="A1111 styles.csv applied by the styles field")
    strict: bool = Field(False, description="refuse (422) a request with anything that would not be applied")

    # The exact fast path (worker.fastpath): channels_last, fused QKV, SDPA backends, torch.compile.
    compile: bool | None = Field(None, description="the exact fast path: channels_last, fused QKV, the fastest "
                                 "attention and torch.compile of the UNets and VAE decode at the compiled shapes "
                                 "(default: on with CUDA, off on the CPU)")
    compile_mode: Literal["auto", "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"] = Field(
        "auto", description="torch.compile mode (auto: max-autotune on CUDA, default on the CPU)")
    compile_backend: Literal["inductor", "aot_eager", "eager"] = Field(
        "inductor", description="torch.compile backend; aot_eager and eager trace without generating "
                                "kernels (no speed-up: for tests and debugging)")
    compile_shapes: str = Field("auto", description="WIDTHxHEIGHT sizes compiled at start-up, comma-separated; "
                                "other sizes run eager (auto: the default size, and on CUDA also 1024x1024 and "
                                "SDXL's aspect sizes)")
    compile_batch_sizes: str = Field("1", description="batch sizes compiled for each of the compile shapes")
    compile_cache_dir: Path | None = Field(None, description="where compiled kernels are kept between starts "
                                           "(default: $SDXLPOOL_CACHE/compile)")
    vae_dtype: Literal["fp32", "bf16"] = Field("fp32", description="the VAE's dtype: fp32 (exact) or bf16 "
                                               "(faster, not bit-exact)")

    # Opt-in, inexact fast modes (api/fast_modes.py); off is the exact path and the default.
    fast_mode: FastMode = Field("off", description="an inexact fast mode: deepcache (the UNet's deep blocks "
                                "reused between full evaluations); off: the exact images")
    deepcache_interval: int = Field(3, ge=1, le=100, description="with --fast-mode deepcache: a full UNet "
                                    "evaluation every N (1: all full, exact)")
    deepcache_branch: int = Field(0, ge=0, le=8, description="with --fast-mode deepcache: the shallow branch "
                                  "computed every evaluation, down to this down block (0: the first block only)")

    warmup: bool = True  # one short job at start-up: compiles kernels and measures step_seconds
    drain_seconds: float = Field(WORKER_DRAIN_SECONDS, ge=0, description="on SIGTERM: refuse new connections and "
                                 "finish the running and queued jobs for up to this long before exiting")

    @field_validator("device")
    @classmethod
    def _known_device(cls, value: str) -> str:
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", value):
            raise ValueError(f"must be auto, cpu, cuda or cuda:N, got {value!r}")
        return value

    @field_validator("compile_shapes")
    @classmethod
    def _sizes(cls, value: str) -> str:
        from sdxlpool.worker.fastpath import parse_sizes

        parse_sizes(value)
        return value

    @field_validator("compile_batch_sizes")
    @classmethod
    def _batch_sizes(cls, value: str) -> str:
        from sdxlpool.worker.fastpath import parse_batch_sizes

        parse_batch_sizes(value)
        return value

    @property
    def name(self) -> str:
        return self.worker_name or f"{socket.gethostname()}:{self.port}"
