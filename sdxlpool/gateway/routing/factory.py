"""Build a scheduler from configuration, each plugin by its type name (llm-d's plugin factory).

    routing:
      filters: [gpu_allowed, not_tried, available, {type: freshness, staleAfter: 2.0}]
      scorers:
        - {type: completion_time, weight: 1.0}
        - {type: preference, weight: 0.1}
        - {type: cost, weight: 1.0, maxSlowdown: 1.5}
      picker: best

A plugin is a type name, or a mapping with `type`, an optional `name` (to run two instances of one
type), `weight` (scorers only, default 1.0) and its parameters in camelCase. Anything unknown is a
`ValueError` that names it.
"""

from __future__ import annotations

import dataclasses
import random
import re
from collections.abc import Callable, Mapping
from typing import Any

from sdxlpool.gateway.routing.estimates import DEFAULT_STEP_SECONDS
from sdxlpool.gateway.routing.filters import Available, Freshness, GpuAllowed, NotTried
from sdxlpool.gateway.routing.pickers import Best, FirstFree, RoundRobin
from sdxlpool.gateway.routing.plugins import Filter, Picker, Scorer
from sdxlpool.gateway.routing.scheduler import Scheduler
from sdxlpool.gateway.routing.scorers import CompletionTime, Cost, LeastInflight, LoraAffinity, Preference

__all__ = ["FILTERS", "SCORERS", "PICKERS", "scheduler_from_config"]

FILTERS: dict[str, type] = {"available": Available, "freshness": Freshness, "gpu_allowed": GpuAllowed,
                            "not_tried": NotTried}
SCORERS: dict[str, type] = {"completion_time": CompletionTime, "cost": Cost, "least_inflight": LeastInflight,
                            "lora_affinity": LoraAffinity, "preference": Preference}
PICKERS: dict[str, type] = {"best": Best, "first_free": FirstFree, "round_robin": RoundRobin}


def scheduler_from_config(
    config: Mapping[str, Any],
    *,
    rng: random.Random | None = None,
    on_plugin_seconds: Callable[[str, float], None] | None = None,
) -> Scheduler:
    unknown = sorted(set(config) - {"filters", "scorers", "picker"})
    if unknown:
        raise ValueError(f"routing.{unknown[0]}: unknown key (expected filters, scorers, picker)")
    filters: list[Filter] = [
        _build("filters", i, entry, FILTERS)[0] for i, entry in enumerate(_list(config, "filters"))
    ]
    scorers: list[tuple[Scorer, float]] = [
        _build("scorers", i, entry, SCORERS, weighted=True) for i, entry in enumerate(_list(config, "scorers"))
    ]
    picker: Picker = _build("picker", None, config.get("picker", "best"), PICKERS,
                            extra={"rng": rng} if rng is not None else {})[0]
    # The decision's expected_seconds uses the same fallback speed as the completion_time scorer.
    step = next((s.default_step_seconds for s, _ in scorers if isinstance(s, CompletionTime)), DEFAULT_STEP_SECONDS)
    return Scheduler(filters, scorers, picker, on_plugin_seconds, default_step_seconds=step)


def _list(config: Mapping[str, Any], key: str) -> list[Any]:
    value = config.get(key, [])
    if not isinstance(value, list):
        raise ValueError(f"routing.{key}: expected a list of plugins")
    return value


def _build(section: str, index: int | None, entry: Any, types: dict[str, type], *, weighted: bool = False,
           extra: Mapping[str, Any] | None = None) -> tuple[Any, float]:
    where = f"routing.{section}" + (f"[{index}]" if index is not None else "")
    spec: Mapping[str, Any] = {"type": entry} if isinstance(entry, str) else entry
    if not isinstance(spec, Mapping) or not isinstance(spec.get("type"), str):
        raise ValueError(f"{where}: expected a plugin type name or a mapping with 'type'")
    kind = spec["type"]
    if kind not in types:
        raise ValueError(f"{where}.type: unknown plugin {kind!r} (known: {', '.join(sorted(types))})")
    cls = types[kind]
    init = {f.name for f in dataclasses.fields(cls) if f.init}
    allowed = init - {"rng"}
    kwargs: dict[str, Any] = {key: value for key, value in (extra or {}).items() if key in init}  # rng if it takes one
    weight = 1.0
    for key, value in spec.items():
        if key == "type":
            continue
        if key == "weight" and weighted:
            weight = value
            continue
        field_name = _snake(key)
        if field_name not in allowed:
            raise ValueError(f"{where}.{key}: unknown parameter of {kind}"
                             f" (known: {', '.join(sorted(_camel(n) for n in allowed)) or 'none'})")
        kwargs[field_name] = value
    try:
        return cls(**kwargs), weight
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{where}: {exc}") from None


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)([A-Z])", r"_\1", name).lower()


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(word.title() for word in rest)
