"""Prompt editing and alternation: A1111's `get_learned_conditioning_prompt_schedules` table."""

from __future__ import annotations

import pytest

from sdxlpool.prompts import prompt_schedule

# A1111 v1.10 modules/prompt_parser.py, the doctest of get_learned_conditioning_prompt_schedules
# with steps=10. One line is left out: `a [{b|d{:.5] c`, marked "not handling this right now" there;
# A1111's own grammar rejects it under lark 1.x, so A1111 answers [[10, the whole prompt]], and so
# do we (test_unparseable_prompts_are_one_schedule).
A1111_EXAMPLES = [
    ("test", [(10, "test")]),
    ("a [b:3]", [(3, "a "), (10, "a b")]),
    ("a [b: 3]", [(3, "a "), (10, "a b")]),
    ("a [[[b]]:2]", [(2, "a "), (10, "a [[b]]")]),
    ("[(a:2):3]", [(3, ""), (10, "(a:2)")]),
    ("a [b : c : 1] d", [(1, "a b  d"), (10, "a  c  d")]),
    ("a[b:[c:d:2]:1]e", [(1, "abe"), (2, "ace"), (10, "ade")]),
    ("a [unbalanced", [(10, "a [unbalanced")]),
    ("a [b:.5] c", [(5, "a  c"), (10, "a b c")]),
    ("((a][:b:c [d:3]", [(3, "((a][:b:c "), (10, "((a][:b:c d")]),
    ("[a|(b:1.1)]", [(s, "a" if s % 2 else "(b:1.1)") for s in range(1, 11)]),
    ("[fe|]male", [(s, "female" if s % 2 else "male") for s in range(1, 11)]),
    ("[fe|||]male", [(s, "female" if s % 4 == 1 else "male") for s in range(1, 11)]),
]


@pytest.mark.parametrize(("prompt", "expected"), A1111_EXAMPLES, ids=[p for p, _ in A1111_EXAMPLES])
def test_a1111_documented_examples(prompt: str, expected: list[tuple[int, str]]) -> None:
    assert prompt_schedule(prompt, 10) == expected


@pytest.mark.parametrize(("prompt", "expected"), [
    ("a [b:.5] c", [(10, "a b c")]),  # 0.5 of the first pass: already over in the hires pass
    ("a [b:1.5] c", [(5, "a  c"), (10, "a b c")]),
])
def test_a1111_documented_hires_examples(prompt: str, expected: list[tuple[int, str]]) -> None:
    assert prompt_schedule(prompt, 10, hires_steps=10) == expected


def test_unparseable_prompts_are_one_schedule() -> None:
    assert prompt_schedule("a [{b|d{:.5] c", 10) == [(10, "a [{b|d{:.5] c")]


def test_fraction_needs_a_decimal_point_and_integers_are_steps() -> None:
    assert prompt_schedule("[a:b:0.25]", 20) == [(5, "a"), (20, "b")]
    assert prompt_schedule("[a:b:1.0]", 20) == [(20, "a")]  # a fraction of 1: never switches
    assert prompt_schedule("[a:b:1]", 20) == [(1, "a"), (20, "b")]  # step 1
    assert prompt_schedule("[a:b:30]", 20) == [(20, "a")]  # past the end: capped, never switches
    assert prompt_schedule("[a:b:0]", 20) == [(20, "b")]  # at 0: `to` from the first step


def test_the_sampler_uses_the_first_entry_not_yet_ended() -> None:
    # A1111's reconstruct_cond_batch: step s (0-based) takes the first entry with s <= end_at_step.
    schedule = prompt_schedule("[cat:dog:4]", 8)
    in_force = [next(text for end, text in schedule if s <= end) for s in range(8)]
    assert in_force == ["cat"] * 5 + ["dog"] * 3


@pytest.mark.parametrize("prompt", [
    "(a red cat:1.3) sitting on a chair, ((masterpiece)), (photo:0.8)",
    "a: b (c) d) ((e", "x | y", "(a|b)", "", "  spaced  out  ", "\\(literal\\)",
])
def test_a_prompt_without_square_brackets_is_its_own_text_at_every_step(prompt: str) -> None:
    # The fast path must say what the grammar says: parsed, such a prompt renders as itself.
    from sdxlpool.prompts.schedules import _parser, _render

    assert prompt_schedule(prompt, 10) == [(10, prompt)]
    try:
        tree = _parser().parse(prompt)
    except Exception:  # noqa: BLE001 - unparseable: the whole prompt, which the fast path also gives
        return
    assert _render(tree, 1, {}) == prompt
