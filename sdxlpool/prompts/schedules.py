"""A1111's prompt editing and alternation: which text is in force at each sampling step.

* `[from:to:when]` is `from` up to step `when`, then `to`; `[to:when]` adds `to` after `when`;
  `[from::when]` drops `from` after `when`. `when` with a decimal point is a fraction of the steps
  (`0.5`, `.25`), without one a step number (`3`).
* `[a|b|c]` alternates every step: a, b, c, a, ...; an empty option is empty text.
* Nesting works (`a[b:[c:d:2]:1]e`); attention brackets `(x:1.2)` and `[x]` pass through unchanged
  for `attention.parse_attention`.
* A prompt the grammar cannot read (`a [unbalanced`) is one schedule: the whole text, all steps.

`prompt_schedule(prompt, steps)` returns `[(end_at_step, text), ...]` sorted by step, the last
entry ending at `steps`, as A1111's `get_learned_conditioning_prompt_schedules` (v1.6+ rules) does
for one prompt; its docstring's table is in tests/prompts/test_schedules.py. At sampling step
`s` (0-based) the text in force is that of the first entry with `s <= end_at_step`.

The grammar is read by lark's Earley parser, as in A1111, so ambiguous inputs such as
`((a][:b:c [d:3]` resolve the same way.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import lark

__all__ = ["prompt_schedule"]

# `edit` and `alternation` are the two constructs that change with the step; `literal` keeps
# attention brackets as written (its tokens are kept by "!"); stray brackets at the top level are text.
_GRAMMAR = r"""
!start: (body | /[][():]/+)*
body: (literal | edit | alternation | plain | WHITESPACE)*
!literal: "(" body ")"
        | "(" body ":" body ")"
        | "[" body "]"
edit: "[" [body ":"] body ":" [WHITESPACE] NUMBER [WHITESPACE] "]"
alternation: "[" body ("|" [body])+ "]"
WHITESPACE: /\s+/
plain: /([^\\\[\]():|]|\\.)+/
%import common.SIGNED_NUMBER -> NUMBER
"""


@lru_cache(maxsize=1)
def _parser() -> lark.Lark:
    return lark.Lark(_GRAMMAR)  # Earley, maybe_placeholders: a missing [optional] part is None


def prompt_schedule(prompt: str, steps: int, *, hires_steps: int | None = None) -> list[tuple[int, str]]:
    """[(end_at_step, text), ...] for `prompt` over `steps` sampling steps.

    With `hires_steps` the schedule is the hires pass's: step numbers count on from `steps` and
    fractions from 1.0 (`[a:b:1.5]` switches halfway through the second pass), as in A1111.
    """
    total = hires_steps if hires_steps is not None else steps
    if "[" not in prompt:
        # No edit nor alternation can be written without "[": the grammar would give the text
        # itself for every step. Earley parsing costs ~20 ms for a prompt full of (weights).
        return [(total, prompt)]
    try:
        tree = _parser().parse(prompt)
    except lark.exceptions.LarkError:
        return [(total, prompt)]
    step_offset, fraction_offset = (steps, 1.0) if hires_steps is not None else (0, 0.0)

    boundaries = {total}
    switch_at: dict[int, int] = {}  # id(edit node) -> the step after which `to` is in force
    for node in tree.iter_subtrees():
        if node.data == "edit":
            when = _switch_step(node.children[-2], total, step_offset, fraction_offset)
            switch_at[id(node)] = when
            if when >= 1:
                boundaries.add(when)
        elif node.data == "alternation":
            boundaries.update(range(1, total + 1))
    return [(step, _render(tree, step, switch_at)) for step in sorted(boundaries)]


def _switch_step(number: Any, total: int, step_offset: int, fraction_offset: float) -> int:
    text = str(number)
    value = float(text)
    value = (value - fraction_offset) * total if "." in text else value - step_offset
    return min(total, int(value))


def _render(node: Any, step: int, switch_at: dict[int, int]) -> str:
    """The text of `node` at sampling step `step` (1-based, as the schedule's boundaries)."""
    if isinstance(node, lark.Token):
        return str(node)
    if node is None:
        return ""
    if node.data == "edit":
        before, after = node.children[0], node.children[1]
        return _render(before if step <= switch_at[id(node)] else after, step, switch_at)
    if node.data == "alternation":
        options = node.children
        return _render(options[(step - 1) % len(options)], step, switch_at)
    return "".join(_render(child, step, switch_at) for child in node.children)
