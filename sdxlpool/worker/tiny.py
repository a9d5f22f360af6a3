"""`sdxlpool tiny-model DIR`: a random-weight SDXL base + refiner small enough for CPU tests.

The folders are ordinary diffusers layouts (tokenizers included, built from the bundled CLIP BPE)
so the worker loads them through exactly the code path it uses for real weights. The refiner gets
the same text_encoder_2 and VAE as the base, as SDXL 1.0 does, which is what lets the worker share
them between the two pipelines. Weights come from a fixed seed: the same DIR content every time.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

__all__ = ["write_tiny_model"]


def write_tiny_model(target: Path, *, seed: int = 0) -> tuple[Path, Path]:
    """Write `target/base` and `target/refiner`; returns both paths. Replaces earlier content."""
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from sdxlpool.worker.architectures import component_configs, write_pipeline_skeleton

    target.mkdir(parents=True, exist_ok=True)
    # Build next to the target and swap in at the end, so an interrupted run never leaves half a model.
    staging = Path(tempfile.mkdtemp(prefix=".tiny-", dir=target))
    try:
        torch.manual_seed(seed)
        base_cfg = component_configs("base", "tiny")
        refiner_cfg = component_configs("refiner", "tiny")
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
            folder = write_pipeline_skeleton(staging / kind, kind, "tiny")  # type: ignore[arg-type]
            for name, module in modules.items():
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
