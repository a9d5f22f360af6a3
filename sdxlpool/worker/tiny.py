"""Random-weight SDXL pipelines: the tiny model for tests and demos, and real-size ones for benchmarks.

`sdxlpool tiny-model DIR` writes DIR/base and DIR/refiner (and test assets beside them: DIR/loras), ordinary diffusers layouts (tokenizers
included, built from the bundled CLIP BPE) so the worker loads them through exactly the code path it
uses for real weights, and beside them the fine-tune assets of `tiny_assets` (e.g. DIR/vae/,
DIR/styles.csv, DIR/embeddings/), in the formats real files have. The refiner gets the same
text_encoder_2 and VAE as the base, as SDXL 1.0 does, which is what lets the worker share them between the two pipelines. Weights come from a fixed
seed: the same content every time.

`write_random_model(..., size="real")` does the same with SDXL 1.0's real architecture (3.5 B + 2.3 B
parameters): the same FLOPs and memory as the released weights, for GPU benchmarks where the real
weights cannot be downloaded. Build it on a GPU (`device="cuda"`): random init of 6 B parameters on
a CPU takes minutes.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from sdxlpool.worker.architectures import Size

__all__ = ["write_tiny_model", "write_random_model"]


def write_tiny_model(target: Path, *, seed: int = 0) -> tuple[Path, Path]:
    """Write `target/base` and `target/refiner` (tiny, fp32), and beside them the fine-tune assets
    (`tiny_assets`: `vae/`, `styles.csv`, `embeddings/`, `loras/`); returns the base and refiner paths."""
    from sdxlpool.worker.tiny_assets.embeddings import write_tiny_embeddings
    from sdxlpool.worker.tiny_assets.styles import write_tiny_styles
    from sdxlpool.worker.tiny_assets.vae import write_tiny_vae

    base, refiner = write_random_model(target, size="tiny", seed=seed)
    write_tiny_vae(target, seed=seed)
    write_tiny_styles(target)
    write_tiny_embeddings(target, base, seed=seed)
    _write_tiny_loras(target, base, seed)
    return base, refiner


def _write_tiny_loras(target: Path, base: Path, seed: int) -> None:
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    from sdxlpool.worker.tiny_assets.loras import write_tiny_loras

    write_tiny_loras(target, UNet2DConditionModel.from_pretrained(base / "unet"),
                     CLIPTextModel.from_pretrained(base / "text_encoder"),
                     CLIPTextModelWithProjection.from_pretrained(base / "text_encoder_2"), seed=seed)


def write_random_model(
    target: Path, *, size: Size, seed: int = 0, device: str = "cpu", dtype: Any = None
) -> tuple[Path, Path]:
    """Write random-weight `target/base` and `target/refiner`. Replaces earlier content."""
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection
    from transformers.utils import logging as transformers_logging

    from sdxlpool.worker.architectures import component_configs, write_pipeline_skeleton

    transformers_logging.disable_progress_bar()  # a bar per one-file shard is noise
    dtype = dtype or torch.float32
    target.mkdir(parents=True, exist_ok=True)
    # Build next to the target and swap in at the end, so an interrupted run never leaves half a model.
    staging = Path(tempfile.mkdtemp(prefix=".random-", dir=target))
    try:
        torch.manual_seed(seed)
        base_cfg = component_configs("base", size)
        refiner_cfg = component_configs("refiner", size)
        with torch.device(device):
            shared = {
                "vae": AutoencoderKL.from_config(base_cfg["vae"]),
                "text_encoder_2": CLIPTextModelWithProjection(CLIPTextConfig(**base_cfg["text_encoder_2"])),
            }
            parts = {
                "base": {
                    **shared,
                    "text_encoder": CLIPTextModel(CLIPTextConfig(**base_cfg["text_encoder"])),
                    "unet": UNet2DConditionModel.from_config(base_cfg["unet"]),
                },
                "refiner": {**shared, "unet": UNet2DConditionModel.from_config(refiner_cfg["unet"])},
            }
        for kind, modules in parts.items():
            folder = write_pipeline_skeleton(staging / kind, kind, size)  # type: ignore[arg-type]
            for name, module in modules.items():
                if dtype != torch.float32:
                    module.to(dtype)
                module.save_pretrained(folder / name, safe_serialization=True)
        outputs = []
        for kind in ("base", "refiner"):
            final = target / kind
            if final.exists():
                shutil.rmtree(final)
            (staging / kind).rename(final)
            outputs.append(final)
        return outputs[0], outputs[1]
    finally:
        shutil.rmtree(staging, ignore_errors=True)
