"""LoRAs: the files in --lora-dir, the prompt's `<lora:name:w>` calls, and the adapters on the GPU.

Three parts, top to bottom:

* **The library** (`LoraLibrary`): the `.safetensors` files under `--lora-dir` (recursively), named
  as A1111 names them: `name` is the file name without its extension, `alias` the `ss_output_name`
  of kohya's training metadata (else the name), `metadata` the safetensors header's `__metadata__`
  (values that are JSON objects parsed, cover images dropped, A1111's display order). Only the
  header is read. `.pt`/`.ckpt` files are skipped with a log line: they are pickles, and
  unpickling a downloaded file can run code. A request finds a LoRA by name, or by alias when no
  two files share it (A1111's rule); a name not found triggers one re-scan, as A1111 does.
* **Resolving** (`resolve_loras`, pure): the calls `extract_networks` took out of the prompt ->
  the LoRAs to apply with their text-encoder and UNet multipliers, and the `ignored` entries for
  the rest ("prompt: <lora:x:1> (no such LoRA)"). The same LoRA twice adds its multipliers (A1111
  applies it twice; a LoRA's change is linear in its multiplier).
* **The adapters** (`LoraAdapters`, GPU thread only): LoRAs loaded into a base pipeline through
  diffusers' PEFT backend (`load_lora_weights`, which converts kohya's key layout), kept in an LRU
  cache bounded by `--lora-cache-mb` (the adapters' tensor bytes on the device). `applied(...)` is
  a context manager around one job's base pass: it loads what is missing, activates exactly the
  job's adapters with their multipliers per component (a component whose multiplier is 0 does not
  run that adapter at all, so weight 0 is the baseline exactly), and on the way out, whatever
  happened, disables every adapter: the next job runs the unchanged weights. Nothing is merged into
  the weights, so there is nothing to restore and no rounding drift.

The refiner gets no LoRA: a kohya SDXL LoRA is trained for the base UNet (the refiner's has other
shapes) and A1111 does not apply it to the refiner either. Its text_encoder_2 is the base's module
(shared, see checkpoints.py), so the refiner's text must be encoded outside `applied(...)`, where
every adapter is off; `generate()` does so.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import threading
import warnings
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sdxlpool.errors import InvalidRequest
from sdxlpool.prompts import NetworkCall
from sdxlpool.worker.conditioning.text import LORA_KINDS

__all__ = ["LoraFile", "LoraLibrary", "LoraUse", "LoraAdapters", "resolve_loras", "infotext_hashes",
           "read_safetensors_metadata"]

log = logging.getLogger(__name__)

_EXTENSIONS = (".safetensors", ".pt", ".ckpt")
# A1111 shows these first (extensions-builtin/Lora/network.py), the rest in file order.
_METADATA_ORDER = {"ss_sd_model_name": 1, "ss_resolution": 2, "ss_clip_skip": 3, "ss_num_train_images": 10,
                   "ss_tag_frequency": 20}
_MAX_HEADER = 100 * 2**20  # safetensors' own bound on the JSON header
_HASHES: dict[tuple[str, int, int], str] = {}  # file version -> sha256 of its tensor data
_HASH_LOCK = threading.Lock()  # A1111 registers "lyco" as another name of the Lora network


# -- the library -------------------------------------------------------------------------------------
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


# -- resolving a prompt's calls ------------------------------------------------------------------------
@dataclass(frozen=True)
class LoraUse:
    """One LoRA a job applies: the file and its multipliers (text encoders, UNet)."""

    file: LoraFile
    te: float
    unet: float
    mentioned: str = ""  # how the prompt named it (name or alias)


def infotext_hashes(uses: Sequence[LoraUse]) -> str | None:
    """A1111's `Lora hashes` infotext value: "name: hash, ..." by the name the prompt used."""
    parts = [f"{use.mentioned.translate(_NOT_IN_HASH_NAMES)}: {use.file.shorthash}" for use in uses]
    return ", ".join(parts) or None


_NOT_IN_HASH_NAMES = str.maketrans("", "", ":,")


def resolve_loras(calls: Sequence[NetworkCall], find: Any) -> tuple[tuple[LoraUse, ...], list[str]]:
    """The LoRAs to apply and the `ignored` entries; `find(name) -> LoraFile | None`.

    Pure but for `find`. A LoRA that is not found, or whose multipliers are not finite, is listed
    and left out. Other network kinds (hypernetworks, ...) are skipped: the prompt's text
    (`worker.conditioning.text`) lists them.
    """
    uses: dict[str, LoraUse] = {}
    ignored: list[str] = []
    for call in calls:
        if call.kind not in LORA_KINDS:
            continue
        if not (math.isfinite(call.te_multiplier) and math.isfinite(call.unet_multiplier)):
            ignored.append(f"prompt: {call.raw} (the multiplier is not a finite number)")
            continue
        found = find(call.name)
        if found is None:
            ignored.append(f"prompt: {call.raw} (no such LoRA)")
            continue
        if "dyn" in call.named:
            ignored.append(f"prompt: {call.raw} (dyn, a LyCORIS dimension, is not applied)")
        before = uses.get(found.name)
        if before is not None:  # the same LoRA twice: its changes add up
            uses[found.name] = LoraUse(found, before.te + call.te_multiplier, before.unet + call.unet_multiplier,
                                       before.mentioned)
        else:
            uses[found.name] = LoraUse(found, call.te_multiplier, call.unet_multiplier, call.name)
    return tuple(uses.values()), ignored


# -- the adapters on the device -----------------------------------------------------------------------
_COMPONENTS = ("unet", "text_encoder", "text_encoder_2")


@dataclass
class _Held:
    adapter: str  # PEFT adapter name in the pipeline's modules
    file: LoraFile
    pipeline: Any
    bytes: int = 0
    components: tuple[str, ...] = field(default_factory=tuple)


class LoraAdapters:
    """LoRAs loaded into base pipelines, least recently used first, within `limit_bytes`.

    All methods but `loaded()` run on the worker's one GPU thread. The bound holds between jobs;
    during a job the job's own LoRAs stay, even when they alone exceed it (with a bound of 0 every
    LoRA is loaded for its job and dropped after it).
    """

    def __init__(self, limit_bytes: int) -> None:
        self.limit_bytes = limit_bytes
        self._held: OrderedDict[tuple[int, tuple[str, int, int]], _Held] = OrderedDict()
        self._counter = 0
        self._snapshot: tuple[LoraFile, ...] = ()  # what loaded() reports, swapped whole

    def loaded(self) -> tuple[LoraFile, ...]:
        """The LoRA files held loaded (any thread: a scrape reads this)."""
        return self._snapshot

    @property
    def held_bytes(self) -> int:
        return sum(h.bytes for h in self._held.values())

    @contextmanager
    def applied(self, pipeline: Any, uses: Sequence[LoraUse]) -> Iterator[None]:
        """`uses` active in `pipeline` inside the block; every adapter off after it, whatever happened."""
        uses = [use for use in uses if use.te or use.unet]  # at weight 0 nothing is loaded, nothing runs
        if not uses:
            yield
            return
        try:
            active = [(self._ensure(pipeline, use, keep=uses), use) for use in uses]
            _activate(pipeline, active)
            yield
        finally:
            _deactivate(pipeline)
            self._evict(keep=())

    def _ensure(self, pipeline: Any, use: LoraUse, keep: Sequence[LoraUse]) -> _Held:
        key = (id(pipeline.unet), use.file.key)
        held = self._held.get(key)
        if held is not None:
            self._held.move_to_end(key)
            return held
        self._evict(keep=keep, room_for=use.file.tensor_bytes)
        self._counter += 1
        held = _Held(f"sdxlpool_lora_{self._counter}", use.file, pipeline)
        try:
            _load(pipeline, use.file, held.adapter)
        except Exception as exc:
            _delete(pipeline, held.adapter)
            log.warning("LoRA %s could not be loaded: %s", use.file.path, exc)
            raise InvalidRequest("prompt", f"<lora:{use.mentioned}>: the file {use.file.path.name} could not be "
                                           f"loaded as an SDXL LoRA ({exc})") from None
        held.components, held.bytes = _footprint(pipeline, held.adapter)
        self._held[key] = held
        self._publish()
        log.info("LoRA %s loaded (%.1f MB; %.1f MB held)", use.file.name, held.bytes / 2**20, self.held_bytes / 2**20)
        return held

    def _evict(self, keep: Sequence[LoraUse], room_for: int = 0) -> None:
        kept = {use.file.key for use in keep}
        for key in list(self._held):
            if self.held_bytes + room_for <= self.limit_bytes:
                break
            held = self._held[key]
            if held.file.key in kept:
                continue
            del self._held[key]
            _delete(held.pipeline, held.adapter)
            log.info("LoRA %s unloaded (cache bound %.1f MB)", held.file.name, self.limit_bytes / 2**20)
        self._publish()

    def _publish(self) -> None:
        seen: dict[str, LoraFile] = {}
        for held in self._held.values():
            seen.setdefault(held.file.name, held.file)
        self._snapshot = tuple(seen.values())


def _load(pipeline: Any, file: LoraFile, adapter: str) -> None:
    from safetensors.torch import load_file

    # The tensors read by safetensors itself (never a pickle), then diffusers converts kohya's layout.
    state_dict = load_file(str(file.path))
    with warnings.catch_warnings():  # peft warns on every adapter after the first: several is the point here
        warnings.filterwarnings("ignore", message="Already found a `peft_config`")
        pipeline.load_lora_weights(state_dict, adapter_name=adapter)


def _footprint(pipeline: Any, adapter: str) -> tuple[tuple[str, ...], int]:
    """The components the adapter reached and its parameters' bytes on the device."""
    components, total = [], 0
    marker = f".{adapter}."
    for component in _COMPONENTS:
        model = getattr(pipeline, component, None)
        if model is None:
            continue
        size = sum(p.numel() * p.element_size() for n, p in model.named_parameters() if marker in n)
        if size:
            components.append(component)
            total += size
    return tuple(components), total


def _activate(pipeline: Any, active: Sequence[tuple[_Held, LoraUse]]) -> None:
    """Per component: exactly the job's adapters with a non-zero multiplier run; others are off."""
    from diffusers.loaders.lora_base import (
        disable_lora_for_text_encoder,
        enable_lora_for_text_encoder,
        set_adapters_for_text_encoder,
    )

    for component in _COMPONENTS:
        model = getattr(pipeline, component, None)
        if model is None or not getattr(model, "peft_config", None):
            continue
        names, weights = [], []
        for held, use in active:
            multiplier = use.unet if component == "unet" else use.te
            if component in held.components and multiplier != 0:
                names.append(held.adapter)
                weights.append(multiplier)
        if component == "unet":
            if names:
                model.set_adapters(names, weights)
                model.enable_lora()
            else:
                model.disable_lora()
        elif names:
            set_adapters_for_text_encoder(names, model, weights)
            enable_lora_for_text_encoder(model)
        else:
            disable_lora_for_text_encoder(model)


def _deactivate(pipeline: Any) -> None:
    from diffusers.loaders.lora_base import disable_lora_for_text_encoder

    for component in _COMPONENTS:
        model = getattr(pipeline, component, None)
        if model is None or not getattr(model, "peft_config", None):
            continue
        if component == "unet":
            model.disable_lora()
        else:
            disable_lora_for_text_encoder(model)


def _delete(pipeline: Any, adapter: str) -> None:
    try:
        present = [c for c, names in pipeline.get_list_adapters().items() if adapter in names]
        if present:
            with warnings.catch_warnings():  # peft: "was active which is now deleted": all are off here
                warnings.filterwarnings("ignore", message="Adapter .* was active which is now deleted")
                pipeline.delete_adapters(adapter)
    except Exception:  # noqa: BLE001 - a half-loaded adapter: log it, the job's outcome is already decided
        log.exception("LoRA adapter %s could not be deleted", adapter)
