"""Textual-inversion embeddings from `--embeddings-dir`, as A1111 loads and lists them.

An SDXL embedding file holds two tensors, `clip_l` [n, 768] and `clip_g` [n, 1280]: n vectors for
each text encoder. Its name is the file's stem; a prompt uses it by writing the name, which A1111
matches on the name's token ids (`EmbeddingDatabase.matcher`). Files in an older format (SD 1.5's
`string_to_param`, or one tensor of another width) are listed as skipped, as A1111 lists embeddings
that do not fit the loaded model; files that are no embedding at all are logged and left out.

`GET /sdapi/v1/embeddings` returns `EmbeddingDatabase.as_a1111()`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sdxlpool.worker.conditioning.chunks import EmbeddingMatch, Matcher

__all__ = ["Embedding", "EmbeddingDatabase", "load_embeddings", "SUFFIXES"]

log = logging.getLogger(__name__)

SUFFIXES = (".safetensors", ".pt", ".bin")
SDXL_KEYS = ("clip_l", "clip_g")  # one tensor per text encoder: SDXL's first, then its second


@dataclass(frozen=True)
class Embedding:
    name: str
    path: Path
    tensors: dict[str, Any]  # "clip_l"/"clip_g" -> [vectors, width] float32 tensors (other formats: one)
    shape: int  # the widths together, as A1111 reports it (2048 for SDXL)
    vectors: int
    step: int | None = None
    sd_checkpoint: str | None = None
    sd_checkpoint_name: str | None = None

    def as_a1111(self) -> dict[str, Any]:
        return {"step": self.step, "sd_checkpoint": self.sd_checkpoint,
                "sd_checkpoint_name": self.sd_checkpoint_name, "shape": self.shape, "vectors": self.vectors}


@dataclass
class EmbeddingDatabase:
    loaded: dict[str, Embedding] = field(default_factory=dict)
    skipped: dict[str, Embedding] = field(default_factory=dict)
    _lookups: dict[int, tuple[Any, dict[int, list[tuple[list[int], Embedding]]]]] = field(
        default_factory=dict, repr=False)

    def as_a1111(self) -> dict[str, Any]:
        return {"loaded": {n: e.as_a1111() for n, e in self.loaded.items()},
                "skipped": {n: e.as_a1111() for n, e in self.skipped.items()}}

    def matcher(self, tokenizer: Any) -> Matcher:
        """Finds a loaded embedding's name at a position of a token list (longest name first)."""
        lookup = self._lookup(tokenizer)

        def match(tokens: Sequence[int], position: int) -> EmbeddingMatch | None:
            for ids, embedding in lookup.get(tokens[position], ()):
                if list(tokens[position : position + len(ids)]) == ids:
                    return EmbeddingMatch(embedding.name, embedding.vectors, len(ids))
            return None

        return match

    def _lookup(self, tokenizer: Any) -> dict[int, list[tuple[list[int], Embedding]]]:
        cached = self._lookups.get(id(tokenizer))
        if cached is not None and cached[0] is tokenizer:
            return cached[1]
        lookup: dict[int, list[tuple[list[int], Embedding]]] = {}
        for embedding in self.loaded.values():
            ids = list(tokenizer([embedding.name], add_special_tokens=False)["input_ids"][0])
            if ids:
                lookup.setdefault(ids[0], []).append((ids, embedding))
        for entries in lookup.values():
            entries.sort(key=lambda entry: len(entry[0]), reverse=True)
        self._lookups[id(tokenizer)] = (tokenizer, lookup)
        return lookup


def load_embeddings(folder: Path | None, widths: tuple[int, int] | None = None) -> EmbeddingDatabase:
    """Every embedding file under `folder`; `widths`: the text encoders' (768, 1280), None: any SDXL."""
    db = EmbeddingDatabase()
    if folder is None or not folder.is_dir():
        return db
    for path in sorted(p for p in folder.rglob("*") if p.suffix.lower() in SUFFIXES and p.is_file()):
        if path.stat().st_size == 0:
            continue
        try:
            embedding = read_embedding(path)
        except Exception as exc:  # a foreign file: A1111 prints the error and goes on
            log.warning("embedding %s not loaded: %s", path, exc)
            continue
        fits = set(SDXL_KEYS) <= set(embedding.tensors) and (
            widths is None or tuple(int(embedding.tensors[k].shape[-1]) for k in SDXL_KEYS) == tuple(widths))
        (db.loaded if fits else db.skipped)[embedding.name] = embedding
    return db


def read_embedding(path: Path) -> Embedding:
    """One file, in any of the formats A1111 reads: SDXL {clip_l, clip_g}, string_to_param, one tensor."""
    import torch

    if path.suffix.lower() == ".safetensors":
        from safetensors.torch import load_file

        data: dict[str, Any] = load_file(str(path), device="cpu")
    else:
        data = torch.load(str(path), map_location="cpu", weights_only=True)
    if not isinstance(data, dict):
        raise ValueError("not an embedding: the file holds no dictionary")
    if "string_to_param" in data:
        params = data["string_to_param"]
        params = getattr(params, "_parameters", params)
        if len(params) != 1:
            raise ValueError("embedding file has multiple terms in it")
        tensors = {"emb": next(iter(params.values())).detach().float()}
    elif all(k in data for k in SDXL_KEYS):
        tensors = {k: v.detach().float() for k, v in data.items() if isinstance(v, torch.Tensor)}
    elif len(data) == 1 and isinstance(next(iter(data.values())), torch.Tensor):
        tensor = next(iter(data.values())).detach().float()
        tensors = {"emb": tensor.unsqueeze(0) if tensor.dim() == 1 else tensor}
    else:
        raise ValueError("neither a textual-inversion embedding nor a diffusers concept")
    if set(SDXL_KEYS) <= set(tensors):
        shape = sum(int(tensors[k].shape[-1]) for k in SDXL_KEYS)
        vectors = int(tensors["clip_g"].shape[0])
    else:
        shape, vectors = int(tensors["emb"].shape[-1]), int(tensors["emb"].shape[0])

    def text(key: str) -> str | None:
        value = data.get(key)
        return value if isinstance(value, str) else None

    step = data.get("step")
    return Embedding(name=path.stem, path=path, tensors=tensors, shape=shape, vectors=vectors,
                     step=step if isinstance(step, int) else None, sd_checkpoint=text("sd_checkpoint"),
                     sd_checkpoint_name=text("sd_checkpoint_name"))
