"""The per-caller options store and its checks, as pure functions (the HTTP side is in
test_caller_state.py): the LRU bound, the idle expiry, the merge into override_settings, and what a
checkpoint or VAE may be called."""

from __future__ import annotations

import pytest

from sdxlpool.errors import InvalidRequest
from sdxlpool.gateway.caller_options import CallerOptions, check_options

CHECKPOINTS = [
    {"title": "base-a [0123456789]", "model_name": "base-a", "hash": "0123456789", "sha256": "01" * 32,
     "filename": "/models/base-a.safetensors", "sdxlpool_kind": "base"},
    {"title": "refiner [abcdefabcd]", "model_name": "refiner", "hash": "abcdefabcd", "sha256": "ab" * 32,
     "filename": "/models/refiner.safetensors", "sdxlpool_kind": "refiner"},
]
VAES = [{"model_name": "fixed.vae.safetensors", "filename": "/vae/fixed.vae.safetensors"}]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize("name", ["base-a [0123456789]", "base-a", "0123456789", "/models/base-a.safetensors",
                                  " base-a "])
def test_a_checkpoint_is_known_by_each_name_a1111_accepts_and_kept_as_its_title(name: str) -> None:
    checked = check_options({"sd_model_checkpoint": name}, checkpoints=CHECKPOINTS, vaes=[])
    assert checked == {"sd_model_checkpoint": "base-a [0123456789]", "sd_checkpoint_hash": "01" * 32}


@pytest.mark.parametrize(("values", "field", "words"), [
    ({"sd_model_checkpoint": "base-b"}, "sd_model_checkpoint", "base-a [0123456789]"),  # names what there is
    ({"sd_model_checkpoint": "refiner"}, "sd_model_checkpoint", "refiner checkpoint"),
    ({"sd_vae": "other.vae.safetensors"}, "sd_vae", "fixed.vae.safetensors"),
    ({"CLIP_stop_at_last_layers": 0}, "CLIP_stop_at_last_layers", "from 1 to 12"),
    ({"CLIP_stop_at_last_layers": True}, "CLIP_stop_at_last_layers", "integer"),
    ({"sdxl_refiner_high_aesthetic_score": float("nan")}, "sdxl_refiner_high_aesthetic_score", "number"),
])
def test_a_bad_value_is_refused_naming_its_key(values: dict, field: str, words: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        check_options(values, checkpoints=CHECKPOINTS, vaes=VAES)
    assert caught.value.field == field and words in caught.value.detail


def test_special_vaes_numbers_and_other_keys() -> None:
    checked = check_options({"sd_vae": "None", "sdxl_refiner_low_aesthetic_score": 3, "samples_format": "jpg",
                             "sd_checkpoint_hash": "ff"}, checkpoints=[], vaes=[])
    assert checked == {"sd_vae": "None", "sdxl_refiner_low_aesthetic_score": 3}  # others: no effect


def test_the_callers_values_go_into_override_settings_and_the_requests_own_win() -> None:
    store = CallerOptions()
    store.set("key:a", {"sd_model_checkpoint": "base-a [0123456789]", "sd_checkpoint_hash": "01" * 32,
                        "CLIP_stop_at_last_layers": 2})
    body = {"prompt": "x", "override_settings": {"CLIP_stop_at_last_layers": 3}}
    sent = store.apply("key:a", body)
    assert sent["override_settings"] == {"sd_model_checkpoint": "base-a [0123456789]", "CLIP_stop_at_last_layers": 3}
    assert sent["override_settings_restore_afterwards"] is True
    assert body == {"prompt": "x", "override_settings": {"CLIP_stop_at_last_layers": 3}}  # not changed
    assert store.apply("key:b", {"prompt": "x"}) == {"prompt": "x"}  # another caller: untouched
    assert store.apply("key:b", {"override_settings": {"eta_noise_seed_delta": 1},
                                 "override_settings_restore_afterwards": False})[
        "override_settings_restore_afterwards"] is True  # a request never changes a worker's options
    assert store.apply("key:a", {"override_settings": "junk"}) == {"override_settings": "junk"}  # validation's
    assert store.view("key:a", {"CLIP_stop_at_last_layers": 1, "sd_checkpoint_hash": "ff", "samples_format": "png"}) \
        == {"CLIP_stop_at_last_layers": 2, "sd_checkpoint_hash": "01" * 32, "samples_format": "png",
            "sd_model_checkpoint": "base-a [0123456789]"}


def test_the_store_keeps_the_most_recent_callers_and_forgets_idle_ones() -> None:
    clock = Clock()
    store = CallerOptions(max_callers=2, idle_seconds=60, clock=clock)
    store.set("a", {"CLIP_stop_at_last_layers": 2})
    store.set("b", {"CLIP_stop_at_last_layers": 3})
    clock.now += 10
    assert store.get("a") == {"CLIP_stop_at_last_layers": 2}  # a is now the most recent
    store.set("c", {"CLIP_stop_at_last_layers": 4})
    assert len(store) == 2 and store.get("b") == {} and store.get("a") != {}
    clock.now += 55
    assert store.get("c") == {"CLIP_stop_at_last_layers": 4}  # used 55 s ago: kept, and refreshed
    clock.now += 10
    assert store.get("a") == {}  # 65 s without use
    assert store.get("c") != {}
    store.set("c", {"CLIP_stop_at_last_layers": None})  # null forgets
    assert store.get("c") == {} and len(store) == 0
