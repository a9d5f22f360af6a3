"""Lazy attributes for a package's `__init__`: a name is imported from its module on first use.

The CLI imports `sdxlpool.sim`, `sdxlpool.akash` and `sdxlpool.client` to build its parser and must
start without fastapi, torch or websockets, so their heavy names load only when asked for:

    __getattr__ = lazy_attributes(__name__, {"SimEngine": "sdxlpool.sim._engine", ...})

(with the same names imported under `if TYPE_CHECKING:` for type checkers and editors).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_attributes"]


def lazy_attributes(package: str, homes: Mapping[str, str]) -> Callable[[str], Any]:
    """A module-level `__getattr__` for `package` that imports each name in `homes` from its module."""
    homes = dict(homes)

    def __getattr__(name: str) -> Any:
        if name not in homes:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(homes[name]), name)

    return __getattr__
