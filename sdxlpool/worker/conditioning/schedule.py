"""Conditioning per sampling step: prompt editing and alternation for one pipeline (torch).

`build_conditioning` encodes the texts of the prompt's and the negative prompt's schedules
(`sdxlpool.prompts.prompt_schedule`: `[(end_at_step, text), ...]`), each distinct text once, pads
all of them to the same number of chunks with the encoding of an empty prompt (A1111's
pad_cond_uncond), and answers which tensors are in force at a step. A negative prompt that is
empty at every step is zeros, as SDXL's `force_zeros_for_empty_prompt` (diffusers) and A1111's
`force_zero_negative_prompt` make it.

Steps are A1111's: its CFG denoiser counts every model evaluation (0-based) over the whole run,
refiner included, which is the loop index of diffusers' pipelines (second-order samplers run two
iterations per step in both).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sdxlpool.worker.conditioning.encode import Encoded, TextEncoder, encode_group

__all__ = ["entry_at", "Side", "StepConditioning", "BatchConditioning", "Conditioning", "build_conditioning"]


def entry_at(ends: Sequence[int], step: int) -> int:
    """Index of the schedule entry in force at `step`: the first whose end is >= step (else the last)."""
    for i, end in enumerate(ends):
        if step <= end:
            return i
    return len(ends) - 1


@dataclass(frozen=True)
class Side:
    """The prompt's (or the negative prompt's) schedule, encoded: one tensor pair per entry."""

    ends: tuple[int, ...]
    embeds: tuple[Any, ...]  # [77 * chunks, features], the same chunk count on both sides
    pooled: tuple[Any, ...]  # [projection]

    def at(self, step: int) -> int:
        return entry_at(self.ends, step)


@dataclass(frozen=True)
class StepConditioning:
    prompt: Side
    negative: Side

    def key(self, step: int) -> tuple[int, int]:
        return self.prompt.at(step), self.negative.at(step)

    def pipeline_kwargs(self, step: int) -> dict[str, Any]:
        """prompt_embeds & co. for a diffusers SDXL pipeline call starting at `step` (one image's)."""
        p, n = self.key(step)
        return {
            "prompt_embeds": self.prompt.embeds[p].unsqueeze(0),
            "pooled_prompt_embeds": self.prompt.pooled[p].unsqueeze(0),
            "negative_prompt_embeds": self.negative.embeds[n].unsqueeze(0),
            "negative_pooled_prompt_embeds": self.negative.pooled[n].unsqueeze(0),
        }

    def step_tensors(self, step: int, images: int, guidance: bool, like: dict[str, Any]) -> dict[str, Any]:
        """The pipeline's own `prompt_embeds`/`add_text_embeds` for `step`: [negative..., positive...]
        per image with classifier-free guidance, positive only without; dtype/device of `like`."""
        import torch

        p, n = self.key(step)

        def layout(positive: Any, negative: Any, current: Any) -> Any:
            rows = [positive.unsqueeze(0).expand(images, *positive.shape)]
            if guidance:
                rows.insert(0, negative.unsqueeze(0).expand(images, *negative.shape))
            return torch.cat(rows).to(device=current.device, dtype=current.dtype)

        return {
            "prompt_embeds": layout(self.prompt.embeds[p], self.negative.embeds[n], like["prompt_embeds"]),
            "add_text_embeds": layout(self.prompt.pooled[p], self.negative.pooled[n], like["add_text_embeds"]),
        }


class BatchConditioning:
    """Several requests' conditioning side by side, one image each, for one batched pipeline call
    (the worker's --batch-max): each row is its own prompt's, at its own schedule's step, so a row
    gets exactly the tensors it would get alone. The embeddings must have the same chunk count
    (`chunks`): padding one to match another would change its image."""

    def __init__(self, members: Sequence[StepConditioning]) -> None:
        self.members = tuple(members)

    def key(self, step: int) -> tuple[tuple[int, int], ...]:
        return tuple(member.key(step) for member in self.members)

    def pipeline_kwargs(self, step: int) -> dict[str, Any]:
        """As `StepConditioning.pipeline_kwargs`, one row per member (num_images_per_prompt = 1)."""
        import torch

        parts = [member.pipeline_kwargs(step) for member in self.members]
        return {name: torch.cat([part[name] for part in parts]) for name in parts[0]}

    def step_tensors(self, step: int, images: int, guidance: bool, like: dict[str, Any]) -> dict[str, Any]:
        """As `StepConditioning.step_tensors` for one image per member: with guidance the pipeline's
        layout is every member's negative, then every member's positive."""
        import torch

        parts = [member.step_tensors(step, 1, guidance, like) for member in self.members]
        halves = 2 if guidance else 1
        return {name: torch.cat([part[name][h:h + 1] for h in range(halves) for part in parts])
                for name in parts[0]}


Conditioning = StepConditioning | BatchConditioning


def chunks(conditioning: StepConditioning) -> tuple[int, ...]:
    """The shape of the conditioning's embeddings: members of a batch must agree on it."""
    return tuple(conditioning.prompt.embeds[0].shape)


def build_conditioning(
    prompt_schedule: Sequence[tuple[int, str]], negative_schedule: Sequence[tuple[int, str]],
    encoders: Sequence[TextEncoder], embeddings: Any = None, clip_skip: int = 1,
) -> StepConditioning:
    import torch

    positive = _encode_schedule(prompt_schedule, encoders, embeddings, clip_skip)
    zero_negative = all(text == "" for _, text in negative_schedule)
    negative = None if zero_negative else _encode_schedule(negative_schedule, encoders, embeddings, clip_skip)
    encoded = [*positive, *(negative or [])]
    chunks = max(e.chunks for e in encoded)
    empty: Any = None
    if any(e.chunks < chunks for e in encoded):
        empty = encode_group([""], encoders, embeddings, clip_skip)[0].embeds

    def padded(e: Encoded) -> Any:
        missing = chunks - e.chunks
        return torch.cat([e.embeds, *([empty] * missing)]) if missing else e.embeds

    prompt_side = Side(tuple(end for end, _ in prompt_schedule), tuple(padded(e) for e in positive),
                       tuple(e.pooled for e in positive))
    if negative is None:
        zeros = torch.zeros_like(prompt_side.embeds[0])
        negative_side = Side((max(end for end, _ in negative_schedule),), (zeros,),
                             (torch.zeros_like(prompt_side.pooled[0]),))
    else:
        negative_side = Side(tuple(end for end, _ in negative_schedule), tuple(padded(e) for e in negative),
                             tuple(e.pooled for e in negative))
    return StepConditioning(prompt_side, negative_side)


def _encode_schedule(
    schedule: Sequence[tuple[int, str]], encoders: Sequence[TextEncoder], embeddings: Any, clip_skip: int,
) -> list[Encoded]:
    """One Encoded per schedule entry; each distinct text encoded once, counted as often as it occurs."""
    texts = [text for _, text in schedule]
    distinct = list(dict.fromkeys(texts))
    counts = [texts.count(text) for text in distinct]
    encoded = dict(zip(distinct, encode_group(distinct, encoders, embeddings, clip_skip, counts), strict=True))
    return [encoded[text] for text in texts]
