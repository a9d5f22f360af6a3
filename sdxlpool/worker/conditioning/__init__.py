"""SDXL conditioning from A1111's prompt language, for the worker's diffusers pipelines.

* `text`: what of a prompt the encoders read, and the constructs not applied (pure);
* `chunks`: 75-token chunks with weights, comma backtracking, BREAK and embedding slots (pure);
* `tokens`: the tokenizer step in front of `chunks`;
* `encode`: chunks through the text encoders with A1111's emphasis and textual inversion (torch);
* `schedule`: prompt editing / alternation as conditioning per sampling step (torch).

`pipeline_encoders` names the text encoders of a loaded pipeline (the refiner has only SDXL's second).
"""

from __future__ import annotations

from typing import Any

from sdxlpool.worker.conditioning.chunks import CHUNK_LENGTH, COMMA_BACKTRACK, Chunk, SpecialIds, build_chunks
from sdxlpool.worker.conditioning.encode import Encoded, TextEncoder, apply_emphasis, encode_group
from sdxlpool.worker.conditioning.schedule import (
    BatchConditioning,
    Conditioning,
    StepConditioning,
    build_conditioning,
    chunks,
    entry_at,
)
from sdxlpool.worker.conditioning.text import PromptText, prompt_text
from sdxlpool.worker.conditioning.tokens import prompt_chunks, special_ids, tokenize_runs

__all__ = [
    "CHUNK_LENGTH", "COMMA_BACKTRACK", "Chunk", "SpecialIds", "build_chunks",
    "Encoded", "TextEncoder", "apply_emphasis", "encode_group",
    "StepConditioning", "BatchConditioning", "Conditioning", "build_conditioning", "chunks", "entry_at",
    "PromptText", "prompt_text",
    "prompt_chunks", "special_ids", "tokenize_runs",
    "pipeline_encoders",
]


def pipeline_encoders(pipe: Any) -> list[TextEncoder]:
    """The pipeline's (tokenizer, text encoder) pairs in SDXL's order: CLIP ViT-L, then OpenCLIP bigG."""
    pairs = [(getattr(pipe, "tokenizer", None), getattr(pipe, "text_encoder", None), "clip_l"),
             (getattr(pipe, "tokenizer_2", None), getattr(pipe, "text_encoder_2", None), "clip_g")]
    return [TextEncoder(tokenizer, model, key) for tokenizer, model, key in pairs if model is not None]
