"""Two random LoRAs for the tiny model, in the kohya SDXL layout that Civitai downloads have.

kohya's sd-scripts train SDXL on the original (sgm) UNet, so its LoRA keys name UNet modules as
`lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q` (diffusers: down_blocks.1.attentions.0
...), text encoders as `lora_te1_text_model_encoder_layers_0_self_attn_q_proj` (CLIP ViT-L) and
`lora_te2_...` (OpenCLIP bigG), each with `.lora_down.weight`, `.lora_up.weight` and `.alpha`.
The default `networks.lora` module targets the transformer blocks' attention and feed-forward
linears (and proj_in/proj_out) in the UNet, and the attention and MLP linears of the text encoders.
The safetensors header carries kohya's `ss_*` training metadata, all values strings.

* `tiny_unet.safetensors`: UNet only (alias = file name, as kohya writes `ss_output_name`);
* `tiny_all.safetensors`: UNet and both text encoders; `ss_output_name` "tinyAllV2" differs from
  the file name, so a lookup by alias is exercised.

Weights are random from a fixed seed and large enough that weight 1 visibly changes a 64x64 image.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

__all__ = ["write_tiny_loras", "LORA_FILES"]

LORA_FILES = {"tiny_unet": "tiny_unet", "tiny_all": "tinyAllV2"}  # file stem -> ss_output_name
_RANK = 4
_ALPHA = 2.0
_UNET_TARGETS = re.compile(r"(proj_in|proj_out|attn[12]\.to_(q|k|v|out\.0)|ff\.net\.(0\.proj|2))$")
_TE_TARGETS = re.compile(r"(self_attn\.(q|k|v|out)_proj|mlp\.fc[12])$")


def write_tiny_loras(target: Path, unet: Any, text_encoder: Any, text_encoder_2: Any, *, seed: int = 0) -> Path:
    """Write `target/loras/*.safetensors` for the given tiny modules; returns the folder."""
    import torch
    from safetensors.torch import save_file

    folder = target / "loras"
    folder.mkdir(parents=True, exist_ok=True)
    generator = torch.Generator().manual_seed(seed + 1234)
    layers_per_block = unet.config.layers_per_block
    for stem, output_name in LORA_FILES.items():
        tensors: dict[str, Any] = {}
        for name, module in unet.named_modules():
            if isinstance(module, torch.nn.Linear) and _UNET_TARGETS.search(name):
                tensors.update(_pair("lora_unet_" + _sgm_name(name, layers_per_block), module, generator))
        if stem == "tiny_all":
            for prefix, encoder in (("lora_te1_", text_encoder), ("lora_te2_", text_encoder_2)):
                for name, module in encoder.named_modules():
                    if isinstance(module, torch.nn.Linear) and _TE_TARGETS.search(name):
                        # kohya names CLIP modules from `text_model.` (transformers 5's CLIPTextModel
                        # has dropped that level; CLIPTextModelWithProjection still has it).
                        path = name if name.startswith("text_model.") else "text_model." + name
                        tensors.update(_pair(prefix + path.replace(".", "_"), module, generator))
        save_file(tensors, str(folder / f"{stem}.safetensors"), metadata=_metadata(output_name, stem))
    return folder


def _pair(key: str, module: Any, generator: Any) -> dict[str, Any]:
    import torch

    down = torch.randn(_RANK, module.in_features, generator=generator) * 0.5
    up = torch.randn(module.out_features, _RANK, generator=generator) * 0.5
    return {f"{key}.lora_down.weight": down.contiguous(), f"{key}.lora_up.weight": up.contiguous(),
            f"{key}.alpha": torch.tensor(_ALPHA)}


def _sgm_name(diffusers_name: str, layers_per_block: int) -> str:
    """diffusers' UNet module path -> kohya's SDXL (sgm) name, e.g. down_blocks.1.attentions.0.proj_in
    -> input_blocks_4_1_proj_in (the attention is the second module of its sgm block)."""
    parts = diffusers_name.split(".")
    if parts[0] == "down_blocks":
        block = f"input_blocks.{1 + int(parts[1]) * (layers_per_block + 1) + int(parts[3])}.1"
        rest = parts[4:]
    elif parts[0] == "mid_block":
        block, rest = "middle_block.1", parts[3:]
    elif parts[0] == "up_blocks":
        block = f"output_blocks.{int(parts[1]) * (layers_per_block + 1) + int(parts[3])}.1"
        rest = parts[4:]
    else:
        raise ValueError(f"no sgm name for {diffusers_name}")
    return ".".join([block, *rest]).replace(".", "_")


def _metadata(output_name: str, stem: str) -> dict[str, str]:
    # What kohya's train_network.py writes (every value a string; JSON for the nested ones).
    return {
        "ss_network_module": "networks.lora",
        "ss_network_dim": str(_RANK),
        "ss_network_alpha": str(_ALPHA),
        "ss_base_model_version": "sdxl_base_v1-0",
        "ss_sd_model_name": "sd_xl_base_1.0.safetensors",
        "ss_output_name": output_name,
        "ss_resolution": "(64, 64)",
        "ss_clip_skip": "None",
        "ss_num_train_images": "10",
        "ss_training_comment": f"random weights for sdxlpool's tests ({stem})",
        "ss_network_args": json.dumps({"conv_dim": None}) if stem == "tiny_unet" else "null",
        "ss_tag_frequency": json.dumps({"10_tiny": {"tiny": 10, stem: 10}}),
        "ss_v2": "False",
        "modelspec.architecture": "stable-diffusion-xl-v1-base/lora",
        "modelspec.title": output_name,
        "ssmd_cover_images": "[]",
    }
