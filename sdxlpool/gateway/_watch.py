"""Files the gateway re-reads when they change (the backends file, the API keys file)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from sdxlpool.errors import ConfigError

__all__ = ["watch_file"]

log = logging.getLogger(__name__)
T = TypeVar("T")


async def watch_file(path: Path, load: Callable[[Path], T], apply: Callable[[T], object], interval: float) -> None:
    """Whenever `path`'s modification time or size changes, `load` it and `apply` the result.

    A file that stops being valid is reported and not applied: the last good content stays in
    force. Runs until cancelled.
    """
    seen = _stamp(path)
    while True:
        await asyncio.sleep(interval)
        stamp = _stamp(path)
        if stamp == seen:
            continue
        seen = stamp
        try:
            loaded = load(path)
        except ConfigError as exc:
            log.error("%s not reloaded, keeping the last good version: %s", path, exc)
            continue
        apply(loaded)


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_mtime_ns, stat.st_size
