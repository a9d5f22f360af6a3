"""A1111's prompt styles (`styles.csv`): reading the file, and merging styles into a prompt.

The file is CSV with a header row naming at least `name` and `prompt` (A1111 1.9/1.10
`modules/styles.py`, read here for its behaviour):

* a UTF-8 byte-order mark is skipped; blanks after each comma are skipped (`name, prompt` works);
* columns are found by their header: `negative_prompt` may be missing (then ""), very old files
  have `text` instead of `prompt`, other columns (`description`, ...) are ignored;
* a row whose name starts with `#` is a comment; a later row with the same name replaces the
  earlier one; a row with an empty name is kept under the name "" (A1111 keeps it too);
* a row shorter than the header has "" for the missing values.

Applying styles (`apply_styles`), in the order the request names them, to the prompt and,
separately, to the negative prompt: a style text containing `{prompt}` has every `{prompt}`
replaced by the text so far; any other style text is appended after ", ", where an empty part
(after stripping blanks) is left out, so the text so far is stripped even when the style is empty.
A name that is not in the file counts as a style with empty texts (A1111's "no style"), and is
reported by the caller.

Pure: text in, text out (the worker reads the file and watches it).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

__all__ = ["Style", "parse_styles_csv", "merge_prompts", "apply_styles", "StyledPrompts"]


@dataclass(frozen=True)
class Style:
    name: str
    prompt: str
    negative_prompt: str

    def as_a1111(self) -> dict[str, str]:
        """One entry of GET /sdapi/v1/prompt-styles."""
        return {"name": self.name, "prompt": self.prompt, "negative_prompt": self.negative_prompt}


def parse_styles_csv(text: str) -> dict[str, Style]:
    """The styles of a styles.csv's text, by name, in file order. ValueError: no usable header."""
    text = text.removeprefix("\ufeff")
    reader = csv.DictReader(io.StringIO(text, newline=""), skipinitialspace=True)
    columns = reader.fieldnames or []
    if "name" not in columns or ("prompt" not in columns and "text" not in columns):
        raise ValueError(f"the header must name the columns name and prompt, got {columns!r}")
    prompt_column = "prompt" if "prompt" in columns else "text"
    styles: dict[str, Style] = {}
    for row in reader:
        name = row.get("name") or ""
        if name.startswith("#"):
            continue
        styles[name] = Style(name, row.get(prompt_column) or "", row.get("negative_prompt") or "")
    return styles


def merge_prompts(style_text: str, prompt: str) -> str:
    """One style text merged into the prompt so far."""
    if "{prompt}" in style_text:
        return style_text.replace("{prompt}", prompt)
    return ", ".join(part for part in (prompt.strip(), style_text.strip()) if part)


@dataclass(frozen=True)
class StyledPrompts:
    prompt: str
    negative_prompt: str
    unknown: tuple[str, ...]  # requested names that are not in the file, in request order


def apply_styles(prompt: str, negative_prompt: str, names: Iterable[str],
                 styles: Mapping[str, Style]) -> StyledPrompts:
    """The prompt and negative prompt with the named styles merged in, in the order given."""
    unknown: list[str] = []
    for name in names:
        style = styles.get(name)
        if style is None:
            unknown.append(name)
            style = Style(name, "", "")
        prompt = merge_prompts(style.prompt, prompt)
        negative_prompt = merge_prompts(style.negative_prompt, negative_prompt)
    return StyledPrompts(prompt, negative_prompt, tuple(unknown))
