"""POST/GET /sdapi/v1/options at the gateway: each caller's own options, never the pool's.

On A1111, `POST /sdapi/v1/options {"sd_model_checkpoint": ...}` switches the server's model for
every later request of every client. A client means by it "my next images use this"; a pool shared
by many clients must not flip its workers for everyone. So at the gateway:

  * POST stores the options the workers apply per request (`api.ignored.APPLIED_OPTIONS`:
    `sd_model_checkpoint`, `sd_vae`, `CLIP_stop_at_last_layers`, `eta_noise_seed_delta`, the
    refiner's aesthetic scores) *for the calling client only* (its API key's name, else its
    address: api_keys.py). Values are checked first, all or nothing: `sd_model_checkpoint` must
    name a base checkpoint some worker has (by title, name, file name or short hash, as A1111
    accepts; kept as its title), `sd_vae` a VAE some worker lists, "Automatic" or "None"; a bad one
    is a 422 naming the key. Other keys are accepted and have no effect (a client may post back
    the whole dictionary it read); a value of null forgets the caller's own value.
  * Every request the caller sends afterwards (txt2img, img2img, the native /v1/generate and
    /v1/ws) gets them merged into its `override_settings`, which the workers apply to that
    request alone; the request's own `override_settings` win. `override_settings_restore_afterwards:
    false` (A1111: make the overrides global) is sent to workers as true: through the gateway a
    request changes no worker's options.
  * GET answers the pool's options (a worker's) with the caller's stored values laid over them.
  * The store is in the gateway's memory, bounded: the `max_callers` most recently active callers
    (10000), each forgotten after `idle_seconds` (24 h) without a request or an options call. A
    gateway restart forgets them all, as an A1111 restart forgets unsaved options.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

from sdxlpool.api.ignored import APPLIED_OPTIONS
from sdxlpool.errors import InvalidRequest

__all__ = ["CallerOptions", "check_options", "VAE_SPECIAL"]

MAX_CALLERS = 10_000
IDLE_SECONDS = 24 * 3600.0
VAE_SPECIAL = ("Automatic", "auto", "None")  # sd_vae values that name no file
_STORED = APPLIED_OPTIONS - {"sd_checkpoint_hash"}  # the hash follows the checkpoint; GET shows it
_NUMBERS: dict[str, tuple[type, float, float]] = {  # type, lowest, highest
    "CLIP_stop_at_last_layers": (int, 1, 12),
    "eta_noise_seed_delta": (int, 0, 2**63 - 1),
    "sdxl_refiner_high_aesthetic_score": (float, 0.0, 10.0),
    "sdxl_refiner_low_aesthetic_score": (float, 0.0, 10.0),
}


def check_options(values: dict[str, Any], *, checkpoints: Sequence[dict[str, Any]],
                  vaes: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The values to store (the applied keys, checked and canonical; None: forget), or
    `InvalidRequest` naming the first bad key. `checkpoints` and `vaes` are the pool's
    /sd-models and /sd-vae entries."""
    checked: dict[str, Any] = {}
    for key in sorted(_STORED & values.keys()):
        value = values[key]
        if value is None:
            checked[key] = None
        elif key == "sd_model_checkpoint":
            checked[key] = _checkpoint_title(value, checkpoints)
        elif key == "sd_vae":
            checked[key] = _vae_name(value, vaes)
        else:
            checked[key] = _number(key, value)
    if checked.get("sd_model_checkpoint"):
        entry = next(e for e in checkpoints if e.get("title") == checked["sd_model_checkpoint"])
        checked["sd_checkpoint_hash"] = entry.get("sha256")
    elif "sd_model_checkpoint" in checked:
        checked["sd_checkpoint_hash"] = None
    return checked


def _checkpoint_title(value: Any, checkpoints: Sequence[dict[str, Any]]) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidRequest("sd_model_checkpoint", f"must be a checkpoint title, got {value!r}")
    name = value.strip()
    for entry in checkpoints:
        if name in {entry.get("title"), entry.get("model_name"), entry.get("filename"), entry.get("hash")}:
            if entry.get("sdxlpool_kind", "base") != "base":
                raise InvalidRequest("sd_model_checkpoint", f"{name!r} is a {entry['sdxlpool_kind']} checkpoint,"
                                                            " not a base")
            return str(entry["title"])
    have = ", ".join(sorted({str(e.get("title")) for e in checkpoints if e.get("sdxlpool_kind", "base") == "base"}))
    raise InvalidRequest("sd_model_checkpoint", f"no worker has checkpoint {name!r} (the pool has: {have or 'none'})")


def _vae_name(value: Any, vaes: Sequence[dict[str, Any]]) -> str:
    names = {str(entry.get("model_name")) for entry in vaes}
    if isinstance(value, str) and (value in VAE_SPECIAL or value in names):
        return value
    listed = ", ".join(["Automatic", "None", *sorted(names)])
    raise InvalidRequest("sd_vae", f"no worker has a VAE named {value!r} (available: {listed})")


def _number(key: str, value: Any) -> int | float:
    kind, low, high = _NUMBERS[key]
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and (kind is float or isinstance(value, int))
    if not ok or not math.isfinite(value) or not low <= value <= high:
        raise InvalidRequest(key, f"must be {'an integer' if kind is int else 'a number'} from {low:g} to {high:g},"
                                  f" got {value!r}")
    return value


class CallerOptions:
    """The stored options of the most recently active callers (an LRU with an idle expiry)."""

    def __init__(self, *, max_callers: int = MAX_CALLERS, idle_seconds: float = IDLE_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.max_callers, self.idle_seconds, self._clock = max_callers, idle_seconds, clock
        self._stored: OrderedDict[str, tuple[float, dict[str, Any]]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._stored)

    def get(self, identity: str) -> dict[str, Any]:
        """The caller's stored values (empty when none, or forgotten for being idle)."""
        now = self._clock()
        self._expire(now)
        entry = self._stored.get(identity)
        if entry is None:
            return {}
        self._stored[identity] = (now, entry[1])
        self._stored.move_to_end(identity)
        return dict(entry[1])

    def set(self, identity: str, checked: dict[str, Any]) -> None:
        """Store `check_options`' result for the caller (None values forget the key)."""
        values = {**self.get(identity), **checked}
        values = {key: value for key, value in values.items() if value is not None}
        if values:
            self._stored[identity] = (self._clock(), values)
            self._stored.move_to_end(identity)
        else:
            self._stored.pop(identity, None)
        while len(self._stored) > self.max_callers:
            self._stored.popitem(last=False)

    def view(self, identity: str, pool_options: dict[str, Any]) -> dict[str, Any]:
        """GET /sdapi/v1/options for the caller: the pool's options under the caller's own."""
        return {**pool_options, **self.get(identity)}

    def apply(self, identity: str, body: dict[str, Any]) -> dict[str, Any]:
        """A request body with the caller's options merged into its `override_settings` (the
        request's own win) and `override_settings_restore_afterwards` kept true. `body` itself is
        not changed; a body whose `override_settings` is not an object is left to validation."""
        stored = {key: value for key, value in self.get(identity).items() if key in _STORED}
        own = body.get("override_settings")
        if own is not None and not isinstance(own, dict):
            return body
        merged = {**stored, **(own or {})}
        if not merged:
            return body
        return {**body, "override_settings": merged, "override_settings_restore_afterwards": True}

    def _expire(self, now: float) -> None:
        while self._stored:
            identity, (used, _values) = next(iter(self._stored.items()))
            if now - used < self.idle_seconds:
                return
            del self._stored[identity]
