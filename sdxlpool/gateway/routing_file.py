"""`--routing FILE`: a whole routing profile from YAML, built by `routing.scheduler_from_config`.

    routing:                      # the top-level key is optional
      filters: [gpu_allowed, not_tried, available, {type: freshness, staleAfter: 2.0}]
      scorers:
        - {type: completion_time, weight: 1.0}
        - {type: cost, weight: 1.0, maxSlowdown: 1.5}
      picker: best

A file that is not valid is a `ConfigError` naming the file and the plugin or key that is wrong, so
`sdxlpool gateway --routing FILE` fails at start with one line, never at the first request.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from sdxlpool._files import read_yaml
from sdxlpool.errors import ConfigError
from sdxlpool.gateway.routing import Scheduler, scheduler_from_config

__all__ = ["load_routing_file"]


def load_routing_file(path: Path, *, on_plugin_seconds: Callable[[str, float], None] | None = None) -> Scheduler:
    data = read_yaml(path)
    if isinstance(data, dict) and set(data) == {"routing"}:
        data = data["routing"]
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping with filters, scorers and picker")
    try:
        return scheduler_from_config(data, on_plugin_seconds=on_plugin_seconds)
    except ValueError as exc:
        raise ConfigError(f"{path}: {exc}") from None
