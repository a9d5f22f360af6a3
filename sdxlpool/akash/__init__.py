"""An SDXLPool as an Akash deployment (`sdxlpool sdl POOL.yaml`), for tenants without a cluster.

    sdl.py   pure: SDXLPool -> Akash SDL 2.0 dict (`render_sdl`) and the gateway's backends file
             (`render_backends`); pricing from pricePerHour (`PriceRule`)
    _cli.py  the `sdl` command: read the pool, render, write or print

`add_parser` registers the command and imports only argparse (the rest loads when it runs);
`render_sdl` and friends load `sdl.py` on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sdxlpool._lazy import lazy_attributes
from sdxlpool.akash._cli import add_parser, run_sdl

if TYPE_CHECKING:
    from sdxlpool.akash.sdl import AkashError, PriceRule, render_backends, render_sdl

__all__ = ["AkashError", "PriceRule", "add_parser", "render_backends", "render_sdl", "run_sdl"]

__getattr__ = lazy_attributes(__name__, {name: "sdxlpool.akash.sdl"
                                         for name in ("AkashError", "PriceRule", "render_backends", "render_sdl")})
