"""VAE choice (`--vae-dir`, A1111's `sd_vae` option): which VAE decodes a job's latents.

A1111 (1.9/1.10 `modules/sd_vae.py`, read for its behaviour) lists every VAE file under its VAE
folder by file name, and its `sd_vae` option says which one decodes:

* `"Automatic"` (or `"auto"`): a VAE file next to a single-file checkpoint and named after it
  (`model.safetensors` -> `model.vae.safetensors`) when there is one, else the checkpoint's own;
* `"None"`: the checkpoint's own VAE;
* a listed file name (`"sdxl_vae.safetensors"`): that VAE, for every checkpoint.

Here `sd_vae` may be set globally (POST /sdapi/v1/options) or per request (`override_settings`);
an unknown name is a 422 naming it (A1111 prints a warning and decodes with the checkpoint's own,
which would make a different image than asked for, silently).

What is listed: `.safetensors` files in the original (ldm/SGM) key layout, as `sdxl_vae.safetensors`
is (with or without the `first_stage_model.` prefix), or already in diffusers' layout; and
diffusers `AutoencoderKL` folders (`config.json` + weights), listed under the folder's name.
Pickled `.pt`/`.ckpt` files are not loaded (they can run code), as for checkpoints. The folder is
scanned on every listing and lookup (a directory walk), so files added later are found.

Loading builds the checkpoint's own VAE architecture (its config) and loads the file's weights
into it, converted with diffusers' ldm->diffusers mapping; a file that does not fit is a 422 naming
it. The module takes the device and dtype of the checkpoint's VAE (fp32 for an fp16 model, as the
checkpoint loader keeps it). The last few VAEs used stay loaded (LRU), keyed by file and stamp.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sdxlpool.errors import InvalidRequest
from sdxlpool.worker.checkpoints import Checkpoint, _sha256

__all__ = ["VaeEntry", "LoadedVae", "VaeSet", "AUTOMATIC", "NONE"]

log = logging.getLogger(__name__)

AUTOMATIC = "Automatic"
NONE = "None"
_AUTOMATIC_SPELLINGS = frozenset({"Automatic", "auto"})
_DIFFUSERS_WEIGHTS = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.fp16.safetensors")


@dataclass(frozen=True)
class VaeEntry:
    name: str  # the file name (A1111's key), or a diffusers folder's name
    path: Path

    def as_a1111(self) -> dict[str, str]:
        """One entry of GET /sdapi/v1/sd-vae."""
        return {"model_name": self.name, "filename": str(self.path)}


@dataclass(frozen=True)
class LoadedVae:
    name: str
    short_hash: str  # sha256 of the file, first 10 hex digits (A1111's "VAE hash")
    module: Any  # diffusers AutoencoderKL, on the checkpoint VAE's device and dtype


class VaeSet:
    def __init__(self, folder: Path | None, cache_dir: Path, *, max_loaded: int = 2) -> None:
        self.folder = folder.expanduser() if folder is not None else None
        self.cache_dir = cache_dir
        self.max_loaded = max_loaded
        self._loaded: OrderedDict[tuple[Any, ...], LoadedVae] = OrderedDict()
        self._lock = threading.Lock()

    # -- what there is ------------------------------------------------------------------------------
    def entries(self) -> list[VaeEntry]:
        """The VAEs of the folder, in A1111's natural order of names."""
        if self.folder is None or not self.folder.is_dir():
            return []
        found: dict[str, Path] = {}
        folders = {config.parent for config in self.folder.rglob("config.json") if _is_diffusers_vae(config.parent)}
        for folder in folders:
            found[folder.name] = folder
        for file in self.folder.rglob("*.safetensors"):
            if file.is_file() and not any(parent in folders for parent in file.parents):
                found[file.name] = file
        return [VaeEntry(name, found[name]) for name in sorted(found, key=_natural_key)]

    def check(self, value: Any, *, field: str) -> str:
        """An `sd_vae` value as given, checked: "Automatic", "None" or a listed name; else 422."""
        if not isinstance(value, str):
            raise InvalidRequest(field, f"must be a VAE name, \"Automatic\" or \"None\", got {value!r}")
        if value in _AUTOMATIC_SPELLINGS or value == NONE or self._find(value) is not None:
            return value
        listed = ", ".join(entry.name for entry in self.entries()) or "none; see --vae-dir"
        raise InvalidRequest(field, f"no VAE named {value!r} (available: Automatic, None, {listed})")

    def choose(self, value: str, checkpoint: Checkpoint, *, field: str = "sd_vae") -> VaeEntry | None:
        """The VAE file `value` means for `checkpoint`; None: the checkpoint's own VAE."""
        if value == NONE:
            return None
        if value in _AUTOMATIC_SPELLINGS:
            return _next_to(checkpoint.path)
        entry = self._find(value)
        if entry is None:
            self.check(value, field=field)  # raises, naming what there is
        return entry

    def _find(self, name: str) -> VaeEntry | None:
        return next((entry for entry in self.entries() if entry.name == name), None)

    # -- loading ------------------------------------------------------------------------------------
    def load(self, entry: VaeEntry, like: Any, *, field: str = "sd_vae") -> LoadedVae:
        """`entry`'s weights in the architecture of `like` (the checkpoint's AutoencoderKL); blocking."""
        stat = entry.path.stat()
        key = (str(entry.path.resolve()), stat.st_mtime_ns, stat.st_size, json.dumps(dict(like.config), sort_keys=True,
               default=str), str(like.device), str(like.dtype))
        with self._lock:
            loaded = self._loaded.get(key)
            if loaded is not None:
                self._loaded.move_to_end(key)
                return loaded
            module = _load_module(entry, like, field)
            loaded = LoadedVae(entry.name, _sha256(entry.path, self.cache_dir)[:10], module)
            self._loaded[key] = loaded
            while len(self._loaded) > self.max_loaded:
                self._loaded.popitem(last=False)
            log.info("VAE %s loaded (%s)", entry.name, entry.path)
            return loaded


def _next_to(checkpoint: Path) -> VaeEntry | None:
    """A1111's VAE "near the checkpoint": model.safetensors -> model.vae.safetensors."""
    if not checkpoint.is_file():
        return None
    candidate = checkpoint.with_name(checkpoint.stem + ".vae.safetensors")
    return VaeEntry(candidate.name, candidate) if candidate.is_file() else None


def _is_diffusers_vae(folder: Path) -> bool:
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return False
    return (isinstance(config, dict) and config.get("_class_name") == "AutoencoderKL"
            and any((folder / name).is_file() for name in _DIFFUSERS_WEIGHTS))


def _natural_key(name: str) -> list[Any]:
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def _load_module(entry: VaeEntry, like: Any, field: str) -> Any:
    from diffusers import AutoencoderKL
    from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint
    from safetensors.torch import load_file

    path = entry.path
    if path.is_dir():
        weights = next(path / name for name in _DIFFUSERS_WEIGHTS if (path / name).is_file())
        state = load_file(str(weights))
    else:
        state = load_file(str(path))
        if not any(key.startswith("encoder.down_blocks.") for key in state):  # the ldm layout: convert
            state = convert_ldm_vae_checkpoint(state, dict(like.config))
    module = AutoencoderKL.from_config(like.config)
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[1:2] or [str(exc)]
        raise InvalidRequest(field, f"VAE {entry.name!r} does not fit this checkpoint's VAE: {first[0].strip()}") from None
    module.requires_grad_(False)
    if module.dtype != like.dtype:  # (diffusers warns on any dtype cast, even to the same type)
        module.to(dtype=like.dtype)
    return module.to(device=like.device).eval()
