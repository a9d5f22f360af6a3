"""A prompt's `<lora:...>` calls -> the LoRAs to apply with their multipliers, and what is not applied (pure)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sdxlpool.prompts import LORA_KINDS, NetworkCall
from sdxlpool.worker.loras.library import LoraFile

__all__ = ["LoraUse", "resolve_loras", "infotext_hashes"]


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


