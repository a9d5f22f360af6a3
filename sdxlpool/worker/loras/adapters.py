"""LoRAs loaded into a base pipeline as PEFT adapters, in an LRU cache, active for one job at a time."""

from __future__ import annotations

import logging
import warnings
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sdxlpool.errors import InvalidRequest
from sdxlpool.worker.loras.library import LoraFile
from sdxlpool.worker.loras.resolve import LoraUse

__all__ = ["LoraAdapters"]

log = logging.getLogger(__name__)


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
