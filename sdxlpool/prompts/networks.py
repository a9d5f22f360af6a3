"""A1111's extra-network calls in a prompt: `<lora:name:0.8>`, `<lora:name:te:unet>`, `<hypernet:x:1>`.

`extract_networks` removes every `<kind:args>` from the prompt and returns them, as A1111's
`extra_networks.parse_prompt` does before the text reaches the encoder. Arguments are separated
by `:`; `key=value` arguments are named. For a LoRA the first argument is its name, then the text
encoders' multiplier (`te`, default 1), then the UNet's (`unet`, default: the text encoders'), then
`dyn` (a LyCORIS dimension, which this worker does not apply).

A1111 reads extra networks from the positive prompt only: a `<lora:...>` in the negative prompt
stays in its text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

__all__ = ["NetworkCall", "extract_networks", "LORA_KINDS"]

LORA_KINDS = frozenset({"lora", "lyco"})  # A1111's Lora extension answers to both

_CALL = re.compile(r"<(\w+):([^>]+)>")


@dataclass(frozen=True)
class NetworkCall:
    kind: str  # "lora", "hypernet", "lyco", ...
    name: str
    te_multiplier: float = 1.0
    unet_multiplier: float = 1.0
    raw: str = ""  # the call as written, for messages ("<lora:x:0.8>")
    named: dict[str, str] = field(default_factory=dict)  # key=value arguments not read above


def extract_networks(prompt: str) -> tuple[str, list[NetworkCall]]:
    """The prompt without its `<kind:args>` calls, and the calls in order.

    Raises ValueError naming the call when a multiplier is not a number (A1111 fails the request there too).
    """
    calls: list[NetworkCall] = []

    def take(match: re.Match[str]) -> str:
        calls.append(_call(match.group(1), match.group(2).split(":"), match.group(0)))
        return ""

    return _CALL.sub(take, prompt), calls


def _call(kind: str, args: list[str], raw: str) -> NetworkCall:
    positional = [a for a in args if "=" not in a]
    named = dict(a.split("=", 1) for a in args if "=" in a)
    name = positional[0] if positional else ""

    def number(value: str, what: str) -> float:
        try:
            return float(value)
        except ValueError:
            raise ValueError(f"{raw}: the {what} multiplier {value!r} is not a number") from None

    te = number(positional[1], "text-encoder") if len(positional) > 1 else 1.0
    te = number(named.pop("te"), "text-encoder") if "te" in named else te
    unet = number(positional[2], "UNet") if len(positional) > 2 else te
    unet = number(named.pop("unet"), "UNet") if "unet" in named else unet
    if len(positional) > 3:
        named.setdefault("dyn", positional[3])
    return NetworkCall(kind=kind, name=name, te_multiplier=te, unet_multiplier=unet, raw=raw, named=named)
