"""From prompt text to token chunks with a Hugging Face CLIP tokenizer (the I/O edge of `chunks`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sdxlpool.prompts import BREAK, parse_attention
from sdxlpool.worker.conditioning.chunks import Chunk, Matcher, SpecialIds, build_chunks

__all__ = ["special_ids", "tokenize_runs", "prompt_chunks", "empty_chunk"]


def special_ids(tokenizer: Any) -> SpecialIds:
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    return SpecialIds(bos=tokenizer.bos_token_id, eos=tokenizer.eos_token_id, pad=pad,
                      comma=tokenizer.get_vocab().get(",</w>"))


def tokenize_runs(runs: Sequence[tuple[str, float]], tokenizer: Any) -> list[tuple[list[int] | None, float]]:
    """Each run's token ids (no start/end tokens, no truncation); a BREAK run becomes (None, weight)."""
    texts = [text for text, weight in runs if not _is_break(text, weight)]
    ids = iter(tokenizer(texts, add_special_tokens=False, truncation=False)["input_ids"] if texts else [])
    return [(None, weight) if _is_break(text, weight) else (list(next(ids)), weight) for text, weight in runs]


def prompt_chunks(text: str, tokenizer: Any, match: Matcher | None = None) -> list[Chunk]:
    """A1111's chunks of one prompt text (attention parsed, BREAKs applied, embeddings matched)."""
    return build_chunks(tokenize_runs(parse_attention(text), tokenizer), special_ids(tokenizer), match)


def empty_chunk(tokenizer: Any) -> Chunk:
    """The chunk A1111 fills a shorter prompt's batch with: start, end, then padding."""
    return build_chunks([([], 1.0)], special_ids(tokenizer))[0]


def _is_break(text: str, weight: float) -> bool:
    return text == BREAK and weight == -1.0
