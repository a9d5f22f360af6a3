"""A1111's styles.csv reading and style merging (modules/styles.py behaviour), as tables."""

from __future__ import annotations

import pytest

from sdxlpool.prompts import Style, apply_styles, merge_prompts, parse_styles_csv


@pytest.mark.parametrize(("style_text", "prompt", "expected"), [
    ("oil painting", "a cat", "a cat, oil painting"),
    ("oil painting", "", "oil painting"),  # empty parts are left out
    ("", "a cat", "a cat"),
    ("  oil painting  ", "  a cat  ", "a cat, oil painting"),  # both parts stripped
    ("", "  a cat  ", "a cat"),  # even an empty style strips the prompt
    ("", "", ""),
    ("{prompt}, highly detailed", "a cat", "a cat, highly detailed"),
    ("masterpiece, {prompt}", "a cat", "masterpiece, a cat"),
    ("{prompt} and {prompt}", "a cat", "a cat and a cat"),  # every placeholder
    ("{prompt}", "  a cat ", "  a cat "),  # the placeholder form keeps the text as it is
    ("art of {prompt}", "", "art of "),
])
def test_merge_prompts(style_text: str, prompt: str, expected: str) -> None:
    assert merge_prompts(style_text, prompt) == expected


STYLES = {
    "photo": Style("photo", "photograph, 35mm", "drawing, painting"),
    "wrap": Style("wrap", "cinematic still of {prompt}, film grain", "{prompt}, blurry"),
    "neg-only": Style("neg-only", "", "lowres"),
}


@pytest.mark.parametrize(("names", "prompt", "negative", "expected_prompt", "expected_negative", "unknown"), [
    ([], " a cat ", " ugly ", " a cat ", " ugly ", ()),  # no styles: untouched
    (["photo"], "a cat", "", "a cat, photograph, 35mm", "drawing, painting", ()),
    (["photo"], "a cat", "ugly", "a cat, photograph, 35mm", "ugly, drawing, painting", ()),
    # in the order named: each style sees the text the previous ones made
    (["photo", "wrap"], "a cat", "", "cinematic still of a cat, photograph, 35mm, film grain",
     "drawing, painting, blurry", ()),
    (["wrap", "photo"], "a cat", "", "cinematic still of a cat, film grain, photograph, 35mm",
     ", blurry, drawing, painting", ()),
    (["neg-only"], "a cat ", "ugly", "a cat", "ugly, lowres", ()),
    (["photo", "photo"], "a cat", "", "a cat, photograph, 35mm, photograph, 35mm",
     "drawing, painting, drawing, painting", ()),
    # unknown names count as empty styles (A1111's "no style") and are reported
    (["nope", "photo", "also-nope"], " a cat", "", "a cat, photograph, 35mm", "drawing, painting",
     ("nope", "also-nope")),
])
def test_apply_styles(names, prompt, negative, expected_prompt, expected_negative, unknown) -> None:
    styled = apply_styles(prompt, negative, names, STYLES)
    assert (styled.prompt, styled.negative_prompt, styled.unknown) == (expected_prompt, expected_negative, unknown)


def test_reading_a1111s_file_as_it_saves_it() -> None:
    text = ('\ufeffname,prompt,negative_prompt\r\n'
            'photo,"photograph, 35mm","drawing, painting"\r\n'
            'wrap,"cinematic still of {prompt}, film grain",\r\n'
            '"quoted ""name""","a ""quoted"" word",\r\n'
            'multi,"line one\nline two",\r\n')
    styles = parse_styles_csv(text)
    assert list(styles) == ["photo", "wrap", 'quoted "name"', "multi"]
    assert styles["photo"] == Style("photo", "photograph, 35mm", "drawing, painting")
    assert styles["wrap"] == Style("wrap", "cinematic still of {prompt}, film grain", "")
    assert styles['quoted "name"'].prompt == 'a "quoted" word'
    assert styles["multi"].prompt == "line one\nline two"


@pytest.mark.parametrize(("text", "expected"), [
    # blanks after commas are skipped, in the header too
    ("name, prompt, negative_prompt\nx, a, b\n", {"x": Style("x", "a", "b")}),
    # no negative_prompt column
    ("name,prompt\nx,a\n", {"x": Style("x", "a", "")}),
    # the pre-2023 column name
    ("name,text\nx,a\n", {"x": Style("x", "a", "")}),
    # extra columns (description, ...) are ignored, whatever their place
    ("description,name,negative_prompt,prompt\nnice,x,n,p\n", {"x": Style("x", "p", "n")}),
    # comments and blank lines are skipped
    ("name,prompt\n# not a style,a\n\nx,b\n", {"x": Style("x", "b", "")}),
    # a row shorter than the header: the missing values are empty
    ("name,prompt,negative_prompt\nx\n", {"x": Style("x", "", "")}),
    # the same name twice: the later row wins
    ("name,prompt\nx,a\nx,b\n", {"x": Style("x", "b", "")}),
    # an empty name is a style named "" (as in A1111)
    ("name,prompt\n,a\n", {"": Style("", "a", "")}),
    # a header only
    ("name,prompt,negative_prompt\n", {}),
])
def test_csv_quirks(text: str, expected: dict) -> None:
    assert parse_styles_csv(text) == expected


@pytest.mark.parametrize("text", ["", "prompt,negative_prompt\na,b\n", "name,negative_prompt\nx,b\n"])
def test_a_file_without_name_and_prompt_columns_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="name and prompt"):
        parse_styles_csv(text)


def test_listing_shape() -> None:
    assert Style("x", "a", "b").as_a1111() == {"name": "x", "prompt": "a", "negative_prompt": "b"}
