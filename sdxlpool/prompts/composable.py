"""A1111's composable diffusion syntax: `a cat AND a dog :0.7`.

`split_and` cuts a prompt at each `AND` (a whole word, upper case) into sub-prompts, each with the
weight written after a final `:` (default 1), as A1111's `get_multicond_prompt_list` reads them.
A prompt without `AND` and without a trailing weight is one sub-prompt of weight 1.
"""

from __future__ import annotations

import re

__all__ = ["split_and", "is_composable"]

_AND = re.compile(r"\bAND\b")
_TRAILING_WEIGHT = re.compile(r"^(.*?)(?:\s*:\s*([-+]?(?:\d+\.?|\d*\.\d+)))?\s*$", re.DOTALL)


def split_and(prompt: str) -> list[tuple[str, float]]:
    """[(sub-prompt, weight), ...] in prompt order."""
    parts = []
    for part in _AND.split(prompt):
        match = _TRAILING_WEIGHT.match(part)
        assert match is not None  # the pattern matches any text
        text, weight = match.group(1), match.group(2)
        parts.append((text, float(weight) if weight is not None else 1.0))
    return parts


def is_composable(prompt: str) -> bool:
    """True when the prompt means more than plain text to A1111: several sub-prompts, or a weight."""
    parts = split_and(prompt)
    return len(parts) > 1 or parts[0][1] != 1.0
