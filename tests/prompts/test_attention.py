"""A1111's attention syntax: the examples of `parse_prompt_attention`'s docstring, and the edges."""

from __future__ import annotations

import pytest

from sdxlpool.prompts import BREAK, parse_attention

# A1111 v1.10 modules/prompt_parser.py, parse_prompt_attention's doctest, verbatim.
A1111_EXAMPLES = [
    ("normal text", [("normal text", 1.0)]),
    ("an (important) word", [("an ", 1.0), ("important", 1.1), (" word", 1.0)]),
    ("(unbalanced", [("unbalanced", 1.1)]),
    ("\\(literal\\]", [("(literal]", 1.0)]),
    ("(unnecessary)(parens)", [("unnecessaryparens", 1.1)]),
    ("a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).", [
        ("a ", 1.0), ("house", 1.5730000000000004), (" ", 1.1), ("on", 1.0), (" a ", 1.1),
        ("hill", 0.55), (", sun, ", 1.1), ("sky", 1.4641000000000006), (".", 1.1),
    ]),
]


@pytest.mark.parametrize(("prompt", "expected"), A1111_EXAMPLES, ids=[p for p, _ in A1111_EXAMPLES])
def test_a1111_documented_examples(prompt: str, expected: list[tuple[str, float]]) -> None:
    assert parse_attention(prompt) == expected


@pytest.mark.parametrize(("prompt", "expected"), [
    ("", [("", 1.0)]),
    ("[x]", [("x", 1 / 1.1)]),
    ("(x:1.0)", [("x", 1.0)]),
    ("(x: 1.5 )", [("x", 1.5)]),  # spaces around the number (v1.9+)
    ("((x))", [("x", 1.1 * 1.1)]),
    ("[[x]]", [("x", (1 / 1.1) * (1 / 1.1))]),
    ("([x])", [("x", 1.1 / 1.1)]),
    ("(a [b] c:2)", [("a ", 2.0), ("b", 2.0 / 1.1), (" c", 2.0)]),
    ("x)", [("x)", 1.0)]),  # a closer with nothing open is text
    ("x]", [("x]", 1.0)]),
    ("a: b", [("a: b", 1.0)]),  # a colon that closes nothing is text
    ("(x:y)", [("x:y", 1.1)]),  # not a number: the colon is text, the bracket an ordinary (
    ("\\\\", [("\\", 1.0)]),  # an escaped backslash
    ("a \\b", [("a b", 1.0)]),  # a backslash escaping nothing is dropped
    ("[unbalanced", [("unbalanced", 1 / 1.1)]),
])
def test_edges(prompt: str, expected: list[tuple[str, float]]) -> None:
    got = parse_attention(prompt)
    assert [text for text, _ in got] == [text for text, _ in expected]
    assert [weight for _, weight in got] == pytest.approx([weight for _, weight in expected])


def test_break_is_a_marker_between_runs_and_eats_its_spaces() -> None:
    assert parse_attention("a cat BREAK a dog") == [("a cat", 1.0), (BREAK, -1.0), ("a dog", 1.0)]
    assert parse_attention("(a BREAK b)") == [("a", 1.1), (BREAK, -1.1), ("b", 1.1)]
    # Only the word on its own: "BREAKFAST" and "break" are text.
    assert parse_attention("BREAKFAST break") == [("BREAKFAST break", 1.0)]
