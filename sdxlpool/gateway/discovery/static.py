"""The static backends file: workers anywhere (other clusters, Akash deployments, plain A1111).

    backends:
      - name: a100-1
        url: http://127.0.0.1:7861
        gpu: A100
        provider: Foundry Staking
        location: US-East
        type: sdxlpool        # or a1111: a plain A1111 server without /metrics

The file is re-read when it changes (checked every `reload_interval`), so workers can be added or
removed without a restart; a file that stops being valid is reported and the last good list kept.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from sdxlpool._files import read_yaml
from sdxlpool.errors import ConfigError
from sdxlpool.gateway._watch import watch_file
from sdxlpool.gateway.backends import Backend

__all__ = ["load_backends_file", "watch_backends_file"]

log = logging.getLogger(__name__)


def load_backends_file(path: Path) -> list[Backend]:
    data = read_yaml(path)
    entries = data.get("backends") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise ConfigError(f"{path}: expected a mapping with a 'backends' list")
    backends, names = [], set()
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise ConfigError(f"{path}: backends[{i}]: expected a mapping")
        try:
            backend = Backend.from_mapping(entry)
        except ValueError as exc:
            raise ConfigError(f"{path}: backends[{i}]: {exc}") from None
        if backend.name in names:
            raise ConfigError(f"{path}: backends[{i}]: duplicate name {backend.name!r}")
        names.add(backend.name)
        backends.append(backend)
    return backends


async def watch_backends_file(path: Path, apply: Callable[[list[Backend]], None], interval: float) -> None:
    """Re-read `path` whenever it changes and `apply` the new list; runs until cancelled."""
    def reloaded(backends: list[Backend]) -> None:
        log.info("backends file reloaded: %d backends", len(backends))
        apply(backends)

    await watch_file(path, load_backends_file, reloaded, interval)
