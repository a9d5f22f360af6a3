"""CLIP tokenizer files built from the BPE table that ships inside the package.

SDXL uses OpenAI's CLIP byte-level BPE for both text encoders. Single-file checkpoints (the
`.safetensors` files A1111 users download) carry no tokenizer, and the worker must never reach a
model hub, so we rebuild the Hugging Face `vocab.json` + `merges.txt` pair from
`configs/clip/bpe_simple_vocab_16e6.txt.gz` (the file open_clip and OpenAI's CLIP ship, MIT
licensed) exactly the way CLIP's own `SimpleTokenizer` orders its vocabulary, so the token ids are
the ones the real text encoders were trained with.

`write_clip_tokenizer(folder, merges=N)` with a small N gives the tiny test model a real (coarser)
BPE with a vocabulary of a few hundred tokens.
"""

from __future__ import annotations

import gzip
import json
from functools import lru_cache
from importlib import resources
from pathlib import Path

__all__ = ["CLIP_FULL_MERGES", "write_clip_tokenizer"]

# CLIP keeps the first 49152 - 256 - 2 merges of the table (see open_clip's SimpleTokenizer).
CLIP_FULL_MERGES = 49152 - 256 - 2
_BOS, _EOS = "<|startoftext|>", "<|endoftext|>"


@lru_cache(maxsize=1)
def _bpe_merges() -> tuple[tuple[str, str], ...]:
    raw = resources.files("sdxlpool.worker").joinpath("configs/clip/bpe_simple_vocab_16e6.txt.gz").read_bytes()
    lines = gzip.decompress(raw).decode("utf-8").split("\n")
    return tuple(tuple(line.split()) for line in lines[1 : CLIP_FULL_MERGES + 1])  # type: ignore[misc]


def _bytes_to_unicode() -> list[str]:
    """GPT-2/CLIP's reversible byte -> printable character table, in CLIP's vocabulary order."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    codes, extra = list(printable), 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            codes.append(256 + extra)
            extra += 1
    return [chr(c) for c in codes]


def clip_vocabulary(merges: int = CLIP_FULL_MERGES) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Token -> id mapping and merge list for the first `merges` BPE merges."""
    if not 0 <= merges <= CLIP_FULL_MERGES:
        raise ValueError(f"merges must be between 0 and {CLIP_FULL_MERGES}, got {merges}")
    table = list(_bpe_merges()[:merges])
    chars = _bytes_to_unicode()
    tokens = chars + [c + "</w>" for c in chars] + ["".join(pair) for pair in table] + [_BOS, _EOS]
    return {token: i for i, token in enumerate(tokens)}, table


def write_clip_tokenizer(folder: Path, *, merges: int = CLIP_FULL_MERGES, pad_token: str = _EOS) -> int:
    """Write a Hugging Face CLIPTokenizer folder; returns the vocabulary size.

    SDXL's second tokenizer pads with "!" instead of the end token; pass `pad_token="!"` for it.
    """
    vocab, table = clip_vocabulary(merges)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    merges_text = "#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in table)
    (folder / "merges.txt").write_text(merges_text, encoding="utf-8")
    config = {
        "tokenizer_class": "CLIPTokenizer",
        "model_max_length": 77,
        "bos_token": _BOS,
        "eos_token": _EOS,
        "unk_token": _EOS,
        "pad_token": pad_token,
        "do_lower_case": True,
        "clean_up_tokenization_spaces": True,
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    special = {"bos_token": _BOS, "eos_token": _EOS, "unk_token": _EOS, "pad_token": pad_token}
    (folder / "special_tokens_map.json").write_text(json.dumps(special, indent=2), encoding="utf-8")
    return len(vocab)
