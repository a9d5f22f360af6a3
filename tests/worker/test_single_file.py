"""Single-file checkpoints: detection, the offline skeleton, loading, and the diffusers -> SGM writer.

The tiny random-weight model is written once per module, converted to single files with
`write_single_file`, and loaded back with `load_single_file`; every weight and a generated image
must come out identical to the diffusers folder's. All of it runs with HF_HUB_OFFLINE=1 and with
sockets disabled, so any attempt to reach a hub fails the test instead of silently downloading.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from sdxlpool.errors import CheckpointError
from sdxlpool.worker import single_file
from sdxlpool.worker.architectures import component_configs
from sdxlpool.worker.single_file import (
    detect_architecture,
    load_single_file,
    skeleton_for,
    write_single_file,
)
from sdxlpool.worker.tiny import write_tiny_model

PROMPT = "a photo of a cat"


@pytest.fixture(scope="module", autouse=True)
def offline(tmp_path_factory: pytest.TempPathFactory):
    """No hub, no network, and a private skeleton cache for the whole module."""

    attempts: list[tuple] = []

    def refuse(*args, **kwargs):
        attempts.append(args)  # recorded too, in case a caller swallows the error
        raise OSError(f"network access attempted: {args}")

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setenv("SDXLPOOL_CACHE", str(tmp_path_factory.mktemp("cache")))
        mp.setattr(socket.socket, "connect", refuse)
        mp.setattr(socket, "create_connection", refuse)
        mp.setattr(socket, "getaddrinfo", refuse)
        yield
    assert not attempts, f"network access attempted: {attempts}"


@pytest.fixture(scope="module")
def tiny(offline, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base, refiner = write_tiny_model(tmp_path_factory.mktemp("tiny"))
    return {"base": base, "refiner": refiner}


@pytest.fixture(scope="module")
def files(tiny, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("single")
    return {kind: write_single_file(folder, out / f"{kind}.safetensors") for kind, folder in tiny.items()}


@pytest.fixture(scope="module")
def folder_pipes(tiny):
    from diffusers import StableDiffusionXLImg2ImgPipeline, StableDiffusionXLPipeline

    base = StableDiffusionXLPipeline.from_pretrained(tiny["base"], local_files_only=True)
    refiner = StableDiffusionXLImg2ImgPipeline.from_pretrained(tiny["refiner"], local_files_only=True)
    return {"base": base, "refiner": refiner}


@pytest.fixture(scope="module")
def file_pipes(files):
    base = load_single_file(files["base"])
    return {
        "base": base,
        "refiner": load_single_file(files["refiner"]),  # with its own text_encoder_2 and VAE
        "refiner_shared": load_single_file(
            files["refiner"], kind="refiner", text_encoder_2=base.text_encoder_2, vae=base.vae
        ),
    }


def _assert_same_weights(expected: torch.nn.Module, actual: torch.nn.Module) -> None:
    want, got = expected.state_dict(), actual.state_dict()
    assert sorted(got) == sorted(want)
    different = [key for key in want if not torch.equal(want[key], got[key])]
    assert not different, f"{len(different)} tensors differ, e.g. {different[:3]}"


def _write_header(path: Path, shapes: dict[str, tuple[int, ...]]) -> Path:
    save_file({key: torch.zeros(shape) for key, shape in shapes.items()}, str(path))
    return path


# --- round trip: folder -> single file -> pipeline ----------------------------------------------


@pytest.mark.parametrize("component", ["unet", "vae", "text_encoder", "text_encoder_2"])
def test_base_round_trip_keeps_every_weight(folder_pipes, file_pipes, component):
    _assert_same_weights(getattr(folder_pipes["base"], component), getattr(file_pipes["base"], component))


@pytest.mark.parametrize("component", ["unet", "vae", "text_encoder_2"])
def test_refiner_round_trip_keeps_every_weight(folder_pipes, file_pipes, component):
    _assert_same_weights(
        getattr(folder_pipes["refiner"], component), getattr(file_pipes["refiner"], component)
    )


def test_pipeline_classes(file_pipes):
    from diffusers import StableDiffusionXLImg2ImgPipeline, StableDiffusionXLPipeline

    assert type(file_pipes["base"]) is StableDiffusionXLPipeline
    assert type(file_pipes["refiner"]) is StableDiffusionXLImg2ImgPipeline
    assert file_pipes["refiner"].text_encoder is None and file_pipes["refiner"].tokenizer is None


def test_refiner_reuses_the_base_text_encoder_2_and_vae(folder_pipes, file_pipes):
    shared, base = file_pipes["refiner_shared"], file_pipes["base"]
    assert shared.text_encoder_2 is base.text_encoder_2
    assert shared.vae is base.vae
    _assert_same_weights(folder_pipes["refiner"].unet, shared.unet)
    # The tiny refiner shares these with the base by construction, as SDXL 1.0 does.
    _assert_same_weights(folder_pipes["refiner"].text_encoder_2, shared.text_encoder_2)
    _assert_same_weights(folder_pipes["refiner"].vae, shared.vae)


def _generate_base(pipe) -> np.ndarray:
    generator = torch.Generator("cpu").manual_seed(1234)
    return pipe(
        PROMPT, height=64, width=64, num_inference_steps=2, generator=generator, output_type="np"
    ).images


def test_single_file_base_generates_the_same_image(folder_pipes, file_pipes):
    expected = _generate_base(folder_pipes["base"])
    assert expected.shape == (1, 64, 64, 3)
    np.testing.assert_array_equal(_generate_base(file_pipes["base"]), expected)


def test_single_file_refiner_generates_the_same_image(folder_pipes, file_pipes):
    image = torch.from_numpy(_generate_base(folder_pipes["base"])).permute(0, 3, 1, 2)

    def refine(pipe) -> np.ndarray:
        generator = torch.Generator("cpu").manual_seed(99)
        return pipe(
            PROMPT, image=image, strength=0.5, num_inference_steps=4, generator=generator, output_type="np"
        ).images

    expected = refine(folder_pipes["refiner"])
    np.testing.assert_array_equal(refine(file_pipes["refiner_shared"]), expected)
    np.testing.assert_array_equal(refine(file_pipes["refiner"]), expected)


def test_written_file_uses_the_a1111_layout(files):
    base, refiner = load_file(str(files["base"])), load_file(str(files["refiner"]))
    width = component_configs("base", "tiny")["text_encoder_2"]["hidden_size"]
    for key in [
        "model.diffusion_model.input_blocks.0.0.weight",
        "model.diffusion_model.middle_block.1.proj_in.weight",
        "model.diffusion_model.output_blocks.2.2.conv.weight",  # upsampler after a transformer
        "first_stage_model.decoder.up.3.upsample.conv.weight",
        "conditioner.embedders.0.transformer.text_model.embeddings.token_embedding.weight",
        "conditioner.embedders.1.model.transformer.resblocks.0.attn.in_proj_bias",
        "conditioner.embedders.1.model.ln_final.weight",
    ]:
        assert key in base, key
    assert base["first_stage_model.encoder.mid.attn_1.q.weight"].ndim == 4  # 1x1 conv, not linear
    assert base["conditioner.embedders.1.model.transformer.resblocks.0.attn.in_proj_weight"].shape == (
        3 * width,
        width,
    )
    assert base["conditioner.embedders.1.model.text_projection"].shape == (width, width)
    assert not any(key.startswith("conditioner.embedders.1.") for key in refiner)
    assert "conditioner.embedders.0.model.text_projection" in refiner
    # Four levels without attention on the last: its upsampler follows the resnet directly.
    assert "model.diffusion_model.output_blocks.2.1.conv.weight" in refiner
    assert "model.diffusion_model.input_blocks.11.0.in_layers.2.weight" in refiner


# --- the layout at real SDXL size, checked against diffusers' own SGM -> diffusers converters ---


def _empty(kind: str, name: str) -> torch.nn.Module:
    """A real-size component on the meta device: its names and shapes, no memory."""
    from accelerate import init_empty_weights
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    config = component_configs(kind, "real")[name]  # type: ignore[arg-type]
    with init_empty_weights():
        if name == "unet":
            return UNet2DConditionModel.from_config(config)
        if name == "vae":
            return AutoencoderKL.from_config(config)
        model_class = CLIPTextModel if name == "text_encoder" else CLIPTextModelWithProjection
        return model_class(CLIPTextConfig(**config))


@pytest.mark.parametrize("kind", ["base", "refiner"])
def test_real_size_unet_and_vae_layout_matches_diffusers_loader(kind):
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint, convert_ldm_vae_checkpoint

    configs = component_configs(kind, "real")  # type: ignore[arg-type]
    unet = _empty(kind, "unet").state_dict()
    sgm_unet = single_file._prefixed(single_file.UNET, single_file._convert_unet(unet))
    back = convert_ldm_unet_checkpoint(sgm_unet, configs["unet"])
    assert sorted(back) == sorted(unet)
    assert all(back[key].shape == unet[key].shape for key in unet)

    vae = _empty(kind, "vae").state_dict()
    sgm_vae = single_file._prefixed(single_file.VAE, single_file._convert_vae(vae))
    back = convert_ldm_vae_checkpoint(sgm_vae, configs["vae"])
    assert sorted(back) == sorted(vae)
    assert all(back[key].shape == vae[key].shape for key in vae)
    assert sgm_vae["first_stage_model.decoder.mid.attn_1.proj_out.weight"].shape == (512, 512, 1, 1)

    if kind == "base":  # SGM names as they appear in sd_xl_base_1.0.safetensors
        assert sgm_unet["model.diffusion_model.output_blocks.2.2.conv.weight"].shape == (1280, 1280, 3, 3)
        assert "model.diffusion_model.middle_block.1.transformer_blocks.9.attn2.to_k.weight" in sgm_unet
        assert "model.diffusion_model.input_blocks.8.1.transformer_blocks.9.ff.net.2.bias" in sgm_unet
    else:  # sd_xl_refiner_1.0.safetensors
        assert sgm_unet["model.diffusion_model.input_blocks.0.0.weight"].shape == (384, 4, 3, 3)
        assert "model.diffusion_model.output_blocks.8.2.conv.weight" in sgm_unet
        assert "model.diffusion_model.input_blocks.11.0.in_layers.2.weight" in sgm_unet


def test_real_size_text_encoder_layout_matches_diffusers_loader():
    from diffusers.loaders.single_file_utils import convert_ldm_clip_checkpoint, convert_open_clip_checkpoint

    clip_l = _empty("base", "text_encoder")
    sgm = single_file._prefixed(single_file.CLIP_L, single_file._convert_clip_l(clip_l.state_dict()))
    assert "conditioner.embedders.0.transformer.text_model.encoder.layers.11.mlp.fc2.weight" in sgm
    back = convert_ldm_clip_checkpoint(sgm)
    assert sorted(key.removeprefix("text_model.") for key in back) == sorted(clip_l.state_dict())

    big_g = _empty("base", "text_encoder_2")
    prefix = single_file.OPEN_CLIP_BASE
    sgm = single_file._prefixed(prefix, single_file._convert_open_clip(big_g.state_dict()))
    assert sgm[prefix + "transformer.resblocks.31.attn.in_proj_weight"].shape == (3840, 1280)
    assert sgm[prefix + "text_projection"].shape == (1280, 1280)
    assert sgm[prefix + "positional_embedding"].shape == (77, 1280)
    back = convert_open_clip_checkpoint(big_g, sgm, prefix=prefix)
    expected = big_g.state_dict()
    assert sorted(back) == sorted(expected)
    assert all(back[key].shape == expected[key].shape for key in expected)


# --- detection ------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["base", "refiner"])
def test_detects_tiny_checkpoints(files, kind):
    assert detect_architecture(files[kind]) == (kind, "tiny")


@pytest.mark.parametrize(
    ("kind", "shapes"),
    [
        (
            "base",
            {
                "conditioner.embedders.0.transformer.text_model.embeddings.position_embedding.weight": (
                    77,
                    768,
                ),
                "conditioner.embedders.1.model.positional_embedding": (77, 1280),
                "model.diffusion_model.input_blocks.0.0.weight": (320, 4, 3, 3),
            },
        ),
        (
            "refiner",
            {
                "conditioner.embedders.0.model.positional_embedding": (77, 1280),
                "model.diffusion_model.input_blocks.0.0.weight": (384, 4, 3, 3),
            },
        ),
    ],
)
def test_detects_real_size_checkpoints_from_the_header(tmp_path, kind, shapes):
    assert detect_architecture(_write_header(tmp_path / "model.safetensors", shapes)) == (kind, "real")


_SDXL_BASE = {
    "conditioner.embedders.0.transformer.text_model.embeddings.position_embedding.weight": (77, 768),
    "conditioner.embedders.1.model.positional_embedding": (77, 1280),
}


@pytest.mark.parametrize(
    ("shapes", "message"),
    [
        (
            {
                "cond_stage_model.transformer.text_model.embeddings.position_embedding.weight": (77, 768),
                "model.diffusion_model.input_blocks.0.0.weight": (320, 4, 3, 3),
                "first_stage_model.decoder.conv_in.weight": (512, 4, 3, 3),
            },
            "Stable Diffusion 1.x",
        ),
        ({"cond_stage_model.model.positional_embedding": (77, 1024)}, "Stable Diffusion 2.x"),
        ({"double_blocks.0.img_attn.norm.key_norm.scale": (128,)}, "Flux"),
        ({"first_stage_model.encoder.conv_in.weight": (128, 3, 3, 3)}, "not an SDXL checkpoint"),
        (_SDXL_BASE, "no UNet"),
        ({**_SDXL_BASE, "model.diffusion_model.input_blocks.0.0.weight": (320, 9, 3, 3)}, "9 input channels"),
        ({**_SDXL_BASE, "model.diffusion_model.input_blocks.0.0.weight": (256, 4, 3, 3)}, "UNet width 256"),
    ],
    ids=["sd15", "sd2", "flux", "vae-only", "no-unet", "inpainting", "odd-width"],
)
def test_rejects_other_model_families(tmp_path, shapes, message):
    path = _write_header(tmp_path / "other.safetensors", shapes)
    with pytest.raises(CheckpointError, match=message) as caught:
        detect_architecture(path)
    assert str(path) in str(caught.value)


def test_rejects_a_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="no such checkpoint file"):
        detect_architecture(tmp_path / "absent.safetensors")


def test_rejects_a_text_file_named_safetensors(tmp_path):
    path = tmp_path / "notes.safetensors"
    path.write_text("these are not the weights you are looking for\n" * 20)
    with pytest.raises(CheckpointError, match="not a readable .safetensors file"):
        detect_architecture(path)


def test_rejects_a_truncated_file(tmp_path, files):
    path = tmp_path / "cut.safetensors"
    path.write_bytes(files["base"].read_bytes()[: files["base"].stat().st_size // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        detect_architecture(path)


def test_rejects_ckpt_pickles(tmp_path):
    path = tmp_path / "model.ckpt"
    torch.save({"state_dict": {}}, path)
    with pytest.raises(
        CheckpointError, match=r"\.ckpt pickles are not loaded for safety; convert to \.safetensors"
    ):
        detect_architecture(path)


def test_rejects_a_pickle_named_safetensors(tmp_path):
    path = tmp_path / "model.safetensors"
    torch.save({"state_dict": {}}, path)
    with pytest.raises(CheckpointError, match="pickle"):
        detect_architecture(path)


# --- loading errors and real-world extras ----------------------------------------------------------


def test_load_refuses_the_wrong_kind(files):
    with pytest.raises(
        CheckpointError, match="expected an SDXL base checkpoint, but this is an SDXL refiner"
    ):
        load_single_file(files["refiner"], kind="base")


def _edited(tmp_path: Path, source: Path, edit) -> Path:
    state = load_file(str(source))
    edit(state)
    path = tmp_path / "edited.safetensors"
    save_file(state, str(path))
    return path


def test_load_names_the_missing_weights(tmp_path, files):
    path = _edited(tmp_path, files["base"], lambda state: state.pop("model.diffusion_model.out.2.weight"))
    with pytest.raises(CheckpointError, match=r"lacks unet weights: model\.diffusion_model\.out\.2\.weight"):
        load_single_file(path)


def test_load_names_a_wrongly_shaped_weight(tmp_path, files):
    key = "conditioner.embedders.1.model.ln_final.weight"
    path = _edited(tmp_path, files["base"], lambda state: state.update({key: torch.zeros(7)}))
    with pytest.raises(CheckpointError, match=rf"{key} has shape \[7\]; SDXL base \(tiny\) needs \[48\]"):
        load_single_file(path)


def test_a_refiner_without_its_vae_needs_the_base_one(tmp_path, files, file_pipes, folder_pipes):
    def drop_vae(state: dict) -> None:
        for key in [key for key in state if key.startswith("first_stage_model.")]:
            del state[key]

    path = _edited(tmp_path, files["refiner"], drop_vae)
    with pytest.raises(CheckpointError, match=r"no vae weights \(first_stage_model\.\* keys\)"):
        load_single_file(path)
    pipe = load_single_file(path, vae=file_pipes["base"].vae)
    assert pipe.vae is file_pipes["base"].vae
    _assert_same_weights(folder_pipes["refiner"].unet, pipe.unet)


def test_load_accepts_the_extra_keys_real_checkpoints_carry(tmp_path, files, folder_pipes):
    """sd_xl_base_1.0 and its fine-tunes also store CLIP-L's position_ids and OpenCLIP's logit_scale."""
    state = load_file(str(files["base"]))
    state["conditioner.embedders.0.transformer.text_model.embeddings.position_ids"] = torch.arange(77)[None]
    state["conditioner.embedders.1.model.logit_scale"] = torch.tensor(4.6052)
    path = tmp_path / "extras.safetensors"
    save_file(state, str(path))
    pipe = load_single_file(path, torch_dtype=torch.float32)
    _assert_same_weights(folder_pipes["base"].text_encoder, pipe.text_encoder)
    _assert_same_weights(folder_pipes["base"].text_encoder_2, pipe.text_encoder_2)


def test_load_in_half_precision(files):
    pipe = load_single_file(files["refiner"], torch_dtype=torch.float16)
    assert pipe.unet.dtype == torch.float16 and pipe.vae.dtype == torch.float16


def test_write_refuses_bad_paths(tmp_path, tiny):
    with pytest.raises(CheckpointError, match="must end in .safetensors"):
        write_single_file(tiny["base"], tmp_path / "model.ckpt")
    with pytest.raises(CheckpointError, match="no unet/ subfolder"):
        write_single_file(tmp_path, tmp_path / "model.safetensors")


# --- the skeleton ----------------------------------------------------------------------------------


def test_real_base_skeleton_has_the_real_tokenizer_and_unet(offline):
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTokenizer

    folder = skeleton_for("base", "real")
    expected_ids = [49406, 320, 1125, 539, 320, 2368, 49407]
    for name in ("tokenizer", "tokenizer_2"):
        assert CLIPTokenizer.from_pretrained(folder / name)(PROMPT).input_ids == expected_ids
    assert UNet2DConditionModel.load_config(folder / "unet")["block_out_channels"] == [320, 640, 1280]


def test_skeleton_is_written_once_under_a_content_hash(offline):
    first = skeleton_for("refiner", "tiny")
    assert first.parent == Path(os.environ["SDXLPOOL_CACHE"]) / "skeletons"
    assert first.name.startswith("sdxl-refiner-tiny-") and len(first.name) == len("sdxl-refiner-tiny-") + 16
    single_file._skeletons.clear()  # forget the in-process memo: the folder on disk is reused
    before = first.stat().st_mtime_ns
    assert skeleton_for("refiner", "tiny") == first
    assert first.stat().st_mtime_ns == before
    assert skeleton_for("base", "tiny") != first
    assert not [p for p in first.parent.iterdir() if p.name.startswith(".")]  # no staging left


def test_concurrent_workers_share_one_skeleton(tmp_path):
    code = "from sdxlpool.worker.single_file import skeleton_for; print(skeleton_for('base', 'real'))"
    env = {**os.environ, "SDXLPOOL_CACHE": str(tmp_path), "HF_HUB_OFFLINE": "1"}
    workers = [
        subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    paths = {worker.communicate(timeout=120)[0].strip() for worker in workers}
    assert all(worker.returncode == 0 for worker in workers)
    assert len(paths) == 1
    assert [p.name for p in (tmp_path / "skeletons").iterdir()] == [Path(paths.pop()).name]
