"""The worker's opt-in fast modes (issue 16): their names, one home for the spec's
`gpus[].fastMode`, the worker's `--fast-mode` and what the gateway reports in `X-SDXL-Fast-Mode`.

`off` is the exact path (the same images as today, bit for bit) and always the default. A fast mode
trades a little quality for speed and is never on unless asked for:

    deepcache   DeepCache-style feature reuse (sdxlpool/worker/deepcache.py): the UNet's deep
                blocks run every few evaluations, the shallow branch every one

Pure data: no I/O.
"""

from __future__ import annotations

from typing import Literal, get_args

__all__ = ["FastMode", "FAST_MODES", "FAST_MODE_OFF"]

FastMode = Literal["off", "deepcache"]
FAST_MODES: tuple[str, ...] = get_args(FastMode)
FAST_MODE_OFF: FastMode = "off"
