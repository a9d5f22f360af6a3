"""The tiny model's textual-inversion embedding: `embeddings/tiny-style.safetensors`.

The same file format as the SDXL embeddings people download (A1111's): a safetensors file with
`clip_l` [vectors, width of text_encoder] and `clip_g` [vectors, width of text_encoder_2], the
widths read from the written base model so the embedding fits it.
"""

from __future__ import annotations

import json
from pathlib import Path

__all__ = ["TINY_EMBEDDING", "write_tiny_embeddings"]

TINY_EMBEDDING = "tiny-style"  # the name a prompt writes to use it (the file's stem)
_VECTORS = 2


def write_tiny_embeddings(target: Path, base: Path, *, seed: int = 0) -> Path:
    """Write `target/embeddings/tiny-style.safetensors` for the model at `base`; returns the folder."""
    import torch
    from safetensors.torch import save_file

    widths = [json.loads((base / name / "config.json").read_text())["hidden_size"]
              for name in ("text_encoder", "text_encoder_2")]
    generator = torch.Generator().manual_seed(seed + 14)
    folder = target / "embeddings"
    folder.mkdir(parents=True, exist_ok=True)
    # Scaled like token embeddings (CLIP initialises them with std 0.02); larger so they show in tests.
    tensors = {key: torch.randn(_VECTORS, width, generator=generator) * 0.5
               for key, width in zip(("clip_l", "clip_g"), widths, strict=True)}
    save_file(tensors, str(folder / f"{TINY_EMBEDDING}.safetensors"))
    return folder
