"""What of a prompt reaches the text encoders, and which constructs are not applied (pure).

A1111 first takes extra-network calls (`<lora:x:1>`, `<hypernet:x:1>`) out of the positive prompt
(LoRAs are the worker's `loras` module's business; other kinds are not supported here and are
named), then splits composable `AND` sub-prompts. Composable diffusion is not implemented: the
sub-prompts' texts are encoded as one prompt joined by ", " and the construct is named in
`info.sdxlpool.ignored`. The negative prompt is read as written (A1111 parses neither networks nor
AND there).
"""

from __future__ import annotations

from dataclasses import dataclass

from sdxlpool.prompts import LORA_KINDS, extract_networks
from sdxlpool.prompts.composable import split_and

__all__ = ["PromptText", "prompt_text"]



@dataclass(frozen=True)
class PromptText:
    text: str  # what the encoder reads
    ignored: tuple[str, ...]  # "prompt: <what> (<why>)" for constructs not applied


def prompt_text(prompt: str) -> PromptText:
    """The positive prompt's text for the encoder. Raises ValueError for a malformed network call."""
    text, calls = extract_networks(prompt)
    ignored = [f"prompt: {call.raw} ({_unsupported(call.kind)})" for call in calls if call.kind not in LORA_KINDS]
    parts = split_and(text)
    if len(parts) > 1:
        ignored.append("prompt: AND (composable diffusion is not supported)")
        text = ", ".join(part.strip() for part, _ in parts)
    elif parts[0][1] != 1.0:
        ignored.append(f"prompt: :{parts[0][1]:g} (a sub-prompt weight is composable diffusion, not supported)")
        text = parts[0][0]
    return PromptText(text, tuple(ignored))


def _unsupported(kind: str) -> str:
    return "hypernetworks are not supported" if kind == "hypernet" else f"{kind} networks are not supported"
