"""Labels and annotations: the one home of every key the operator writes and others read.

Pure. The operator puts these on a pool's children; the gateway's Kubernetes discovery selects and
describes workers by them; the Helm chart's monitoring selects by them; tests and tools import
them from here. No other module spells a key.

Labels (values through :func:`label_value`)::

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

Keys of others that the operator reads or writes: ``nvidia.com/gpu.product`` (the node label GPU
Feature Discovery sets, which placement matches; Akash's capability labels are in
:mod:`sdxlpool.api.gpu`), ``nvidia.com/gpu`` (the device plugin's resource and taint) and
``kubernetes.io/metadata.name`` (the namespace label NetworkPolicies select namespaces by).
"""

from __future__ import annotations

import hashlib
import re
from typing import Literal

from sdxlpool.api.ports import METRICS_PATH

__all__ = [
    "ANNOTATION_GPU_MODEL",
    "ANNOTATION_LOCATION",
    "ANNOTATION_PRICE",
    "ANNOTATION_PROVIDER",
    "COMPONENT",
    "GPU",
    "DIGEST_CHARS",
    "GPU_RESOURCE",
    "INSTANCE",
    "MANAGED_BY",
    "MANAGER",
    "NAME",
    "NAMESPACE_NAME",
    "NODE_GPU_LABEL_PREFIXES",
    "NVIDIA_PRODUCT",
    "POOL",
    "PART_OF",
    "SCRAPE",
    "SCRAPE_PATH",
    "SCRAPE_PORT",
    "Component",
    "child_labels",
    "label_value",
    "scrape_annotations",
    "selector",
    "short_digest",
]

NAME = "app.kubernetes.io/name"
INSTANCE = "app.kubernetes.io/instance"
COMPONENT = "app.kubernetes.io/component"
MANAGED_BY = "app.kubernetes.io/managed-by"
PART_OF = "app.kubernetes.io/part-of"
POOL = "sdxlpool.dev/pool"
GPU = "sdxlpool.dev/gpu"
MANAGER = "sdxlpool-operator"

ANNOTATION_GPU_MODEL = "sdxlpool.dev/gpu-model"
ANNOTATION_PROVIDER = "sdxlpool.dev/provider"
ANNOTATION_LOCATION = "sdxlpool.dev/location"
ANNOTATION_PRICE = "sdxlpool.dev/price-per-hour"

# Other projects' keys.
NVIDIA_PRODUCT = "nvidia.com/gpu.product"
GPU_RESOURCE = "nvidia.com/gpu"
NAMESPACE_NAME = "kubernetes.io/metadata.name"
NODE_GPU_LABEL_PREFIXES = ("nvidia.com/gpu", "akash.network/capabilities.gpu")
"""Node labels that say which GPU a node has: a change of one may re-place a pool's workers."""

# Prometheus' conventional scrape hints (annotations, not labels: a pod's port is no selector).
SCRAPE = "prometheus.io/scrape"
SCRAPE_PORT = "prometheus.io/port"
SCRAPE_PATH = "prometheus.io/path"

Component = Literal["worker", "gateway"]

_MAX_VALUE = 63
DIGEST_CHARS = 8
_LABEL_VALUE = re.compile(r"([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?")


def short_digest(text: str) -> str:
    """8 hex digits of the SHA-256 of ``text``: what names and values made valid are suffixed with."""
    return hashlib.sha256(text.encode()).hexdigest()[:DIGEST_CHARS]


def label_value(text: str) -> str:
    """``text`` as a label value: ``+`` becomes ``_``; over 63 characters, cut and hashed.

    Pool names (DNS subdomains, up to 253 characters) and GPU slugs are the inputs; both only
    use characters a label value allows, except ``+`` in MIG profiles (``1g.10gb+me``), which
    no slug otherwise contains, so the ``_`` keeps values distinct. The operator labels with it and
    the gateway's discovery selects with it: both sides must agree on the value, hence one home.
    """
    value = text.replace("+", "_")
    if len(value) <= _MAX_VALUE and _LABEL_VALUE.fullmatch(value):
        return value
    clean = re.sub(r"[^A-Za-z0-9_.-]", "-", value)
    head = clean[: _MAX_VALUE - DIGEST_CHARS - 1].strip("-_.")
    return f"{head}-{short_digest(text)}" if head else short_digest(text)


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
    return {SCRAPE: "true", SCRAPE_PORT: str(port), SCRAPE_PATH: METRICS_PATH}
