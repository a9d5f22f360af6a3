"""Live preview images for /sdapi/v1/progress, from latents, without touching the VAE.

A1111's "Approx cheap" preview: SDXL's four latent channels map almost linearly to RGB, so a 4x3
matrix gives a recognisable low-resolution preview for the cost of one einsum. Decoding with the
VAE at every poll would steal GPU time from the job being previewed.
"""

from __future__ import annotations

import base64
import io
from typing import Any

__all__ = ["preview_png_base64"]

# A1111 modules/sd_vae_approx.py, cheap_approximation() for SDXL latents.
_SDXL_LATENT_RGB = (
    (0.3448, 0.4168, 0.4395),
    (-0.1953, -0.0290, 0.0250),
    (0.1074, 0.0886, -0.0163),
    (-0.3730, -0.2499, -0.2088),
)


def preview_png_base64(latents: Any) -> str:
    """base64 PNG of the first image in a (batch, 4, h, w) latent tensor."""
    import torch
    from PIL import Image

    sample = latents[0].detach().float().cpu()
    rgb = torch.einsum("lxy,lr->rxy", sample, torch.tensor(_SDXL_LATENT_RGB))
    pixels = ((rgb + 1) * 127.5).clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")
