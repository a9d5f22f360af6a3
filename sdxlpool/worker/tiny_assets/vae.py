"""`DIR/vae/tiny-vae.safetensors`: a second tiny VAE, as one file in the original (ldm) key layout.

Real downloadable VAEs (`sdxl_vae.safetensors`, `sdxl.vae.safetensors`) are one safetensors file
with Stability's key names (`decoder.up.0.block.0...`, 1x1 convolutions in the mid attention), not
a diffusers folder; this one is written the same way (`single_file._convert_vae`), with the tiny
base's VAE architecture and weights from another seed, so it decodes the same latents differently.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["write_tiny_vae", "TINY_VAE_NAME"]

TINY_VAE_NAME = "tiny-vae.safetensors"


def write_tiny_vae(target: Path, *, seed: int = 0) -> Path:
    """Write `target/vae/tiny-vae.safetensors`; returns its path."""
    import torch
    from diffusers import AutoencoderKL
    from safetensors.torch import save_file

    from sdxlpool.worker.architectures import component_configs
    from sdxlpool.worker.single_file import _convert_vae

    generator_state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed + 7919)  # not the base's VAE seed: other weights, same architecture
        vae = AutoencoderKL.from_config(component_configs("base", "tiny")["vae"])
    finally:
        torch.random.set_rng_state(generator_state)
    state = {key: value.contiguous() for key, value in _convert_vae(vae.state_dict()).items()}
    folder = target / "vae"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / TINY_VAE_NAME
    save_file(state, str(path), metadata={"format": "pt"})
    return path
