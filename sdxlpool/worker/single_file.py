"""Single-file SDXL checkpoints: recognise them, load them offline, and write them.

Why this exists: most SDXL models people use (A1111, ComfyUI, Civitai downloads) are one
`.safetensors` file in Stability's original "SGM" layout (`model.diffusion_model.*`,
`first_stage_model.*`, `conditioner.embedders.*`), not a diffusers folder. diffusers can load such a
file with `from_single_file`, but by default it asks the Hugging Face hub for the matching diffusers
configs and tokenizers, and the worker must never reach a hub. So:

1. `detect_architecture` reads only the safetensors header (names and shapes, no tensor data) and
   says whether the file is an SDXL base or refiner, at real or tiny (test) size; anything else is
   a `CheckpointError` that says what the file looks like instead.
2. `skeleton_for` writes the diffusers configs + CLIP tokenizers for that architecture
   (`architectures.write_pipeline_skeleton`) into a content-addressed cache folder, once.
3. `load_single_file` hands that folder to `from_single_file(config=..., local_files_only=True)`, so
   nothing is fetched, after checking from the header that the file holds every weight needed.
4. `write_single_file` is the reverse conversion (diffusers folder -> SGM file), ported from
   diffusers' `scripts/convert_diffusers_to_original_sdxl.py` but derived from the blocks actually
   present instead of hard-coding SDXL base's three UNet levels, so it also writes the refiner
   (four levels) and the tiny twin. Tests use it to build single files from `sdxlpool tiny-model`.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any

import torch

from sdxlpool.errors import CheckpointError
from sdxlpool.worker.architectures import Kind, Size, component_configs, write_pipeline_skeleton
from sdxlpool.worker.settings import default_cache_dir

__all__ = ["detect_architecture", "skeleton_for", "load_single_file", "write_single_file"]

# Key prefixes of the SGM layout.
UNET = "model.diffusion_model."
VAE = "first_stage_model."
CLIP_L = "conditioner.embedders.0.transformer."  # base only: OpenAI CLIP ViT-L (transformers naming)
OPEN_CLIP_BASE = "conditioner.embedders.1.model."  # base: OpenCLIP bigG (open_clip naming)
OPEN_CLIP_REFINER = "conditioner.embedders.0.model."  # refiner: its only text encoder, bigG
_UNET_CONV_IN = UNET + "input_blocks.0.0.weight"

# Formats that are not SDXL, by a key prefix only they use: (prefix, what to call it).
_OTHER_FORMATS = [
    ("cond_stage_model.transformer.", "Stable Diffusion 1.x"),
    ("cond_stage_model.model.", "Stable Diffusion 2.x"),
    ("double_blocks.", "Flux"),
    (UNET + "double_blocks.", "Flux"),
    ("joint_blocks.", "Stable Diffusion 3"),
    (UNET + "joint_blocks.", "Stable Diffusion 3"),
]
_PICKLE_SUFFIXES = {".ckpt", ".pt", ".pth", ".bin"}


# ---------------------------------------------------------------------------------------------
# 1. Detection: from the header alone
# ---------------------------------------------------------------------------------------------


def detect_architecture(path: Path) -> tuple[Kind, Size]:
    """Say whether `path` is an SDXL base or refiner, real or tiny, reading only its header.

    Raises `CheckpointError` for a missing or unreadable file, a pickle, or any other model family.
    """
    return _classify(path, _read_header(path))


def _read_header(path: Path) -> dict[str, tuple[int, ...]]:
    """Tensor name -> shape. safetensors keeps these in a JSON header, so no weight is read."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    # Unpickling runs arbitrary code from the file, which a model server must never do.
    if path.suffix.lower() in _PICKLE_SUFFIXES:
        raise CheckpointError(
            f"{path}: {path.suffix} pickles are not loaded for safety; convert to .safetensors"
        )
    try:
        with safe_open(str(path), framework="pt") as f:
            names = f.keys()  # a safe_open handle is not iterable itself
            return {key: tuple(f.get_slice(key).get_shape()) for key in names}
    except Exception as error:  # safetensors raises its own types and OSError for bad headers
        if _looks_like_pickle(path):
            raise CheckpointError(
                f"{path}: this is a torch pickle despite its name; pickles are not loaded for safety, "
                "convert to .safetensors"
            ) from error
        raise CheckpointError(
            f"{path}: not a readable .safetensors file (truncated, corrupt, or another format): {error}"
        ) from error


def _looks_like_pickle(path: Path) -> bool:
    """torch.save writes a zip ("PK..") or a raw pickle (0x80 + protocol 2-5), whatever the name.

    Only asked once safetensors has refused the file: a valid header can start with these bytes too.
    """
    with path.open("rb") as f:
        start = f.read(4)
    raw_pickle = len(start) >= 2 and start[0] == 0x80 and 2 <= start[1] <= 5
    return start.startswith(b"PK\x03\x04") or raw_pickle


def _classify(path: Path, shapes: dict[str, tuple[int, ...]]) -> tuple[Kind, Size]:
    keys = shapes.keys()

    def has(prefix: str) -> bool:
        return any(key.startswith(prefix) for key in keys)

    # Which SDXL model: the text encoders tell base (CLIP-L + bigG) from refiner (bigG alone).
    if has(CLIP_L) and has(OPEN_CLIP_BASE):
        kind: Kind = "base"
    elif has(OPEN_CLIP_REFINER) and not has(CLIP_L) and not has("conditioner.embedders.1."):
        kind = "refiner"
    else:
        for prefix, family in _OTHER_FORMATS:
            if has(prefix):
                raise CheckpointError(
                    f"{path}: this looks like a {family} checkpoint ({prefix}* keys); "
                    "sdxlpool serves SDXL base and refiner checkpoints only"
                )
        raise CheckpointError(
            f"{path}: not an SDXL checkpoint: expected the text encoders under {CLIP_L}* and "
            f"{OPEN_CLIP_BASE}* (base) or {OPEN_CLIP_REFINER}* (refiner)"
        )

    # How big: the UNet's first conv is [block_out_channels[0], in_channels, 3, 3].
    if _UNET_CONV_IN not in shapes:
        raise CheckpointError(
            f"{path}: SDXL {kind} text encoders found but no UNet ({_UNET_CONV_IN} missing)"
        )
    width, in_channels = shapes[_UNET_CONV_IN][:2]
    if in_channels != 4:
        raise CheckpointError(
            f"{path}: the UNet takes {in_channels} input channels; only plain SDXL (4) is supported, "
            "not inpainting or other variants"
        )
    sizes: tuple[Size, ...] = ("real", "tiny")
    expected = {size: component_configs(kind, size)["unet"]["block_out_channels"][0] for size in sizes}
    for size in sizes:
        if width == expected[size]:
            return kind, size
    raise CheckpointError(
        f"{path}: UNet width {width} matches neither SDXL {kind} ({expected['real']}) "
        f"nor its tiny test twin ({expected['tiny']})"
    )


# ---------------------------------------------------------------------------------------------
# 2. The diffusers skeleton that from_single_file reads configs and tokenizers from
# ---------------------------------------------------------------------------------------------

_skeletons: dict[tuple[str, str, Path], Path] = {}
_skeletons_lock = threading.Lock()


def skeleton_for(kind: Kind, size: Size) -> Path:
    """A folder with model_index, component configs and tokenizers for `kind`/`size` (no weights).

    It lives in `$SDXLPOOL_CACHE` (default `~/.cache/sdxlpool`) under `skeletons/`, named after a hash
    of its content, so a changed architecture gets a new folder and a stale one is never reused.
    """
    root = default_cache_dir() / "skeletons"
    memo_key = (kind, size, root)
    with _skeletons_lock:  # one writer per process; other processes are handled by the rename below
        known = _skeletons.get(memo_key)
        if known is not None and known.is_dir():
            return known
        root.mkdir(parents=True, exist_ok=True)
        # Write into a private temp folder, then rename it into place: rename is atomic, so a
        # concurrent worker sees either no folder or a complete one, never half of one.
        staging = Path(tempfile.mkdtemp(prefix=f".{kind}-{size}-", dir=root))
        try:
            write_pipeline_skeleton(staging, kind, size)
            final = root / f"sdxl-{kind}-{size}-{_tree_digest(staging)[:16]}"
            if not final.is_dir():
                try:
                    staging.rename(final)
                except OSError:
                    if not final.is_dir():  # not a lost race with an identical writer: a real failure
                        raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        _skeletons[memo_key] = final
        return final


def _tree_digest(folder: Path) -> str:
    digest = hashlib.sha256()
    for file in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(file.relative_to(folder).as_posix().encode() + b"\0")
        digest.update(file.read_bytes() + b"\0")
    return digest.hexdigest()


# ---------------------------------------------------------------------------------------------
# 3. Loading
# ---------------------------------------------------------------------------------------------


def load_single_file(
    path: Path,
    *,
    kind: Kind | None = None,
    torch_dtype: torch.dtype = torch.float32,
    text_encoder_2: Any = None,
    vae: Any = None,
) -> Any:
    """Load an SDXL single-file checkpoint without any network access.

    Returns a `StableDiffusionXLPipeline` for a base, a `StableDiffusionXLImg2ImgPipeline` for a
    refiner. `kind`, when given, is what the caller expects; a file of the other kind is an error.
    `text_encoder_2` and `vae` (normally the base's) replace the file's own, as SDXL 1.0's refiner
    shares them with the base: they are then not loaded from the file at all.
    """
    from diffusers import StableDiffusionXLImg2ImgPipeline, StableDiffusionXLPipeline

    path = Path(path)
    shapes = _read_header(path)
    found_kind, size = _classify(path, shapes)
    if kind is not None and kind != found_kind:
        raise CheckpointError(f"{path}: expected an SDXL {kind} checkpoint, but this is an SDXL {found_kind}")
    skeleton = skeleton_for(found_kind, size)

    # The shared components, when given, are not read from the file, so they need not be in it.
    shared = {"text_encoder_2": text_encoder_2, "vae": vae}
    overrides = {name: module for name, module in shared.items() if module is not None}
    _check_complete(path, shapes, found_kind, size, skip=set(overrides))

    pipeline_class = StableDiffusionXLPipeline if found_kind == "base" else StableDiffusionXLImg2ImgPipeline
    try:
        # `config` is a local folder and local_files_only is set: diffusers then never calls the hub
        # (no `original_config` is needed; that is only the legacy path for configless loading).
        return pipeline_class.from_single_file(
            str(path), config=str(skeleton), local_files_only=True, torch_dtype=torch_dtype, **overrides
        )
    except (ValueError, KeyError, RuntimeError, OSError) as error:
        raise CheckpointError(f"{path}: could not load as an SDXL {found_kind}: {error}") from error


def _check_complete(
    path: Path, shapes: dict[str, tuple[int, ...]], kind: Kind, size: Size, skip: set[str]
) -> None:
    """Every weight the architecture needs is in the file, with the right shape.

    diffusers does not check this: it builds each model on the meta device, skips the weights the
    file lacks, and later fails with "Cannot copy out of meta tensor". Checking the header first
    lets us name the component and the missing keys as they are spelled in the file.
    """
    for component, expected in _expected_layout(kind, size).items():
        if component in skip:
            continue
        missing = [key for key in expected if key not in shapes]
        if len(missing) == len(expected):
            prefix = os.path.commonprefix(missing)
            raise CheckpointError(f"{path}: the checkpoint has no {component} weights ({prefix}* keys)")
        if missing:
            shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
            raise CheckpointError(f"{path}: the checkpoint lacks {component} weights: {shown}")
        for key, shape in expected.items():
            # Trailing 1s aside: some converters store the VAE's 1x1 attention convs as linear weights.
            if _squeeze(shapes[key]) != _squeeze(shape):
                raise CheckpointError(
                    f"{path}: {key} has shape {list(shapes[key])}; SDXL {kind} ({size}) needs {list(shape)}"
                )


def _squeeze(shape: tuple[int, ...]) -> tuple[int, ...]:
    while shape and shape[-1] == 1:
        shape = shape[:-1]
    return shape


@functools.lru_cache(maxsize=4)
def _expected_layout(kind: Kind, size: Size) -> dict[str, dict[str, tuple[int, ...]]]:
    """Component -> {SGM key: shape} of a complete checkpoint, from the configs on the meta device.

    Running our own diffusers -> SGM conversion over empty models gives exactly the names and
    shapes a checkpoint must hold, with no weights allocated (about 0.2 s at real size).
    """
    from accelerate import init_empty_weights
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    configs = component_configs(kind, size)
    with init_empty_weights():
        unet = UNet2DConditionModel.from_config(configs["unet"]).state_dict()
        vae = AutoencoderKL.from_config(configs["vae"]).state_dict()
        open_clip = CLIPTextModelWithProjection(CLIPTextConfig(**configs["text_encoder_2"])).state_dict()
        clip_l = (
            CLIPTextModel(CLIPTextConfig(**configs["text_encoder"])).state_dict() if kind == "base" else {}
        )
    layout = {
        "unet": _prefixed(UNET, _convert_unet(unet)),
        "vae": _prefixed(VAE, _convert_vae(vae)),
        "text_encoder_2": _prefixed(
            OPEN_CLIP_BASE if kind == "base" else OPEN_CLIP_REFINER, _convert_open_clip(open_clip)
        ),
    }
    if kind == "base":
        layout["text_encoder"] = _prefixed(CLIP_L, _convert_clip_l(clip_l))
    return {
        name: {key: tuple(tensor.shape) for key, tensor in state.items()} for name, state in layout.items()
    }


# ---------------------------------------------------------------------------------------------
# 4. Writing: diffusers folder -> SGM single file
# ---------------------------------------------------------------------------------------------


def write_single_file(folder: Path, out: Path) -> Path:
    """Convert a diffusers SDXL base or refiner folder into one SGM-layout `.safetensors` file.

    A folder with a `text_encoder` is written as a base (CLIP-L at embedders.0, bigG at embedders.1),
    one without as a refiner (bigG at embedders.0), which is how A1111 and diffusers tell them apart.
    """
    from safetensors.torch import save_file

    folder, out = Path(folder), Path(out)
    if out.suffix != ".safetensors":
        raise CheckpointError(f"{out}: the single-file checkpoint must end in .safetensors")
    if not (folder / "unet").is_dir():
        raise CheckpointError(f"{folder}: not a diffusers SDXL folder (no unet/ subfolder)")

    state: dict[str, torch.Tensor] = {}
    state.update(_prefixed(UNET, _convert_unet(_read_component(folder, "unet"))))
    state.update(_prefixed(VAE, _convert_vae(_read_component(folder, "vae"))))
    open_clip = _convert_open_clip(_read_component(folder, "text_encoder_2"))
    if _has_weights(folder / "text_encoder"):
        state.update(_prefixed(CLIP_L, _convert_clip_l(_read_component(folder, "text_encoder"))))
        state.update(_prefixed(OPEN_CLIP_BASE, open_clip))
    else:
        state.update(_prefixed(OPEN_CLIP_REFINER, open_clip))

    # safetensors only writes contiguous tensors (text_projection is a transpose). Write to a temp
    # name and rename, so a reader never sees a half-written checkpoint.
    state = {key: tensor.contiguous() for key, tensor in state.items()}
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f".{out.name}.partial")
    save_file(state, str(partial), metadata={"format": "pt"})
    partial.replace(out)
    return out


_WEIGHT_FILES = ("diffusion_pytorch_model", "model")


def _has_weights(component: Path) -> bool:
    return component.is_dir() and any(component.glob("*.safetensors"))


def _read_component(folder: Path, name: str) -> dict[str, torch.Tensor]:
    """One component's state dict: its plain safetensors file, or every shard its index lists."""
    from safetensors.torch import load_file

    component = folder / name
    for stem in _WEIGHT_FILES:
        single = component / f"{stem}.safetensors"
        if single.is_file():
            return load_file(str(single))
        index = component / f"{stem}.safetensors.index.json"
        if index.is_file():
            shards = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
            return {
                key: value for shard in shards for key, value in load_file(str(component / shard)).items()
            }
    raise CheckpointError(f"{component}: no {' or '.join(s + '.safetensors' for s in _WEIGHT_FILES)} found")


def _prefixed(prefix: str, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {prefix + key: value for key, value in state.items()}


def _rename(state: dict[str, torch.Tensor], prefixes: dict[str, str], what: str) -> dict[str, torch.Tensor]:
    """Rename by the longest matching key prefix; a key that no prefix covers is an error.

    Failing on unknown keys (instead of copying them through, as the diffusers script does) means a
    checkpoint is never written with weights A1111 would silently ignore.
    """
    ordered = sorted(prefixes.items(), key=lambda item: len(item[0]), reverse=True)
    renamed = {}
    for key, value in state.items():
        for old, new in ordered:
            if key.startswith(old):
                renamed[new + key[len(old) :]] = value
                break
        else:
            raise CheckpointError(f"unexpected {what} parameter {key!r}; is this an SDXL model?")
    return renamed


def _block_ids(keys: Any, pattern: str) -> list[int]:
    return sorted({int(m.group(1)) for key in keys if (m := re.match(pattern, key))})


# --- UNet --------------------------------------------------------------------------------------

_UNET_TOP = {
    "time_embedding.linear_1.": "time_embed.0.",
    "time_embedding.linear_2.": "time_embed.2.",
    "add_embedding.linear_1.": "label_emb.0.0.",  # SDXL's pooled-text + size/crop conditioning
    "add_embedding.linear_2.": "label_emb.0.2.",
    "conv_in.": "input_blocks.0.0.",
    "conv_norm_out.": "out.0.",
    "conv_out.": "out.2.",
}
_UNET_RESNET = {
    "norm1.": "in_layers.0.",
    "conv1.": "in_layers.2.",
    "norm2.": "out_layers.0.",
    "conv2.": "out_layers.3.",
    "time_emb_proj.": "emb_layers.1.",
    "conv_shortcut.": "skip_connection.",
}


def _convert_unet(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """diffusers UNet2DConditionModel keys -> SGM `UNetModel` keys, for any number of levels.

    SGM numbers its blocks flat: `input_blocks.0` is conv_in, then per level one input block per
    resnet (holding the resnet at `.0` and the level's transformer, if any, at `.1`) and, except on
    the last level, one more for the downsampler. `output_blocks` run from the deepest level up,
    with one block per up-resnet; a level's upsampler sits in its last block after the resnet and
    transformer. Transformer internals have the same names on both sides.
    """
    keys = list(state)
    blocks: dict[str, str] = dict(_UNET_TOP)

    index = 1
    for level in _block_ids(keys, r"down_blocks\.(\d+)\."):
        for j in _block_ids(keys, rf"down_blocks\.{level}\.resnets\.(\d+)\."):
            blocks[f"down_blocks.{level}.resnets.{j}."] = f"input_blocks.{index}.0."
            blocks[f"down_blocks.{level}.attentions.{j}."] = f"input_blocks.{index}.1."
            index += 1
        if any(key.startswith(f"down_blocks.{level}.downsamplers.") for key in keys):
            blocks[f"down_blocks.{level}.downsamplers.0.conv."] = f"input_blocks.{index}.0.op."
            index += 1

    blocks["mid_block.resnets.0."] = "middle_block.0."
    blocks["mid_block.attentions.0."] = "middle_block.1."
    blocks["mid_block.resnets.1."] = "middle_block.2."

    index = 0
    for level in _block_ids(keys, r"up_blocks\.(\d+)\."):
        has_attention = any(key.startswith(f"up_blocks.{level}.attentions.") for key in keys)
        for j in _block_ids(keys, rf"up_blocks\.{level}\.resnets\.(\d+)\."):
            blocks[f"up_blocks.{level}.resnets.{j}."] = f"output_blocks.{index}.0."
            blocks[f"up_blocks.{level}.attentions.{j}."] = f"output_blocks.{index}.1."
            index += 1
        slot = 2 if has_attention else 1
        blocks[f"up_blocks.{level}.upsamplers.0.conv."] = f"output_blocks.{index - 1}.{slot}.conv."

    # Resnet internals are renamed too; add those longer prefixes per resnet block.
    for old, new in list(blocks.items()):
        if ".resnets." in old:
            for inner_old, inner_new in _UNET_RESNET.items():
                blocks[old + inner_old] = new + inner_new
    return _rename(state, blocks, "UNet")


# --- VAE ---------------------------------------------------------------------------------------

_VAE_ATTENTION = {
    "group_norm.": "norm.",
    "to_q.": "q.",
    "to_k.": "k.",
    "to_v.": "v.",
    "to_out.0.": "proj_out.",
}


def _convert_vae(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """diffusers AutoencoderKL keys -> SGM `AutoencoderKL` keys, for any number of levels.

    The decoder's levels are numbered the other way round in SGM (`up.0` is the full-resolution
    one), and the mid-block attention uses 1x1 convolutions where diffusers uses linear layers.
    """
    keys = list(state)
    blocks = {
        "quant_conv.": "quant_conv.",
        "post_quant_conv.": "post_quant_conv.",
    }
    for part in ("encoder", "decoder"):
        blocks[f"{part}.conv_in."] = f"{part}.conv_in."
        blocks[f"{part}.conv_out."] = f"{part}.conv_out."
        blocks[f"{part}.conv_norm_out."] = f"{part}.norm_out."
        for i in _block_ids(keys, rf"{part}\.mid_block\.resnets\.(\d+)\."):
            blocks[f"{part}.mid_block.resnets.{i}."] = f"{part}.mid.block_{i + 1}."
        for old, new in _VAE_ATTENTION.items():
            blocks[f"{part}.mid_block.attentions.0.{old}"] = f"{part}.mid.attn_1.{new}"

    for level in _block_ids(keys, r"encoder\.down_blocks\.(\d+)\."):
        for j in _block_ids(keys, rf"encoder\.down_blocks\.{level}\.resnets\.(\d+)\."):
            blocks[f"encoder.down_blocks.{level}.resnets.{j}."] = f"encoder.down.{level}.block.{j}."
        blocks[f"encoder.down_blocks.{level}.downsamplers.0.conv."] = f"encoder.down.{level}.downsample.conv."
    up_levels = _block_ids(keys, r"decoder\.up_blocks\.(\d+)\.")
    for level in up_levels:
        sgm = len(up_levels) - 1 - level
        for j in _block_ids(keys, rf"decoder\.up_blocks\.{level}\.resnets\.(\d+)\."):
            blocks[f"decoder.up_blocks.{level}.resnets.{j}."] = f"decoder.up.{sgm}.block.{j}."
        blocks[f"decoder.up_blocks.{level}.upsamplers.0.conv."] = f"decoder.up.{sgm}.upsample.conv."

    # The only resnet rename in the VAE: the 1x1 shortcut is "nin_shortcut" in SGM.
    for old, new in list(blocks.items()):
        if ".resnets." in old:
            blocks[old + "conv_shortcut."] = new + "nin_shortcut."

    renamed = _rename(state, blocks, "VAE")
    for key, value in renamed.items():
        if ".mid.attn_1." in key and key.endswith(".weight") and value.ndim == 2:
            renamed[key] = value.reshape(*value.shape, 1, 1)  # linear [out, in] -> conv [out, in, 1, 1]
    return renamed


# --- Text encoders -----------------------------------------------------------------------------


def _convert_clip_l(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """CLIP-L keeps transformers' naming in SGM, under `text_model.`.

    transformers 5 saves `CLIPTextModel` without the `text_model.` level (older versions had it),
    so accept both and always write it.
    """
    return {"text_model." + key.removeprefix("text_model."): value for key, value in state.items()}


_OPEN_CLIP_TOP = {
    "text_model.embeddings.token_embedding.weight": "token_embedding.weight",
    "text_model.embeddings.position_embedding.weight": "positional_embedding",
    "text_model.final_layer_norm.weight": "ln_final.weight",
    "text_model.final_layer_norm.bias": "ln_final.bias",
}
_OPEN_CLIP_LAYER = {
    "layer_norm1.": "ln_1.",
    "layer_norm2.": "ln_2.",
    "mlp.fc1.": "mlp.c_fc.",
    "mlp.fc2.": "mlp.c_proj.",
    "self_attn.out_proj.": "attn.out_proj.",
}
_QKV = re.compile(r"text_model\.encoder\.layers\.(\d+)\.self_attn\.([qkv])_proj\.(weight|bias)$")


def _convert_open_clip(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """transformers `CLIPTextModelWithProjection` keys -> open_clip's text tower keys.

    open_clip uses `nn.MultiheadAttention`, whose q, k and v projections are one fused
    `in_proj_weight`/`in_proj_bias` (stacked in that order), and stores the text projection as a
    bare [width, embed_dim] matrix applied as `x @ text_projection`: the transpose of the Linear.
    """
    keys = list(state)
    converted: dict[str, torch.Tensor] = {}
    prefixes: dict[str, str] = {}
    for layer in _block_ids(keys, r"text_model\.encoder\.layers\.(\d+)\."):
        source, target = f"text_model.encoder.layers.{layer}.", f"transformer.resblocks.{layer}."
        for old, new in _OPEN_CLIP_LAYER.items():
            prefixes[source + old] = target + new
        for param in ("weight", "bias"):
            names = [f"{source}self_attn.{p}_proj.{param}" for p in "qkv"]
            if not all(name in state for name in names):
                raise CheckpointError(f"text_encoder_2 layer {layer} lacks a q, k or v projection {param}")
            converted[f"{target}attn.in_proj_{param}"] = torch.cat([state[name] for name in names])

    rest = {key: value for key, value in state.items() if not _QKV.match(key)}
    projection = rest.pop("text_projection.weight", None)
    if projection is None:
        raise CheckpointError("text_encoder_2 has no text_projection; SDXL needs CLIPTextModelWithProjection")
    converted["text_projection"] = projection.T
    prefixes.update(_OPEN_CLIP_TOP)
    converted.update(_rename(rest, prefixes, "text_encoder_2"))
    return converted
