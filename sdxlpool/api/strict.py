"""Strict mode: a request with anything that would not be applied is refused (422), not approximated.

`info.sdxlpool.ignored` lists what a request asked for that the pool did not apply (fields, see
`sdxlpool.api.ignored`; unknown styles; prompt constructs such as a missing LoRA). By default the
image is made anyway, as A1111 itself goes on past a missing LoRA or style. In strict mode the
list is an error instead: HTTP 422 `{"error": "not_applied", "detail": ..., "errors": [...]}`,
one entry per item of the list, nothing generated.

Strict mode is on when the worker (or the gateway) runs with `--strict`, and per request with the
header `X-SDXL-Strict: 1`; `X-SDXL-Strict: 0` turns it off for that request even on a strict
server (strict mode protects the client, who may accept an approximation). The gateway checks
the fields itself, before routing, and passes its decision on to the worker in the same header,
so the worker's checks (styles, LoRAs, prompt constructs) follow it too.
"""

from __future__ import annotations

from collections.abc import Sequence

from sdxlpool.api.headers import STRICT_HEADER, switch_header
from sdxlpool.errors import InvalidRequest

__all__ = ["STRICT_HEADER", "strict_from_header", "NotApplied", "check_strict"]


def strict_from_header(value: str | None, default: bool | None) -> bool | None:
    """The X-SDXL-Strict header as a switch (1/true/yes/on, 0/false/no/off); absent or empty: `default`."""
    return switch_header(STRICT_HEADER, value, default)


class NotApplied(InvalidRequest):
    """Strict mode and something in the request would not be applied (422, one `errors` entry each)."""

    code = "not_applied"

    def __init__(self, ignored: Sequence[str]) -> None:
        super().__init__("strict", "would not be applied: " + "; ".join(ignored))
        self.ignored = list(ignored)
        self.field_errors = [{"field": entry, "message": "would not be applied (strict mode)"} for entry in ignored]


def check_strict(ignored: Sequence[str], strict: bool) -> None:
    """Raise `NotApplied` naming every entry when `strict` and the list is not empty."""
    if strict and ignored:
        raise NotApplied(ignored)
