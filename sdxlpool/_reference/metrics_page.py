"""docs/reference/metrics.md: every series of the worker (and sim-worker) and of the gateway.

Read from the Prometheus registries of the real apps, started in-process: a sim-worker (the worker's
own app and ``WorkerService``, whose registry the real worker has too; only the engine differs) and
a gateway with one static backend (so the per-backend series show their labels) and a latency
target (so its series shows). Nothing listens
on a port; the gateway's scrape of its backend simply fails.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["MetricRow", "render", "registries", "rows"]


@dataclass(frozen=True)
class MetricRow:
    name: str  # as exported (counters with their _total)
    kind: str
    labels: tuple[str, ...]
    help: str


def rows(registry: Any) -> list[MetricRow]:
    """One row per metric family of a prometheus_client registry, labels included even before use."""
    found: dict[str, MetricRow] = {}
    for collector in list(registry._collector_to_names):
        # prometheus_client has no public label-name accessor; its metric classes keep them here.
        declared = tuple(getattr(collector, "_labelnames", ()))
        for family in collector.collect():
            sampled = tuple(dict.fromkeys(k for s in family.samples for k in s.labels if k not in ("le", "quantile")))
            # A custom collector's families (GaugeMetricFamily) keep their label names even without samples.
            labelled = tuple(getattr(family, "_labelnames", ()))
            name = family.name + "_total" if family.type == "counter" else family.name
            found[name] = MetricRow(name, family.type, declared or labelled or sampled,
                                    " ".join(family.documentation.split()))
    return sorted(found.values(), key=lambda row: row.name)


@contextmanager
def registries() -> Iterator[dict[str, Any]]:
    """'worker' and 'gateway' -> the registries of a started sim-worker and gateway."""
    from fastapi.testclient import TestClient

    from sdxlpool.gateway.app import create_app as create_gateway
    from sdxlpool.gateway.settings import GatewaySettings
    from sdxlpool.sim import SimSettings, create_sim_app

    worker = create_sim_app(SimSettings.model_validate({"gpu_model": "A100", "step_seconds": 0, "warmup": False}))
    with tempfile.TemporaryDirectory(prefix="sdxlpool-reference-") as folder:
        backends = Path(folder) / "backends.yaml"
        backends.write_text("backends:\n  - {name: w1, url: 'http://127.0.0.1:9', gpu: A100}\n", encoding="utf-8")
        gateway = create_gateway(GatewaySettings.model_validate({"backends_file": backends, "latency_target": 30}))
        with TestClient(worker), TestClient(gateway):
            service = _wait_for(lambda: worker.state.worker.service)  # loads in the background
            _wait_for(lambda: len(gateway.state.gateway.pool))
            yield {"worker": service.metrics.registry, "gateway": gateway.state.gateway.metrics.registry}


def _wait_for(value: Any, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (result := value()):
        if time.monotonic() > deadline:
            raise TimeoutError("the app did not start in time")
        time.sleep(0.01)
    return result


def render(root: Path) -> str:
    titles = {"worker": "worker and sim-worker (`sdxl_worker_*`)", "gateway": "gateway (`sdxl_gateway_*`)"}
    parts = []
    with registries() as found:
        for name, registry in found.items():
            parts.append(f"## {titles[name]}\n")
            parts.append("| metric | type | labels | help |\n|---|---|---|---|\n" + "".join(
                f"| `{row.name}` | {row.kind} | {', '.join(f'`{label}`' for label in row.labels) or '-'} | "
                f"{row.help.replace('|', chr(92) + '|')} |\n" for row in rows(registry)))
    return "\n".join(parts)
