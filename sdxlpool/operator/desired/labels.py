"""Labels and annotations on every child: what selects it, and what the gateway reads from it.

Labels (values through :func:`~sdxlpool.operator.desired.names.label_value`)::

    app.kubernetes.io/name: sdxlpool
    app.kubernetes.io/instance: <pool>
    app.kubernetes.io/component: worker | gateway
    app.kubernetes.io/managed-by: sdxlpool-operator
    sdxlpool.dev/pool: <pool>
    sdxlpool.dev/gpu: <slug>             (workers only)

Selectors use only ``sdxlpool.dev/pool``, ``app.kubernetes.io/component`` and, for a worker
Deployment, ``sdxlpool.dev/gpu``: a Deployment's selector is immutable, so it must not contain
anything a spec edit could change.

Worker pod templates also carry annotations, a contract with the gateway's Kubernetes discovery:
``sdxlpool.dev/gpu-model`` (the entry's model as written), ``sdxlpool.dev/provider``,
``sdxlpool.dev/location`` and ``sdxlpool.dev/price-per-hour`` (empty when the spec leaves them
out, so removing a value from the spec removes it from the pods), plus the usual
``prometheus.io/scrape|port|path`` scrape hints.
"""

from __future__ import annotations

from typing import Literal

from sdxlpool.operator.desired.names import label_value

__all__ = [
    "ANNOTATION_GPU_MODEL",
    "ANNOTATION_LOCATION",
    "ANNOTATION_PRICE",
    "ANNOTATION_PROVIDER",
    "COMPONENT",
    "GPU",
    "INSTANCE",
    "MANAGED_BY",
    "MANAGER",
    "NAME",
    "POOL",
    "Component",
    "child_labels",
    "scrape_annotations",
    "selector",
]

NAME = "app.kubernetes.io/name"
INSTANCE = "app.kubernetes.io/instance"
COMPONENT = "app.kubernetes.io/component"
MANAGED_BY = "app.kubernetes.io/managed-by"
POOL = "sdxlpool.dev/pool"
GPU = "sdxlpool.dev/gpu"
MANAGER = "sdxlpool-operator"

ANNOTATION_GPU_MODEL = "sdxlpool.dev/gpu-model"
ANNOTATION_PROVIDER = "sdxlpool.dev/provider"
ANNOTATION_LOCATION = "sdxlpool.dev/location"
ANNOTATION_PRICE = "sdxlpool.dev/price-per-hour"

Component = Literal["worker", "gateway"]


def selector(pool: str, component: Component, slug: str | None = None) -> dict[str, str]:
    """The labels that select a pool's workers (of one GPU slug, when given) or its gateway."""
    chosen = {POOL: label_value(pool), COMPONENT: component}
    if slug is not None:
        chosen[GPU] = label_value(slug)
    return chosen


def child_labels(pool: str, component: Component | None = None, slug: str | None = None) -> dict[str, str]:
    """Every label of a child: the standard ``app.kubernetes.io`` set plus the selector's."""
    result = {NAME: "sdxlpool", INSTANCE: label_value(pool), MANAGED_BY: MANAGER, POOL: label_value(pool)}
    if component is not None:
        result[COMPONENT] = component
    if slug is not None:
        result[GPU] = label_value(slug)
    return result


def scrape_annotations(port: int) -> dict[str, str]:
    """Prometheus' conventional pod annotations: scrape ``/metrics`` on ``port``."""
    return {"prometheus.io/scrape": "true", "prometheus.io/port": str(port), "prometheus.io/path": "/metrics"}
