"""A1111's attention syntax: `(text)`, `[text]`, `(text:1.3)`, escapes and `BREAK`.

`parse_attention` turns a prompt into runs of text with one weight each, the way A1111's
`parse_prompt_attention` does (its docstring's examples are our tests): `(x)` multiplies by 1.1,
`[x]` divides by 1.1, `(x:w)` multiplies by w, nesting multiplies, a bracket left open applies to the
end of the prompt, a closing bracket with nothing open is literal text, `\\(` `\\)` `\\[` `\\]` `\\\\`
are the literal characters, and a backslash before anything else is dropped. `BREAK` (a word of
its own) becomes the `BREAK` marker with weight -1: the encoder starts a new 75-token chunk there.
Inside brackets the marker's weight is scaled like any run (`(a BREAK b)` gives -1.1), and A1111
then encodes it as the word "BREAK"; the encoder follows that by testing for exactly -1.

Runs with the same weight are merged, so `(a)(b)` is one run `ab` at 1.1.
"""

from __future__ import annotations

import re

__all__ = ["BREAK", "WeightedText", "parse_attention"]

BREAK = "BREAK"
WeightedText = tuple[str, float]  # ("text", weight); (BREAK, -1.0) marks a chunk break

_ROUND, _SQUARE = 1.1, 1 / 1.1
# One lexical item per match, first alternative wins: escapes, a lone backslash, openers,
# ":<number>)" (a weighted close), closers, plain text, and a ":" that is not a weighted close.
_ITEM = re.compile(r"""
    (?P<escape>\\[()\[\]\\])
  | (?P<backslash>\\)
  | (?P<open>[(\[])
  | :\s*(?P<weight>[+-]?[.\d]+)\s*\)
  | (?P<close>[)\]])
  | (?P<text>[^\\()\[\]:]+)
  | (?P<colon>:)
""", re.VERBOSE)
_BREAK_WORD = re.compile(r"\s*\bBREAK\b\s*", re.DOTALL)


def parse_attention(prompt: str) -> list[WeightedText]:
    """Runs of (text, weight) in prompt order; never empty (an empty prompt is [("", 1.0)])."""
    runs: list[list] = []  # [text, weight], mutable while brackets close
    open_round: list[int] = []  # index in `runs` where each open "(" began
    open_square: list[int] = []

    def scale_from(start: int, factor: float) -> None:
        for run in runs[start:]:
            run[1] *= factor

    def add_text(text: str) -> None:
        for i, part in enumerate(_BREAK_WORD.split(text)):
            if i:
                runs.append([BREAK, -1.0])
            runs.append([part, 1.0])

    for item in _ITEM.finditer(prompt):
        kind, value = item.lastgroup, item.group(0)
        if kind == "escape":
            runs.append([value[1], 1.0])
        elif kind == "backslash":
            runs.append(["", 1.0])  # a backslash escaping nothing is dropped, as in A1111
        elif kind == "open":
            (open_round if value == "(" else open_square).append(len(runs))
        elif kind == "weight" and open_round:
            scale_from(open_round.pop(), _number(item.group("weight")))
        elif kind == "close" and value == ")" and open_round:
            scale_from(open_round.pop(), _ROUND)
        elif kind == "close" and value == "]" and open_square:
            scale_from(open_square.pop(), _SQUARE)
        else:  # text, ":", a weighted close or a closer with nothing open: literal text
            add_text(value)

    # Brackets never closed weigh everything after them, as if closed at the end.
    for start in open_round:
        scale_from(start, _ROUND)
    for start in open_square:
        scale_from(start, _SQUARE)
    return _merge_equal_weights(runs) if runs else [("", 1.0)]


def _number(text: str) -> float:
    # "[.\d]+" admits "1.2.3" or "."; A1111 raises there (an HTTP 500). We read what parses.
    try:
        return float(text)
    except ValueError:
        match = re.match(r"[+-]?\d*\.?\d*", text)
        return float(match.group(0)) if match and match.group(0) not in ("", "+", "-", ".") else 1.0


def _merge_equal_weights(runs: list[list]) -> list[WeightedText]:
    merged: list[WeightedText] = []
    for text, weight in runs:
        if merged and merged[-1][1] == weight:
            merged[-1] = (merged[-1][0] + text, weight)
        else:
            merged.append((text, weight))
    return merged
