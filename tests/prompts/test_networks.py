"""`<lora:...>` and other extra-network calls: taken out of the prompt, multipliers read as A1111 does."""

from __future__ import annotations

import pytest

from sdxlpool.prompts import NetworkCall, extract_networks, is_composable, split_and


def test_calls_are_removed_and_returned_in_order() -> None:
    text, calls = extract_networks("a cat <lora:fluffy:0.8>, sitting <hypernet:old:1>")
    assert text == "a cat , sitting "
    assert [(c.kind, c.name, c.raw) for c in calls] == [
        ("lora", "fluffy", "<lora:fluffy:0.8>"), ("hypernet", "old", "<hypernet:old:1>"),
    ]


@pytest.mark.parametrize(("call", "te", "unet"), [
    ("<lora:x>", 1.0, 1.0),
    ("<lora:x:0.5>", 0.5, 0.5),  # one multiplier: both
    ("<lora:x:0.5:0.2>", 0.5, 0.2),  # A1111's <lora:name:te:unet>
    ("<lora:x:te=0.3>", 0.3, 0.3),
    ("<lora:x:1:unet=0>", 1.0, 0.0),
    ("<lora:x:-1>", -1.0, -1.0),
])
def test_multipliers(call: str, te: float, unet: float) -> None:
    _, [parsed] = extract_networks(call)
    assert (parsed.te_multiplier, parsed.unet_multiplier) == (te, unet)


def test_dyn_is_kept_as_a_named_argument() -> None:
    _, [parsed] = extract_networks("<lora:x:1:1:8>")
    assert parsed == NetworkCall("lora", "x", 1.0, 1.0, "<lora:x:1:1:8>", {"dyn": "8"})


def test_a_multiplier_that_is_not_a_number_is_named() -> None:
    with pytest.raises(ValueError, match=r"<lora:x:lots>: the text-encoder multiplier 'lots'"):
        extract_networks("<lora:x:lots>")


def test_text_that_only_looks_like_a_call_stays() -> None:
    assert extract_networks("a <b> c <:x> <lora:>") == ("a <b> c <:x> <lora:>", [])


def test_and_splits_into_weighted_sub_prompts() -> None:
    assert split_and("a cat AND a dog :0.7") == [("a cat", 1.0), (" a dog", 0.7)]
    assert split_and("a cat and a dog") == [("a cat and a dog", 1.0)]  # lower case is text
    assert split_and("ANDROID") == [("ANDROID", 1.0)]
    assert is_composable("a AND b") and is_composable("a :1.5")
    assert not is_composable("a (b:1.5) c") and not is_composable("plain")
