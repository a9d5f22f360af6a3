"""An SDXLPool as an Akash deployment (`sdxlpool sdl POOL.yaml`), for tenants without a cluster.

    sdl.py   pure: SDXLPool -> Akash SDL 2.0 dict (`render_sdl`) and the gateway's backends file
             (`render_backends`); pricing from pricePerHour (`PriceRule`)
    _cli.py  the `sdl` command: read the pool, render, write or print

`add_parser` registers the command and imports only argparse (the rest loads when it runs);
`render_sdl` and friends load `sdl.py` on first use.
"""

from __future__ import annotations

from typing import Any

from sdxlpool.akash._cli import add_parser, run_sdl

__all__ = ["AkashError", "PriceRule", "add_parser", "render_backends", "render_sdl", "run_sdl"]

_LAZY = ("AkashError", "PriceRule", "render_backends", "render_sdl")


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from sdxlpool.akash import sdl

        return getattr(sdl, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
