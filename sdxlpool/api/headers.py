"""Request headers that switch a behaviour on or off per request, and how such a header reads.

`X-SDXL-Strict` (strict mode, `api/strict.py`) goes from clients to the gateway and on to the
worker; `X-SDXL-Debug-Routing` (the gateway's routing decisions in its answer) stops at the gateway.
Both read the same way: 1/true/yes/on or 0/false/no/off, any case; absent or empty is the default.

`X-SDXL-Fast-Mode` goes the other way: the gateway's answer names the worker's fast mode
(`api/fast_modes.py`: `off`, the exact path, or e.g. `deepcache`), from the worker's
`info.sdxlpool.fast_mode`, so a user sees when an image came from an inexact mode.

Pure data: no I/O.
"""

from __future__ import annotations

from sdxlpool.errors import InvalidRequest

__all__ = ["STRICT_HEADER", "DEBUG_ROUTING_HEADER", "FAST_MODE_HEADER", "switch_header"]

STRICT_HEADER = "X-SDXL-Strict"
DEBUG_ROUTING_HEADER = "X-SDXL-Debug-Routing"
FAST_MODE_HEADER = "X-SDXL-Fast-Mode"  # a response header

_ON = frozenset({"1", "true", "yes", "on"})
_OFF = frozenset({"0", "false", "no", "off"})


def switch_header(name: str, value: str | None, default: bool | None) -> bool | None:
    """The header `name` as a switch; `default` when absent or empty; a 422 naming it otherwise."""
    if value is None or not value.strip():
        return default
    text = value.strip().lower()
    if text in _ON:
        return True
    if text in _OFF:
        return False
    raise InvalidRequest(name, f"must be 1 or 0, got {value!r}")
