"""Token chunks through SDXL's text encoders, with A1111's emphasis and embeddings (torch).

For one text encoder, a *group* of texts (the texts of one prompt's schedule, or of the negative
prompt's) is encoded as A1111 encodes the batch it hands to its CLIP wrapper:

* every text's chunks; a text with fewer chunks than the group's longest is filled with empty
  chunks (start, end, padding);
* each text's chunks go through the encoder as one batch (each text on its own, so its features
  do not depend on its neighbours to the last bit); the features are the hidden states SDXL uses
  (the penultimate layer, or earlier with clip skip, as diffusers' `encode_prompt` picks them);
* textual-inversion vectors replace the token embeddings at their placeholder positions, through
  a forward hook on the encoder's token-embedding layer that exists only during the call;
* emphasis ("Original"): chunk `i` of every text of the group is scaled by its multipliers, then
  all of them together are rescaled so their mean is what it was before (A1111 takes that mean
  over its whole batch of chunk `i`);
* a text's chunks are concatenated along the token axis (77 * chunks tokens);
* the pooled embedding (text_encoder_2's projection) is the one of the text's first chunk,
  unweighted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sdxlpool.worker.conditioning.chunks import Chunk
from sdxlpool.worker.conditioning.tokens import empty_chunk, prompt_chunks

__all__ = ["TextEncoder", "Encoded", "encode_group", "apply_emphasis"]


@dataclass(frozen=True)
class TextEncoder:
    tokenizer: Any
    model: Any  # CLIPTextModel | CLIPTextModelWithProjection
    key: str  # the embedding files' tensor for this encoder: "clip_l" or "clip_g"


@dataclass(frozen=True)
class Encoded:
    embeds: Any  # [77 * chunks, features]
    pooled: Any  # [projection] (None when no encoder projects)

    @property
    def chunks(self) -> int:
        return int(self.embeds.shape[0]) // 77


def apply_emphasis(z: Any, multipliers: Any, counts: Sequence[int] | None = None) -> Any:
    """A1111's "Original" emphasis: scale each token's features, then restore the overall mean.

    `z` is [texts, tokens, features]; `counts` says how many times each text stands in A1111's batch
    (a schedule may repeat a text): the mean is the batch's, each text counted that often.
    """
    if counts is None or all(c == 1 for c in counts):
        original_mean = z.mean()
        z = z * multipliers.reshape(multipliers.shape + (1,)).expand(z.shape)
        return z * (original_mean / z.mean())
    weights = z.new_tensor(list(counts))

    def mean(x: Any) -> Any:
        return (x.mean(dim=(1, 2)) * weights).sum() / weights.sum()

    original_mean = mean(z)
    z = z * multipliers.reshape(multipliers.shape + (1,)).expand(z.shape)
    return z * (original_mean / mean(z))


def encode_group(
    texts: Sequence[str], encoders: Sequence[TextEncoder], embeddings: Any = None, clip_skip: int = 1,
    counts: Sequence[int] | None = None,
) -> list[Encoded]:
    """Each text's features (the encoders' concatenated) and pooled embedding; see the module doc.

    `counts`: how often each (distinct) text appears in the group, for emphasis' batch mean.
    """
    import torch

    per_encoder = [_encode_with(texts, encoder, embeddings, clip_skip, counts) for encoder in encoders]
    results = []
    for i in range(len(texts)):
        embeds = torch.cat([features[i] for features, _ in per_encoder], dim=-1)
        pooled = next((p[i] for _, p in per_encoder if p is not None), None)
        results.append(Encoded(embeds, pooled))
    return results


def _encode_with(
    texts: Sequence[str], encoder: TextEncoder, embeddings: Any, clip_skip: int, counts: Sequence[int] | None,
) -> tuple[list[Any], Any]:
    import torch

    match = embeddings.matcher(encoder.tokenizer) if embeddings is not None and embeddings.loaded else None
    per_text = [prompt_chunks(text, encoder.tokenizer, match) for text in texts]
    count = max(len(chunks) for chunks in per_text)
    # One forward pass per text (its chunks as one batch), and one for the filler chunk: a text's
    # features never depend on which other texts share its schedule, to the last bit.
    runs = [_forward(encoder, chunks, embeddings, clip_skip) for chunks in per_text]
    filler = empty_chunk(encoder.tokenizer)
    filled: Any = _forward(encoder, [filler], embeddings, clip_skip)[0][0] if any(
        len(chunks) < count for chunks in per_text) else None
    emphasised: list[list[Any]] = [[] for _ in texts]
    for i in range(count):  # A1111's batch of chunk i: every text's chunk i, or the filler
        z = torch.stack([run[0][i] if i < len(chunks) else filled
                         for run, chunks in zip(runs, per_text, strict=True)])
        multipliers = torch.tensor([(chunks[i] if i < len(chunks) else filler).multipliers for chunks in per_text],
                                   device=z.device, dtype=z.dtype)
        for t, features in enumerate(apply_emphasis(z, multipliers, counts)):
            emphasised[t].append(features)
    features = [torch.cat(chunks) for chunks in emphasised]
    pooled = [run[1] for run in runs]
    return features, (pooled if all(p is not None for p in pooled) else None)


def _forward(encoder: TextEncoder, chunks: Sequence[Chunk], embeddings: Any, clip_skip: int) -> tuple[Any, Any]:
    """[chunks, 77, features] hidden states SDXL reads, and the pooled projection of the first chunk."""
    import torch

    model = encoder.model
    ids = torch.tensor([chunk.tokens for chunk in chunks], device=model.device)
    hook = _install_fixes(model, chunks, embeddings, encoder.key)
    try:
        out = model(ids, output_hidden_states=True)
    finally:
        if hook is not None:
            hook.remove()
    z = out.hidden_states[-(clip_skip + 1)]  # SDXL reads the penultimate layer: clip_skip 1 -> [-2]
    return z, (out[0][0] if out[0].dim() == 2 else None)  # text_embeds of the first chunk


def _install_fixes(model: Any, batch: Sequence[Chunk], embeddings: Any, key: str) -> Any:
    """A forward hook putting embedding vectors at their positions; None when the batch has none."""
    fixes = [(row, at, name) for row, chunk in enumerate(batch) for at, name in chunk.fixes]
    if not fixes:
        return None

    def replace(_module: Any, _inputs: Any, output: Any) -> Any:
        output = output.clone()
        for row, at, name in fixes:
            vectors = embeddings.loaded[name].tensors[key].to(device=output.device, dtype=output.dtype)
            vectors = vectors[: output.shape[1] - at]
            output[row, at : at + vectors.shape[0]] = vectors
        return output

    return model.get_input_embeddings().register_forward_hook(replace)
