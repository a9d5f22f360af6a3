"""Where an entry's workers may run: node affinity from the GPU labels real nodes carry.

Pure. For each GPU entry, every node is asked "does one of your GPU labels name a GPU this entry
may use?" through :mod:`sdxlpool.api.gpu` (``GpuName.matches``), and "do you carry the entry's
``nodeSelector``?". The Deployment's ``requiredDuringSchedulingIgnoredDuringExecution`` node
affinity is then built from the labels the matching nodes *actually* carry, per label scheme:

- ``nvidia``: one term, ``nvidia.com/gpu.product In [<the matching nodes' values>]``. An
  ``A100`` entry gets ``[NVIDIA-A100-PCIE-40GB, NVIDIA-A100-SXM4-80GB]``, an ``A100-80GB`` entry
  only the latter. (Matching by normalised name is what a plain nodeSelector cannot do.)
- ``akash``: Akash's inventory operator writes GPU *counts* as values, so terms test keys with
  ``Exists``: per matching node, the model key it carries plus, when the entry states them, the
  ``.ram.<N>Gi`` / ``.interface.<pcie|sxm>`` keys that made it match. Terms are ORed.
- ``custom``: ``Exists`` on each matching key of the ``labelKeyTemplate`` shape (a node labelled
  ``example.com/gpu-a100-80gb`` matches an ``A100`` entry of template ``example.com/gpu-{model}``).

When no node matches (reason ``NoMatchingNodes``), the Deployment still gets an affinity, one
built from the entry's *canonical* labels (``nvidia.com/gpu.product In [NVIDIA-A100-SXM4-80GB]``
for ``A100-SXM4-80GB``, the :func:`~sdxlpool.api.gpu.akash_labels` keys, or the template with
the entry's slug). Those labels name the entry's own GPU, so a node that carries one is a node the
entry may use: its pods stay Pending instead of being scheduled on whatever GPU node is free
(dropping the affinity would do that), and they schedule by themselves if such a node appears
before the operator has recomputed the affinity from the new node's real labels.

Node label values are not otherwise trusted: a value that is not an NVIDIA name simply matches
nothing. Akash and custom label values are ignored (only keys count).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from sdxlpool.api.gpu import AKASH_GPU_LABEL_PREFIX, GpuName, akash_labels, parse_gpu_name
from sdxlpool.api.labels import NVIDIA_PRODUCT, label_value
from sdxlpool.api.spec import GpuEntry, Placement

__all__ = [
    "EntryPlacement",
    "Reason",
    "canonical_product_label",
    "node_labels",
    "node_name",
    "place_entry",
]


Reason = Literal["Matched", "NoMatchingNodes"]

# A node-affinity term as Kubernetes writes it: {"matchExpressions": [{key, operator, values?}]}.
Term = dict[str, Any]


@dataclass(frozen=True)
class EntryPlacement:
    """Where one GPU entry's workers may run, and what the pool's status says about it."""

    model: str
    """The entry's ``model`` as written in the spec."""
    slug: str
    """Canonical GPU slug (``a100-80gb``); the key of :attr:`DesiredState.placements`."""
    deployment: str
    """Name of the entry's worker Deployment."""
    matched_nodes: tuple[str, ...]
    """Sorted names of the nodes that carry a matching GPU label and the entry's nodeSelector."""
    reason: Reason
    message: str
    node_selector_terms: tuple[Term, ...]
    """The Deployment's required node-affinity terms (ORed)."""

    @property
    def node_affinity(self) -> dict[str, Any]:
        """``spec.template.spec.affinity.nodeAffinity`` of the entry's Deployment."""
        return {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [dict(term) for term in self.node_selector_terms]
            }
        }


def node_name(node: Mapping[str, Any]) -> str:
    """``metadata.name`` of a Node object (``""`` when missing)."""
    return str((node.get("metadata") or {}).get("name") or "")


def node_labels(node: Mapping[str, Any]) -> Mapping[str, str]:
    """``metadata.labels`` of a Node object (empty when missing)."""
    return (node.get("metadata") or {}).get("labels") or {}


def place_entry(
    entry: GpuEntry, placement: Placement, nodes: Sequence[Mapping[str, Any]], deployment: str
) -> EntryPlacement:
    """Match ``entry`` against ``nodes`` under ``placement``'s label scheme."""
    wanted = entry.gpu
    matched: dict[str, tuple[Term, ...]] = {}
    for node in nodes:
        labels = node_labels(node)
        if any(labels.get(key) != value for key, value in entry.node_selector.items()):
            continue
        terms = tuple(_node_terms(wanted, placement, labels))
        if terms:
            matched[node_name(node)] = terms

    what = _label_description(placement)
    if matched:
        names = tuple(sorted(matched))
        shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        noun = "node carries" if len(names) == 1 else "nodes carry"
        return EntryPlacement(
            model=entry.model,
            slug=entry.slug,
            deployment=deployment,
            matched_nodes=names,
            reason="Matched",
            message=f"{len(names)} {noun} a {what} matching {entry.model}: {shown}",
            node_selector_terms=_merge_terms(placement, [t for terms in matched.values() for t in terms]),
        )
    selector = ""
    if entry.node_selector:
        pairs = ", ".join(f"{key}={value}" for key, value in sorted(entry.node_selector.items()))
        selector = f" and the nodeSelector {pairs}"
    return EntryPlacement(
        model=entry.model,
        slug=entry.slug,
        deployment=deployment,
        matched_nodes=(),
        reason="NoMatchingNodes",
        message=(
            f"no node carries a {what} matching {entry.model}{selector}; "
            f"{deployment} stays Pending until one does"
        ),
        node_selector_terms=_canonical_terms(entry, placement),
    )


def canonical_product_label(gpu: GpuName) -> str:
    """The ``nvidia.com/gpu.product`` value GPU feature discovery would write for ``gpu``.

    ``NVIDIA-`` + model + form factor + memory + ``MIG-<profile>``: ``NVIDIA-A100-SXM4-80GB``,
    ``NVIDIA-RTX-3090``, ``NVIDIA-A100-40GB-MIG-1g.5gb``. Real labels may add words
    (``GeForce``); this one parses back to a name ``gpu`` matches.
    """
    words = ["NVIDIA", *GpuName(gpu.family).display.split()]
    if gpu.form_factor:
        words += gpu.form_factor.upper().split("-")
    if gpu.memory:
        words.append(gpu.memory.upper())
    if gpu.mig:
        words += ["MIG", gpu.mig]
    return label_value("-".join(words))


# --- per scheme ----------------------------------------------------------------------------------


def _node_terms(wanted: GpuName, placement: Placement, labels: Mapping[str, str]) -> Iterator[Term]:
    """The affinity terms that admit this node for ``wanted``; none when it does not match."""
    scheme = placement.label_scheme
    if scheme == "nvidia":
        value = labels.get(NVIDIA_PRODUCT)
        if value is not None and _matches(wanted, value):
            yield _term((NVIDIA_PRODUCT, "In", value))
    elif scheme == "akash":
        yield from _akash_terms(wanted, labels)
    else:
        yield from _custom_terms(wanted, placement, labels)


def _akash_terms(wanted: GpuName, labels: Mapping[str, str]) -> Iterator[Term]:
    # key suffixes: "<model>", "<model>.ram.<N>Gi", "<model>.interface.<pcie|sxm>"
    models: dict[str, dict[str, set[str]]] = {}
    for key in labels:
        if not key.startswith(AKASH_GPU_LABEL_PREFIX):
            continue
        model, _, rest = key[len(AKASH_GPU_LABEL_PREFIX) :].partition(".")
        found = models.setdefault(model, {"ram": set(), "interface": set()})
        kind, _, value = rest.partition(".")
        if kind in found and value:
            found[kind].add(value)
    for model, found in sorted(models.items()):
        base = AKASH_GPU_LABEL_PREFIX + model
        rams: list[str | None] = [*sorted(found["ram"])] or [None]
        interfaces: list[str | None] = [*sorted(found["interface"])] or [None]
        for ram in rams:
            for interface in interfaces:
                text = " ".join(part for part in (model, ram, interface) if part)
                if not _matches(wanted, text):
                    continue
                keys = [base] if base in labels else []
                if wanted.memory and ram:
                    keys.append(f"{base}.ram.{ram}")
                if wanted.form_factor and interface:
                    keys.append(f"{base}.interface.{interface}")
                if not keys:  # only ".ram"/".interface" keys, none the entry asked about
                    keys = [sorted(key for key in labels if key.startswith(base + "."))[0]]
                yield _term(*((key, "Exists", None) for key in keys))


def _custom_terms(wanted: GpuName, placement: Placement, labels: Mapping[str, str]) -> Iterator[Term]:
    before, _, after = (placement.label_key_template or "").partition("{model}")
    shape = re.compile(re.escape(before) + "(.+)" + re.escape(after))
    for key in sorted(labels):
        found = shape.fullmatch(key)
        if found and (_matches(wanted, found[1]) or _matches(wanted, found[1].replace("_", "+"))):
            yield _term((key, "Exists", None))


def _canonical_terms(entry: GpuEntry, placement: Placement) -> tuple[Term, ...]:
    """The affinity of an entry no node matches: its own GPU's canonical labels."""
    scheme = placement.label_scheme
    if scheme == "nvidia":
        return (_term((NVIDIA_PRODUCT, "In", canonical_product_label(entry.gpu))),)
    if scheme == "akash":  # the spec rejects MIG entries under akash, so this cannot raise
        return (_term(*((key, "Exists", None) for key in sorted(akash_labels(entry.model)))),)
    return (_term((placement.label_key(entry.slug), "Exists", None)),)


def _merge_terms(placement: Placement, terms: list[Term]) -> tuple[Term, ...]:
    """One ``In`` term for the nvidia scheme; otherwise the distinct terms, sorted."""
    if placement.label_scheme == "nvidia":
        values = sorted({value for term in terms for value in term["matchExpressions"][0]["values"]})
        return (_term((NVIDIA_PRODUCT, "In", *values)),)
    unique = {repr(term): term for term in terms}
    return tuple(unique[key] for key in sorted(unique))


# --- helpers -------------------------------------------------------------------------------------


def _matches(wanted: GpuName, label: str) -> bool:
    try:
        return wanted.matches(parse_gpu_name(label))
    except ValueError:
        return False


def _term(*requirements: tuple[Any, ...]) -> Term:
    """``("key", "In", "v1", "v2")`` / ``("key", "Exists", None)`` -> a nodeSelectorTerm."""
    expressions = []
    for key, operator, *values in requirements:
        expression: dict[str, Any] = {"key": key, "operator": operator}
        if operator in ("In", "NotIn"):
            expression["values"] = list(values)
        expressions.append(expression)
    return {"matchExpressions": expressions}


def _label_description(placement: Placement) -> str:
    if placement.label_scheme == "nvidia":
        return f"{NVIDIA_PRODUCT} label"
    if placement.label_scheme == "akash":
        return f"{AKASH_GPU_LABEL_PREFIX}<model> label"
    return f"{placement.label_key_template} label"
