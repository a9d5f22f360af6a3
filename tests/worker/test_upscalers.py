"""Upscalers without a server: A1111's sizes, the registry, tiling, and model upscalers (spandrel)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from sdxlpool.errors import InvalidRequest
from sdxlpool.worker.settings import WorkerSettings
from sdxlpool.worker.upscalers import (
    EXTRA_NAME,
    UpscalerEntry,
    available_upscalers,
    find_upscaler,
    spandrel_available,
    tiled,
    upscale_by,
    upscale_latents,
    upscale_to,
)

LANCZOS = UpscalerEntry("Lanczos", "lanczos")
NEAREST = UpscalerEntry("Nearest", "nearest")


def settings(tmp_path: Path, **fields) -> WorkerSettings:
    return WorkerSettings(models=[tmp_path / "base.safetensors"], **fields)


@pytest.mark.parametrize(
    ("size", "scale", "expected"),
    [
        ((64, 64), 2, (128, 128)),
        ((100, 75), 2, (200, 144)),  # A1111 floors the target to a multiple of 8: 150 -> 144
        ((64, 48), 1.5, (96, 72)),
        ((64, 64), 0.5, (32, 32)),  # a scale below 1 shrinks (Lanczos)
    ],
)
def test_upscale_by_sizes_as_a1111(size: tuple[int, int], scale: float, expected: tuple[int, int]) -> None:
    assert upscale_by(LANCZOS, Image.new("RGB", size), scale).size == expected
    assert upscale_by(NEAREST, Image.new("RGB", size), scale).size == expected


def test_nearest_copies_pixels_and_none_leaves_the_image() -> None:
    image = Image.new("RGB", (2, 1))
    image.putpixel((0, 0), (255, 0, 0))
    image = image.resize((8, 8), Image.Resampling.NEAREST)
    up = upscale_by(NEAREST, image, 2)
    assert {up.getpixel((x, 0)) for x in range(8)} == {(255, 0, 0)}
    assert {up.getpixel((x, 0)) for x in range(8, 16)} == {(0, 0, 0)}
    assert upscale_by(UpscalerEntry("None", "none"), image, 2) is image


def test_upscale_to_reaches_the_exact_size() -> None:
    assert upscale_to(NEAREST, Image.new("RGB", (64, 128)), 96, 192).size == (96, 192)
    assert upscale_to(UpscalerEntry("None", "none"), Image.new("RGB", (64, 64)), 100, 60).size == (100, 60)


def test_latent_modes_interpolate_to_the_latent_size() -> None:
    latents = torch.randn(2, 4, 8, 8)
    for mode in ("Latent", "Latent (antialiased)", "Latent (bicubic antialiased)", "Latent (nearest-exact)"):
        assert upscale_latents(latents, mode, 128, 96).shape == (2, 4, 16, 12)
    nearest = upscale_latents(latents, "Latent (nearest)", 128, 128)
    assert torch.equal(nearest[:, :, ::2, ::2], latents)


@pytest.mark.parametrize(("size", "tile", "overlap"), [((40, 70), 16, 4), ((33, 17), 8, 2), ((10, 10), 16, 4)])
def test_tiles_stitch_to_the_whole_images_upscale(size: tuple[int, int], tile: int, overlap: int) -> None:
    """A local model (nearest x2) gives the same picture tiled as whole: every tile is placed where it
    belongs, the last row and column are covered, and the blend weights add up."""
    image = torch.rand(1, 3, *size)

    def model(x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.interpolate(x, scale_factor=2, mode="nearest")

    whole = model(image)
    assert torch.allclose(tiled(model, image, 2, tile=tile, overlap=overlap), whole, atol=1e-6)


def test_registry_lists_pil_upscalers_and_finds_names_exactly(tmp_path: Path) -> None:
    entries = available_upscalers(settings(tmp_path))
    assert [e.name for e in entries] == ["None", "Lanczos", "Nearest"]
    assert entries[1].as_a1111() == {"name": "Lanczos", "model_name": None, "model_path": None,
                                     "model_url": None, "scale": 4}
    assert find_upscaler(entries, "Nearest", field="upscaler_1").kind == "nearest"
    with pytest.raises(InvalidRequest) as error:
        find_upscaler(entries, "lanczos", field="upscaler_2")
    assert error.value.field == "upscaler_2" and "Lanczos" in error.value.message


def test_model_files_are_listed_only_when_spandrel_runs(tmp_path: Path) -> None:
    folder = tmp_path / "upscalers"
    (folder / "sub").mkdir(parents=True)
    for name in ("4x-UltraSharp.pth", "sub/RealESRGAN_x2plus.safetensors", "notes.txt"):
        (folder / name).write_bytes(b"x")
    names = [e.name for e in available_upscalers(settings(tmp_path, upscaler_dir=folder))]
    if not spandrel_available():
        assert names == ["None", "Lanczos", "Nearest"]  # never offered when they cannot run
        return
    entries = available_upscalers(settings(tmp_path, upscaler_dir=folder))
    assert [(e.name, e.scale) for e in entries[3:]] == [("4x-UltraSharp", 4), ("RealESRGAN_x2plus", 2)]


@pytest.mark.skipif(not spandrel_available(), reason=f"model upscalers need the optional extra sdxlpool[{EXTRA_NAME}]")
@pytest.mark.parametrize("scale", [2, 4])
def test_a_tiny_compact_model_loads_and_upscales(tmp_path: Path, scale: int) -> None:
    """A Real-ESRGAN compact (SRVGGNetCompact) state dict with random weights, tiny: spandrel finds
    its architecture and scale, and the upscale has the model's size."""
    from safetensors.torch import save_file

    from sdxlpool.worker.upscalers import ModelUpscalers

    feats, convs = 8, 2
    state: dict[str, torch.Tensor] = {"body.0.weight": torch.randn(feats, 3, 3, 3), "body.0.bias": torch.zeros(feats),
                                      "body.1.weight": torch.rand(feats)}
    index = 2
    for _ in range(convs):
        state[f"body.{index}.weight"] = torch.randn(feats, feats, 3, 3) * 0.1
        state[f"body.{index}.bias"] = torch.zeros(feats)
        state[f"body.{index + 1}.weight"] = torch.rand(feats)
        index += 2
    state[f"body.{index}.weight"] = torch.randn(3 * scale * scale, feats, 3, 3) * 0.1
    state[f"body.{index}.bias"] = torch.zeros(3 * scale * scale)
    path = tmp_path / f"{scale}x-tiny.safetensors"
    save_file(state, str(path))
    result = ModelUpscalers("cpu").run(path, Image.new("RGB", (24, 20), (200, 30, 30)))
    assert result.size == (24 * scale, 20 * scale)
    entry = UpscalerEntry(path.stem, "model", path, scale)
    assert upscale_by(entry, Image.new("RGB", (32, 32)), 3, ModelUpscalers("cpu").run).size == (96, 96)
