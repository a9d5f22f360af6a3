"""`replace_info`: the worker's bytes kept, only `info` replaced, and None for any other shape."""

from __future__ import annotations

import json

import pytest

from sdxlpool.gateway.passthrough import replace_info


def answer(info: dict, **extra) -> dict:
    return {"images": ["iVBORw0KGgo" * 1000], "parameters": {"prompt": 'say "info": "no"', **extra},
            "info": json.dumps(info)}


def add_attempts(info: dict) -> None:
    info.setdefault("sdxlpool", {})["attempts"] = 2


@pytest.mark.parametrize("compact", [True, False])
def test_info_is_replaced_and_the_rest_kept_byte_for_byte(compact: bool) -> None:
    original = answer({"seed": 7, "prompt": "café \"info\": x", "sdxlpool": {"worker": "a"}})
    separators = (",", ":") if compact else None
    content = json.dumps(original, ensure_ascii=compact, separators=separators).encode()
    new, info = replace_info(content, add_attempts)
    decoded = json.loads(new)
    assert decoded["images"] == original["images"] and decoded["parameters"] == original["parameters"]
    assert json.loads(decoded["info"]) == info == {"seed": 7, "prompt": "café \"info\": x",
                                                   "sdxlpool": {"worker": "a", "attempts": 2}}
    head = content[:content.rfind(b'"info"')]
    assert new.startswith(head)  # the images were not re-encoded


@pytest.mark.parametrize("content", [
    b'{"images": [], "info": "{\\"seed\\": 1}", "parameters": {}}',  # info not last
    b'{"images": [], "info": 5}',  # not a string
    b'{"images": [], "info": "not json"}',
    b'{"images": []}',
    b'[1, 2]',
    b'{"images": [], "info": "{\\"a\\": 1}"',  # truncated
])
def test_other_shapes_are_left_to_the_slow_path(content: bytes) -> None:
    assert replace_info(content, add_attempts) is None
