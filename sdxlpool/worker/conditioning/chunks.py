"""Token chunks as A1111 builds them for the SDXL text encoders (no torch here).

A prompt's weighted runs of text (from `sdxlpool.prompts.parse_attention`) are tokenized and laid
out in chunks of 75 tokens, each later encoded on its own as `[BOS] + 75 tokens + [EOS]` (77 ids)
and the chunks' features concatenated, so a prompt has no length limit:

* every token keeps the weight of the run it came from; start, end and padding tokens weigh 1;
* when a chunk is full and a comma came within the last `COMMA_BACKTRACK` tokens, the tokens after
  that comma move on to the next chunk (with their weights), so a phrase is not cut in two;
* `BREAK` closes the current chunk (padded) and starts the next;
* a textual-inversion embedding whose name appears as tokens takes that many positions as its
  vectors have; it is never split between chunks (it moves whole to the next one), and the
  encoder puts its vectors at those positions (`Chunk.fixes`);
* an empty prompt is one chunk.

Padding: after the end token, SDXL's first encoder repeats the end token and the second uses
token 0 ("!"), as the tokenizers' own pad tokens say.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

__all__ = ["CHUNK_LENGTH", "COMMA_BACKTRACK", "Chunk", "SpecialIds", "EmbeddingMatch", "build_chunks"]

CHUNK_LENGTH = 75  # prompt tokens per chunk; with start and end tokens, CLIP's 77
COMMA_BACKTRACK = 20  # A1111's comma_padding_backtrack default
PLACEHOLDER = 0  # the id standing where an embedding's vectors go (the encoder replaces its features)


@dataclass(frozen=True)
class SpecialIds:
    bos: int
    eos: int
    pad: int
    comma: int | None  # ",</w>"; None when the vocabulary has none (no backtracking then)


@dataclass(frozen=True)
class EmbeddingMatch:
    name: str
    vectors: int  # positions the embedding takes in the chunk
    length: int  # prompt tokens its name spans


# (tokens of a run, position) -> the embedding whose name starts there, or None.
Matcher = Callable[[Sequence[int], int], "EmbeddingMatch | None"]


@dataclass
class Chunk:
    tokens: list[int]  # 77 ids: start, 75 prompt or padding tokens, end
    multipliers: list[float]  # one weight per id
    fixes: list[tuple[int, str]] = field(default_factory=list)  # (position in the 77, embedding name)


@dataclass
class _Open:
    tokens: list[int] = field(default_factory=list)
    multipliers: list[float] = field(default_factory=list)
    fixes: list[tuple[int, str]] = field(default_factory=list)  # positions within `tokens`


def build_chunks(
    runs: Sequence[tuple[Sequence[int] | None, float]], ids: SpecialIds, match: Matcher | None = None,
) -> list[Chunk]:
    """Chunks for tokenized runs `[(token_ids, weight), ...]`; `(None, _)` is a BREAK."""
    chunks: list[Chunk] = []
    current = _Open()
    last_comma = -1  # index in current.tokens of the last comma, -1: none since the chunk began

    def close() -> None:
        nonlocal current, last_comma
        chunks.append(_finish(current, ids))
        current, last_comma = _Open(), -1

    for tokens, weight in runs:
        if tokens is None:
            close()
            continue
        position = 0
        while position < len(tokens):
            token = tokens[position]
            if token == ids.comma:
                last_comma = len(current.tokens)
            elif (len(current.tokens) == CHUNK_LENGTH and last_comma != -1
                  and len(current.tokens) - last_comma <= COMMA_BACKTRACK):
                # Full, with a comma close behind: what follows the comma starts the next chunk.
                cut = last_comma + 1
                moved = _Open(current.tokens[cut:], current.multipliers[cut:],
                              [(at - cut, name) for at, name in current.fixes if at >= cut])
                current.tokens, current.multipliers = current.tokens[:cut], current.multipliers[:cut]
                current.fixes = [(at, name) for at, name in current.fixes if at < cut]
                close()
                current = moved
            if len(current.tokens) == CHUNK_LENGTH:
                close()
            found = match(tokens, position) if match is not None else None
            if found is None:
                current.tokens.append(token)
                current.multipliers.append(weight)
                position += 1
                continue
            vectors = min(found.vectors, CHUNK_LENGTH)
            if len(current.tokens) + vectors > CHUNK_LENGTH:
                close()  # an embedding is never split: it moves whole to the next chunk
            current.fixes.append((len(current.tokens), found.name))
            current.tokens += [PLACEHOLDER] * vectors
            current.multipliers += [weight] * vectors
            position += found.length
    if current.tokens or not chunks:
        close()
    return chunks


def _finish(chunk: _Open, ids: SpecialIds) -> Chunk:
    padding = CHUNK_LENGTH - len(chunk.tokens)
    return Chunk(
        tokens=[ids.bos, *chunk.tokens, ids.eos] + [ids.pad] * padding,
        multipliers=[1.0, *chunk.multipliers] + [1.0] * (padding + 1),
        fixes=[(at + 1, name) for at, name in chunk.fixes],
    )
