"""The LoRA files under --lora-dir, named and listed as A1111 names them (headers only)."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["LoraFile", "LoraLibrary", "read_safetensors_metadata"]

log = logging.getLogger(__name__)

_EXTENSIONS = (".safetensors", ".pt", ".ckpt")
# A1111 shows these first (extensions-builtin/Lora/network.py), the rest in file order.
_METADATA_ORDER = {"ss_sd_model_name": 1, "ss_resolution": 2, "ss_clip_skip": 3, "ss_num_train_images": 10,
                   "ss_tag_frequency": 20}
_MAX_HEADER = 100 * 2**20  # safetensors' own bound on the JSON header
_HASHES: dict[tuple[str, int, int], str] = {}  # file version -> sha256 of its tensor data
_HASH_LOCK = threading.Lock()  # A1111 registers "lyco" as another name of the Lora network


@dataclass(frozen=True)
class LoraFile:
    name: str  # the file name without extension: what <lora:name:w> and A1111 call it
    alias: str  # ss_output_name from the training metadata, else the name
    path: Path
    metadata: dict[str, Any]
    tensor_bytes: int  # the tensors' size in the file (the cache's estimate before loading)
    size: int
    mtime_ns: int

    @property
    def key(self) -> tuple[str, int, int]:
        """Changes when the file does: a re-scan after an edit loads it afresh."""
        return str(self.path), self.size, self.mtime_ns

    @property
    def shorthash(self) -> str:
        """A1111's "Lora hashes" value: `sshs_model_hash` from the metadata, else the first 12 hex digits
        of the sha256 of the tensor data (kohya's hash: the file after its header). Read once per file
        version, on first use (the GPU thread, when an infotext names it)."""
        given = self.metadata.get("sshs_model_hash")
        if isinstance(given, str) and given:
            return given[:12]
        with _HASH_LOCK:
            known = _HASHES.get(self.key)
        if known is None:
            digest = hashlib.sha256()
            with self.path.open("rb") as f:
                f.seek(8 + int.from_bytes(f.read(8), "little"))
                for chunk in iter(lambda: f.read(2**20), b""):
                    digest.update(chunk)
            known = digest.hexdigest()
            with _HASH_LOCK:
                _HASHES[self.key] = known
        return known[:12]

    def as_a1111(self) -> dict[str, Any]:
        """One entry of GET /sdapi/v1/loras."""
        return {"name": self.name, "alias": self.alias, "path": str(self.path), "metadata": self.metadata}


def read_safetensors_metadata(path: Path) -> tuple[dict[str, Any], int]:
    """(`__metadata__` as A1111 shows it, bytes of tensor data) from the header alone."""
    with path.open("rb") as f:
        length = int.from_bytes(f.read(8), "little")
        if not 2 <= length <= _MAX_HEADER:
            raise ValueError(f"{path.name}: not a safetensors file (header length {length})")
        header = json.loads(f.read(length))
    if not isinstance(header, dict):
        raise ValueError(f"{path.name}: not a safetensors file (header is not an object)")
    raw = header.pop("__metadata__", None) or {}
    tensor_bytes = max((int(v["data_offsets"][1]) for v in header.values()
                        if isinstance(v, dict) and "data_offsets" in v), default=0)
    metadata: dict[str, Any] = {}
    for key, value in raw.items():
        if key == "ssmd_cover_images":  # base64 images: too big to list, A1111 drops them too
            continue
        if isinstance(value, str) and value.startswith("{"):
            with suppress(ValueError):
                value = json.loads(value)
        metadata[key] = value
    ordered = dict(sorted(metadata.items(), key=lambda item: _METADATA_ORDER.get(item[0], 999)))
    return ordered, tensor_bytes


def _walk(folder: Path) -> list[Path]:
    """LoRA-like files under `folder`, sorted; symlinked folders followed, as A1111's walk does
    (mounted volumes and Hugging Face snapshots are made of links)."""
    found = []
    for root, _dirs, names in os.walk(folder, followlinks=True):
        found += [Path(root, n) for n in names if Path(n).suffix.lower() in _EXTENSIONS]
    return sorted(p for p in found if p.is_file())


class LoraLibrary:
    """The LoRA files of one folder, re-read by `refresh()` (POST /sdapi/v1/refresh-loras)."""

    def __init__(self, folder: Path | None) -> None:
        self.folder = folder
        self._files: dict[str, LoraFile] = {}
        self._aliases: dict[str, LoraFile] = {}
        self._ambiguous: frozenset[str] = frozenset()
        self._lock = threading.Lock()
        self.refresh()

    @property
    def all(self) -> list[LoraFile]:
        return list(self._files.values())

    def refresh(self) -> None:
        files: dict[str, LoraFile] = {}
        if self.folder is not None and self.folder.is_dir():
            for path in _walk(self.folder):
                if path.suffix.lower() != ".safetensors":
                    log.warning("LoRA %s skipped: only .safetensors files are read (a %s file is a pickle, "
                                "and unpickling a downloaded file can run code)", path, path.suffix)
                    continue
                try:
                    stat = path.stat()
                    metadata, tensor_bytes = read_safetensors_metadata(path)
                except (OSError, ValueError) as exc:
                    log.warning("LoRA %s skipped: %s", path, exc)
                    continue
                name = path.stem
                alias = str(metadata.get("ss_output_name") or name)
                files[name] = LoraFile(name, alias, path, metadata, tensor_bytes, stat.st_size, stat.st_mtime_ns)
        elif self.folder is not None:
            log.warning("--lora-dir %s is not a folder: no LoRAs offered", self.folder)
        # A1111: an alias two files share (and "none") finds nothing; names always win.
        aliases: dict[str, LoraFile] = {}
        ambiguous = {"none"}
        for entry in files.values():
            if entry.alias in aliases and aliases[entry.alias] is not entry:
                ambiguous.add(entry.alias.lower())
            aliases[entry.alias] = entry
        with self._lock:
            self._files, self._aliases, self._ambiguous = files, aliases, frozenset(ambiguous)

    def find(self, name: str) -> LoraFile | None:
        with self._lock:
            files, aliases, ambiguous = self._files, self._aliases, self._ambiguous
        if name in files:
            return files[name]
        if name.lower() in ambiguous:
            return None
        return aliases.get(name)


