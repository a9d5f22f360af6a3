"""SDXL base and refiner architectures as diffusers configs: the real ones and a tiny twin.

Why this exists: the worker must load single-file checkpoints with no hub access, and
`from_single_file(config=...)` needs a diffusers folder holding the component configs and the
tokenizers. `write_pipeline_skeleton` writes such a folder from the dicts below (real SDXL 1.0
values), and the same dicts, shrunk, describe the tiny random-weight model that tests and demos use
(`sdxlpool tiny-model`). The tiny model keeps SDXL's *shape* (three UNet levels for the base, four
for the refiner, two text encoders, an 8x VAE) so it runs through every code path real weights do,
single-file key conversion included.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any, Literal

from sdxlpool.worker.clip_tokenizer import CLIP_FULL_MERGES, write_clip_tokenizer

__all__ = ["Kind", "Size", "component_configs", "write_pipeline_skeleton", "TINY_TOKENIZER_MERGES"]

Kind = Literal["base", "refiner"]
Size = Literal["real", "tiny"]

TINY_TOKENIZER_MERGES = 500  # a real (coarse) CLIP BPE with a ~1k vocabulary: tiny embeddings

_SCHEDULER = {
    "_class_name": "EulerDiscreteScheduler",
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "clip_sample": False,
    "interpolation_type": "linear",
    "num_train_timesteps": 1000,
    "prediction_type": "epsilon",
    "sample_max_value": 1.0,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "timestep_spacing": "leading",
    "trained_betas": None,
    "use_karras_sigmas": False,
}

_VAE = {
    "_class_name": "AutoencoderKL",
    "act_fn": "silu",
    "block_out_channels": [128, 256, 512, 512],
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
    "in_channels": 3,
    "out_channels": 3,
    "latent_channels": 4,
    "layers_per_block": 2,
    "norm_num_groups": 32,
    "sample_size": 1024,
    "scaling_factor": 0.13025,
    "force_upcast": True,
}

_CLIP_L = {
    "architectures": ["CLIPTextModel"],
    "model_type": "clip_text_model",
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_attention_heads": 12,
    "num_hidden_layers": 12,
    "max_position_embeddings": 77,
    "hidden_act": "quick_gelu",
    "projection_dim": 768,
    "vocab_size": 49408,
    "layer_norm_eps": 1e-05,
    "initializer_factor": 1.0,
    "initializer_range": 0.02,
    "attention_dropout": 0.0,
    "dropout": 0.0,
    # The legacy ids below make CLIP pool at the argmax token (the end token), as SDXL was trained.
    "bos_token_id": 0,
    "eos_token_id": 2,
    "pad_token_id": 1,
    "torch_dtype": "float32",
}

_CLIP_BIGG = {
    **_CLIP_L,
    "architectures": ["CLIPTextModelWithProjection"],
    "hidden_size": 1280,
    "intermediate_size": 5120,
    "num_attention_heads": 20,
    "num_hidden_layers": 32,
    "hidden_act": "gelu",
    "projection_dim": 1280,
}

_UNET_COMMON = {
    "_class_name": "UNet2DConditionModel",
    "act_fn": "silu",
    "addition_embed_type": "text_time",
    "addition_embed_type_num_heads": 64,
    "center_input_sample": False,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "in_channels": 4,
    "out_channels": 4,
    "layers_per_block": 2,
    "mid_block_type": "UNetMidBlock2DCrossAttn",
    "norm_eps": 1e-05,
    "norm_num_groups": 32,
    "sample_size": 128,
    "use_linear_projection": True,
    "upcast_attention": None,
}

_UNET_BASE = {
    **_UNET_COMMON,
    "addition_time_embed_dim": 256,
    "attention_head_dim": [5, 10, 20],
    "block_out_channels": [320, 640, 1280],
    "cross_attention_dim": 2048,
    "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
    "projection_class_embeddings_input_dim": 2816,  # 6 time ids x 256 + 1280 pooled text
    "transformer_layers_per_block": [1, 2, 10],
}

_UNET_REFINER = {
    **_UNET_COMMON,
    "addition_time_embed_dim": 256,
    "attention_head_dim": [6, 12, 24, 24],
    "block_out_channels": [384, 768, 1536, 1536],
    "cross_attention_dim": 1280,
    "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
    "projection_class_embeddings_input_dim": 2560,  # 5 time ids (aesthetic score) x 256 + 1280
    "transformer_layers_per_block": 4,
}

# The tiny twin: same block types and counts, small widths, one transformer layer per block.
# The two text encoders get different widths, as in SDXL (768 vs 1280): diffusers' single-file
# loader tells their weights apart by width.
_TINY_TEXT = {"hidden_size": 32, "intermediate_size": 37, "num_attention_heads": 4, "num_hidden_layers": 2,
              "projection_dim": 32}
_TINY_TEXT_2 = {**_TINY_TEXT, "hidden_size": 48, "intermediate_size": 53, "projection_dim": 48}
_TINY: dict[str, dict[str, Any]] = {
    "vae": {"block_out_channels": [8, 16, 16, 16], "norm_num_groups": 8, "sample_size": 128},
    "text_encoder": _TINY_TEXT,
    "text_encoder_2": _TINY_TEXT_2,
    "unet_base": {"block_out_channels": [32, 64, 64], "attention_head_dim": [2, 4, 4], "cross_attention_dim": 32 + 48,
                  "addition_time_embed_dim": 8, "projection_class_embeddings_input_dim": 6 * 8 + 48,
                  "transformer_layers_per_block": [1, 1, 1], "norm_num_groups": 16, "sample_size": 16},
    "unet_refiner": {"block_out_channels": [32, 64, 64, 64], "attention_head_dim": [2, 4, 4, 4],
                     "cross_attention_dim": 48, "addition_time_embed_dim": 8,
                     "projection_class_embeddings_input_dim": 5 * 8 + 48, "transformer_layers_per_block": 1,
                     "norm_num_groups": 16, "sample_size": 16},
}

_MODEL_INDEX: dict[Kind, dict[str, Any]] = {
    "base": {
        "_class_name": "StableDiffusionXLPipeline",
        "force_zeros_for_empty_prompt": True,
        "scheduler": ["diffusers", "EulerDiscreteScheduler"],
        "text_encoder": ["transformers", "CLIPTextModel"],
        "text_encoder_2": ["transformers", "CLIPTextModelWithProjection"],
        "tokenizer": ["transformers", "CLIPTokenizer"],
        "tokenizer_2": ["transformers", "CLIPTokenizer"],
        "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"],
    },
    "refiner": {
        "_class_name": "StableDiffusionXLImg2ImgPipeline",
        "force_zeros_for_empty_prompt": False,
        "requires_aesthetics_score": True,
        "scheduler": ["diffusers", "EulerDiscreteScheduler"],
        "text_encoder": [None, None],
        "text_encoder_2": ["transformers", "CLIPTextModelWithProjection"],
        "tokenizer": [None, None],
        "tokenizer_2": ["transformers", "CLIPTokenizer"],
        "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"],
    },
}


def component_configs(kind: Kind, size: Size) -> dict[str, dict[str, Any]]:
    """Config dicts of every model component of a `kind` pipeline, keyed by subfolder name."""
    tiny = size == "tiny"
    vocab = _tiny_vocab_size() if tiny else 49408

    def shrink(config: dict[str, Any], key: str) -> dict[str, Any]:
        out = copy.deepcopy(config)
        if tiny:
            out.update(_TINY[key])
        return out

    configs = {
        "vae": shrink(_VAE, "vae"),
        "text_encoder_2": {**shrink(_CLIP_BIGG, "text_encoder_2"), "vocab_size": vocab},
        "unet": shrink(_UNET_BASE if kind == "base" else _UNET_REFINER, f"unet_{kind}"),
    }
    if kind == "base":
        configs["text_encoder"] = {**shrink(_CLIP_L, "text_encoder"), "vocab_size": vocab}
    return configs


def write_pipeline_skeleton(folder: Path, kind: Kind, size: Size) -> Path:
    """Write model_index.json, every component's config.json, the scheduler and the tokenizers.

    The result is what `from_single_file(config=folder)` needs; `sdxlpool tiny-model` adds weights.
    """
    folder.mkdir(parents=True, exist_ok=True)
    _write_json(folder / "model_index.json", _MODEL_INDEX[kind])
    _write_json(folder / "scheduler" / "scheduler_config.json", _SCHEDULER)
    for name, config in component_configs(kind, size).items():
        _write_json(folder / name / "config.json", config)
    merges = TINY_TOKENIZER_MERGES if size == "tiny" else CLIP_FULL_MERGES
    if kind == "base":
        write_clip_tokenizer(folder / "tokenizer", merges=merges)
    write_clip_tokenizer(folder / "tokenizer_2", merges=merges, pad_token="!")
    return folder


def _tiny_vocab_size() -> int:
    return 256 * 2 + TINY_TOKENIZER_MERGES + 2


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
