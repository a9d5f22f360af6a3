"""A1111 infotexts ("parameters" text): writing them, reading them back, and PNG encoding with the
infotext in a tEXt chunk.

Infotexts are how A1111 users share and re-run images: the PNG Info tab and every A1111 client
parse this exact layout, so keys and order follow A1111's `create_infotext`, and `parse_infotext`
reads them as A1111's `parse_generation_parameters` does (POST /sdapi/v1/png-info).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from sdxlpool.prompts.attention import BREAK, parse_attention

__all__ = ["format_infotext", "encode_png", "parse_infotext", "quote", "unquote"]


def format_infotext(prompt: str, negative_prompt: str, fields: Mapping[str, Any]) -> str:
    """`prompt\\nNegative prompt: ...\\nSteps: 25, Sampler: ..., ...`; None values are left out."""
    parameters = ", ".join(f"{key}: {_quote(value)}" for key, value in fields.items() if value is not None)
    negative = f"\nNegative prompt: {negative_prompt}" if negative_prompt else ""
    return f"{prompt}{negative}\n{parameters}"


def _quote(value: Any) -> str:
    # A1111 quotes a value that would break the comma/colon layout (infotext_utils.quote).
    text = str(value)
    if "," not in text and "\n" not in text and ":" not in text:
        return text
    return json.dumps(text, ensure_ascii=False)


quote = _quote  # for the extras' postprocessing text, written the same way


def encode_png(image: Any, infotext: str) -> str:
    """base64 PNG of a PIL image with the infotext under the `parameters` key, as A1111 writes it
    (`worker.encoding.png_bytes`: the fast writer, Pillow's path for what it does not write)."""
    from sdxlpool.worker.encoding import png_base64

    return png_base64(image, infotext)


# One "Key: value" of the last line: a key of word characters, spaces, "-" and "/", then a value that
# is a JSON-quoted string (with escapes) or anything up to the next comma.
_PARAM = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')
_IMAGE_SIZE = re.compile(r"^(\d+)x(\d+)$")
_NEGATIVE = "Negative prompt:"
_VERSION = re.compile(r"v1\.(\d+)(?:\.(\d+))?(?:-RC)?(?:-(\d+))?")

# What A1111 fills in when an infotext leaves a field out (the defaults its paste applies).
_ABSENT_DEFAULTS: dict[str, Any] = {
    "Clip skip": "1",
    "Hires resize-1": 0,
    "Hires resize-2": 0,
    "Hires sampler": "Use same sampler",
    "Hires schedule type": "Use same scheduler",
    "Hires checkpoint": "Use same checkpoint",
    "Hires prompt": "",
    "Hires negative prompt": "",
    "Mask mode": "Inpaint masked",
    "Masked content": "original",
    "Inpaint area": "Whole picture",
    "Masked area padding": 32,
    "RNG": "GPU",
    "Schedule type": "Automatic",
    "Schedule max sigma": 0,
    "Schedule min sigma": 0,
    "Schedule rho": 0,
    "VAE Encoder": "Full",
    "VAE Decoder": "Full",
    "FP8 weight": "Disable",
}


def unquote(text: str) -> str:
    """A value `_quote` wrapped in JSON quotes, back to its text (unchanged when it is not quoted)."""
    if len(text) < 2 or text[0] != '"' or text[-1] != '"':
        return text
    try:
        value = json.loads(text)
    except ValueError:
        return text
    return value if isinstance(value, str) else text


def parse_infotext(text: str) -> dict[str, Any]:
    """An infotext's fields, as A1111's `parse_generation_parameters` gives them to a paste or to
    /sdapi/v1/png-info: "Prompt", "Negative prompt", every "Key: value" of the last line as a
    string (quoted values unquoted; a "WxH" value split into "Key-1" and "Key-2"), then A1111's
    defaults for the fields left out ("Clip skip": "1", "Schedule type": "Automatic", ...), the
    first-pass size of an old hires infotext turned into "Hires resize-1/-2", and its version
    back-compatibility flags. A last line with fewer than three fields is part of the prompt.

    Not done here: A1111 also moves styles it recognises out of the prompt (its styles.csv)."""
    lines = text.strip().split("\n")
    last = lines.pop() if lines else ""
    if len(_PARAM.findall(last)) < 3:
        lines.append(last)
        last = ""
    prompt: list[str] = []
    negative: list[str] = []
    for line in lines:
        line = line.strip()
        if line.startswith(_NEGATIVE):
            negative.append(line[len(_NEGATIVE):].strip())
        elif negative:
            negative.append(line)
        else:
            prompt.append(line)
    fields: dict[str, Any] = {}
    for key, raw in _PARAM.findall(last):
        value = unquote(raw) if raw[:1] == '"' and raw[-1:] == '"' else raw
        size = _IMAGE_SIZE.match(value)
        if size:
            fields[f"{key}-1"], fields[f"{key}-2"] = size.group(1), size.group(2)
        else:
            fields[key] = value
    fields["Prompt"] = "\n".join(prompt)
    fields["Negative prompt"] = "\n".join(negative)
    if "Hypernet" in fields:
        fields["Prompt"] += f"<hypernet:{fields['Hypernet']}:{fields.get('Hypernet strength', '1.0')}>"
    _old_hires_size(fields)
    for key, default in _ABSENT_DEFAULTS.items():
        fields.setdefault(key, default)
    if fields["FP8 weight"] != "Disable":
        fields.setdefault("Cache FP16 weight for LoRA", False)
    runs = parse_attention(fields["Prompt"]) + parse_attention(fields["Negative prompt"])
    if "Emphasis" not in fields and any(weight != 1.0 and part != BREAK for part, weight in runs):
        fields["Emphasis"] = "Original"
    fields.setdefault("Refiner switch by sampling steps", False)
    _back_compat(fields)
    return fields


def _old_hires_size(fields: dict[str, Any]) -> None:
    """An infotext from before A1111 1.0's hires fix rework gives "First pass size": its hires size
    is Size, reached from the first pass, which A1111 turns into a hires resize (64-multiples)."""
    first_w, first_h = fields.get("First pass size-1"), fields.get("First pass size-2")
    if first_w is None or first_h is None:
        return
    width, height = int(fields.get("Size-1", 512)), int(fields.get("Size-2", 512))
    first_w, first_h = int(first_w), int(first_h)
    if first_w == 0 or first_h == 0:
        first_w, first_h = _old_first_pass(width, height)
    fields["Size-1"], fields["Size-2"] = first_w, first_h
    fields["Hires resize-1"], fields["Hires resize-2"] = width, height


def _old_first_pass(width: int, height: int) -> tuple[int, int]:
    """The first-pass size old A1111 chose for a hires target: about 512x512 pixels, multiples of 64."""
    scale = (512 * 512 / (width * height)) ** 0.5
    return int(-(-scale * width // 64) * 64), int(-(-scale * height // 64) * 64)


def _back_compat(fields: dict[str, Any]) -> None:
    """A1111's flags for infotexts of older versions (its `infotext_versions.backcompat`)."""
    match = _VERSION.match(str(fields.get("Version", "")))
    if match is None:
        return
    version = tuple(int(part or 0) for part in match.groups())  # (minor, patch, commits after the tag)
    if version < (6, 0, 0) and "[" in fields.get("Prompt", ""):
        fields["Old prompt editing timelines"] = True
    if version < (6, 0, 0) and fields.get("Sampler", "") in ("DDIM", "PLMS"):
        fields["Pad conds v0"] = True
    if version < (7, 0, 225):  # the zero-terminal-SNR change came 225 commits after v1.7.0
        fields["Downcast alphas_cumprod"] = True
    if version < (8, 0, 0) and fields.get("Refiner"):
        fields["Refiner switch by sampling steps"] = True
