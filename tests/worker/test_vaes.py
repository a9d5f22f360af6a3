"""`worker.vaes`: what --vae-dir lists, what sd_vae means per checkpoint, and loading real layouts."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from sdxlpool.errors import InvalidRequest
from sdxlpool.worker.checkpoints import Checkpoint
from sdxlpool.worker.vaes import VaeEntry, VaeSet
from tests.conftest import TinyModel


def checkpoint(path: Path) -> Checkpoint:
    return Checkpoint(path.stem, path, "base", "0" * 64, pipeline=None)


def touch(path: Path, content: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path


def test_listing_files_and_diffusers_folders_in_natural_order(tmp_path: Path) -> None:
    folder = tmp_path / "VAE"
    touch(folder / "vae10.safetensors")
    touch(folder / "vae2.safetensors")
    touch(folder / "sub" / "sdxl_vae.safetensors")  # subfolders are scanned, listed by file name
    touch(folder / "old.pt")  # pickles are not loaded, so not listed
    touch(folder / "old.ckpt")
    diffusers = folder / "madebyollin-fix"
    touch(diffusers / "config.json", json.dumps({"_class_name": "AutoencoderKL"}).encode())
    touch(diffusers / "diffusion_pytorch_model.safetensors")
    touch(folder / "not-a-vae" / "config.json", json.dumps({"_class_name": "UNet2DConditionModel"}).encode())
    vaes = VaeSet(folder, tmp_path / "cache")
    assert [e.as_a1111() for e in vaes.entries()] == [
        {"model_name": "madebyollin-fix", "filename": str(diffusers)},
        {"model_name": "sdxl_vae.safetensors", "filename": str(folder / "sub" / "sdxl_vae.safetensors")},
        {"model_name": "vae2.safetensors", "filename": str(folder / "vae2.safetensors")},
        {"model_name": "vae10.safetensors", "filename": str(folder / "vae10.safetensors")},
    ]
    touch(folder / "later.safetensors")  # found without a restart
    assert "later.safetensors" in [e.name for e in vaes.entries()]
    assert VaeSet(None, tmp_path).entries() == [] and VaeSet(tmp_path / "missing", tmp_path).entries() == []


def test_what_sd_vae_means_for_a_checkpoint(tmp_path: Path) -> None:
    folder = touch(tmp_path / "VAE" / "sdxl_vae.safetensors").parent
    model = touch(tmp_path / "models" / "juggernaut.safetensors")
    vaes = VaeSet(folder, tmp_path / "cache")
    chosen = VaeEntry("sdxl_vae.safetensors", folder / "sdxl_vae.safetensors")
    assert vaes.choose("sdxl_vae.safetensors", checkpoint(model)) == chosen
    assert vaes.choose("None", checkpoint(model)) is None
    assert vaes.choose("Automatic", checkpoint(model)) is None  # nothing next to the checkpoint
    near = touch(tmp_path / "models" / "juggernaut.vae.safetensors")  # A1111's "VAE near the checkpoint"
    assert vaes.choose("Automatic", checkpoint(model)) == VaeEntry(near.name, near)
    assert vaes.choose("auto", checkpoint(model)) == VaeEntry(near.name, near)
    assert vaes.choose("None", checkpoint(model)) is None
    assert vaes.choose("Automatic", checkpoint(tmp_path / "models")) is None  # a folder checkpoint: its own
    for good in ("Automatic", "auto", "None", "sdxl_vae.safetensors"):
        assert vaes.check(good, field="sd_vae") == good
    for bad in ("sdxl_vae", "SDXL_VAE.safetensors"):  # exact file names, as A1111's list has them
        with pytest.raises(InvalidRequest, match=r"^override_settings\.sd_vae: no VAE named .*sdxl_vae\.safetensors"):
            vaes.check(bad, field="override_settings.sd_vae")
    for bad in (None, 1):
        with pytest.raises(InvalidRequest, match=r"^sd_vae: must be a VAE name"):
            vaes.check(bad, field="sd_vae")


def test_real_file_layouts_load_to_the_same_weights(tiny_model: TinyModel, tmp_path: Path) -> None:
    """The ldm file (as sdxl_vae.safetensors), the same under `first_stage_model.` (a VAE cut out of
    a checkpoint), a diffusers-layout file and a diffusers folder all give the same module."""
    from diffusers import AutoencoderKL

    like = AutoencoderKL.from_pretrained(tiny_model.base / "vae")
    ldm = load_file(str(tiny_model.base.parent / "vae" / "tiny-vae.safetensors"))
    folder = tmp_path / "VAE"
    save_file(ldm, str(touch(folder / "a.safetensors")))
    save_file({f"first_stage_model.{k}": v for k, v in ldm.items()}, str(folder / "b.safetensors"))
    vaes = VaeSet(folder, tmp_path / "cache")
    first = vaes.load(VaeEntry("a.safetensors", folder / "a.safetensors"), like).module
    save_file(first.state_dict(), str(folder / "c.safetensors"))
    first.save_pretrained(folder / "d")
    modules = [vaes.load(entry, like).module for entry in vaes.entries()]
    assert [e.name for e in vaes.entries()] == ["a.safetensors", "b.safetensors", "c.safetensors", "d"]
    reference = first.state_dict()
    assert not all(torch.equal(v, like.state_dict()[k]) for k, v in reference.items())  # not the model's own
    for module in modules:
        assert all(torch.equal(v, reference[k]) for k, v in module.state_dict().items())
    assert vaes.load(vaes.entries()[-1], like).module is modules[-1]  # cached
    again = vaes.load(VaeEntry("a.safetensors", folder / "a.safetensors"), like)
    assert again.module is not first  # the least recently used went (two stay loaded)
    assert again.short_hash == hashlib.sha256((folder / "a.safetensors").read_bytes()).hexdigest()[:10]


def test_a_vae_that_does_not_fit_is_a_422(tiny_model: TinyModel, tmp_path: Path) -> None:
    from diffusers import AutoencoderKL

    like = AutoencoderKL.from_pretrained(tiny_model.base / "vae")
    ldm = load_file(str(tiny_model.base.parent / "vae" / "tiny-vae.safetensors"))
    ldm["decoder.conv_in.weight"] = torch.zeros(3, 3, 3, 3)
    path = tmp_path / "broken.safetensors"
    save_file(ldm, str(path))
    with pytest.raises(InvalidRequest, match=r"^sd_vae: VAE 'broken.safetensors' does not fit"):
        VaeSet(tmp_path, tmp_path / "cache").load(VaeEntry(path.name, path), like)
