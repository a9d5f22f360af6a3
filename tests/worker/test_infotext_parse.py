"""Reading infotexts back (png-info's `parameters`), as A1111's parse_generation_parameters does:
A1111-written examples, and round trips through our own formatter."""

from __future__ import annotations

import pytest

from sdxlpool.worker.infotext import format_infotext, parse_infotext, unquote

A1111_HIRES = (
    "masterpiece, best quality, 1girl, (blue eyes:1.2)\n"
    "Negative prompt: lowres, bad anatomy\n"
    "Steps: 20, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 1234567890, Size: 512x768, "
    "Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, Denoising strength: 0.7, Hires upscale: 2, "
    'Hires upscaler: Latent, Lora hashes: "add_detail: 7c6bad76eb54", Version: v1.10.1'
)


def test_an_a1111_hires_infotext() -> None:
    fields = parse_infotext(A1111_HIRES)
    assert fields["Prompt"] == "masterpiece, best quality, 1girl, (blue eyes:1.2)"
    assert fields["Negative prompt"] == "lowres, bad anatomy"
    assert fields["Steps"] == "20" and fields["Seed"] == "1234567890" and fields["CFG scale"] == "7"
    assert (fields["Size-1"], fields["Size-2"]) == ("512", "768") and "Size" not in fields
    assert fields["Schedule type"] == "Karras"
    assert fields["Denoising strength"] == "0.7" and fields["Hires upscale"] == "2"
    assert fields["Lora hashes"] == "add_detail: 7c6bad76eb54"  # quoted value, unquoted
    # What the infotext leaves out gets A1111's defaults.
    assert fields["Clip skip"] == "1" and fields["RNG"] == "GPU"
    assert (fields["Hires resize-1"], fields["Hires resize-2"]) == (0, 0)
    assert fields["Hires sampler"] == "Use same sampler" and fields["Hires checkpoint"] == "Use same checkpoint"
    assert fields["Emphasis"] == "Original"  # the prompt weights a word
    assert "Downcast alphas_cumprod" not in fields  # v1.10 needs no back-compat flag


def test_prompt_lines_negative_lines_and_a_short_last_line() -> None:
    fields = parse_infotext("line one\nline two\nNegative prompt: neg one\nneg two\nSteps: 5, Seed: 1, Size: 64x64")
    assert fields["Prompt"] == "line one\nline two" and fields["Negative prompt"] == "neg one\nneg two"
    # Fewer than three "Key: value" pairs: the last line is prompt text, as A1111 reads it.
    short = parse_infotext("a cat\nSteps: 20, Seed: 3")
    assert short["Prompt"] == "a cat\nSteps: 20, Seed: 3" and "Steps" not in short
    assert parse_infotext("")["Prompt"] == ""
    plain = parse_infotext("a plain prompt\nSteps: 5, Seed: 1, Sampler: Euler")
    assert "Emphasis" not in plain


def test_old_versions_get_their_back_compat_flags_and_old_hires_size() -> None:
    old = parse_infotext("a [cat:dog:5]\nSteps: 20, Sampler: DDIM, Size: 1024x1024, First pass size: 0x0, "
                         "Refiner: x, Version: v1.5.2")
    assert old["Old prompt editing timelines"] is True and old["Pad conds v0"] is True
    assert old["Downcast alphas_cumprod"] is True and old["Refiner switch by sampling steps"] is True
    # "First pass size: 0x0" (before A1111 1.0): the first pass was about 512x512; Size was the hires size.
    assert (old["Size-1"], old["Size-2"]) == (512, 512)
    assert (old["Hires resize-1"], old["Hires resize-2"]) == (1024, 1024)
    new = parse_infotext("a\nSteps: 20, Sampler: Euler, Version: v1.7.0-230-gabcdef")
    assert "Downcast alphas_cumprod" not in new and new["Refiner switch by sampling steps"] is False
    assert parse_infotext("a\nSteps: 20, Sampler: Euler, Version: v1.7.0")["Downcast alphas_cumprod"] is True


@pytest.mark.parametrize(
    "prompt",
    ["a lighthouse, at dusk, <lora:detail:0.8>", 'quotes "inside", and a: colon', "(weighted:1.3) [edit:x:0.5]"],
)
def test_our_infotexts_round_trip(prompt: str) -> None:
    fields = {
        "Steps": 4, "Sampler": "Euler a", "Schedule type": "Karras", "CFG scale": "7", "Seed": 11, "Size": "64x64",
        "Model hash": "cb9b7d0ee6", "Model": "tiny/base", "Denoising strength": "0.5",
        "Hires prompt": 'a "castle",\nat night', "Hires upscale": "2", "Hires steps": 2, "Hires upscaler": "Latent",
        "Lora hashes": "detail: 0123456789ab, other: ba9876543210", "Version": "sdxlpool",
    }
    text = format_infotext(prompt, "blurry, dark", fields)
    parsed = parse_infotext(text)
    assert parsed["Prompt"] == prompt and parsed["Negative prompt"] == "blurry, dark"
    for key, value in fields.items():
        if key == "Size":
            assert (parsed["Size-1"], parsed["Size-2"]) == ("64", "64")
        else:
            assert parsed[key] == str(value), key


def test_unquote_leaves_what_is_not_json_quoted() -> None:
    assert unquote('"a, b"') == "a, b"
    assert unquote('"broken') == '"broken'
    assert unquote("plain") == "plain"
