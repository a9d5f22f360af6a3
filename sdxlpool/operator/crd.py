"""The SDXLPool CustomResourceDefinition, generated from the pydantic spec model.

Pure. ``crds/sdxlpools.sdxlpool.dev.yaml`` is this module's output (``python -m
sdxlpool.operator.crd > crds/sdxlpools.sdxlpool.dev.yaml``); a test fails when the two differ,
so the CRD and :class:`sdxlpool.api.spec.SDXLPoolSpec` cannot drift apart.

``openAPIV3Schema.properties.spec`` is ``SDXLPoolSpec.model_json_schema(by_alias=True)`` made
into a Kubernetes *structural* schema by :func:`structural`:

- ``$ref``\\ s are inlined (the models are not recursive); a field's own description wins over
  its model's docstring;
- ``anyOf: [X, {type: null}]`` (pydantic's ``Optional``) becomes ``X`` plus ``nullable: true``;
- ``default: null`` and ``title`` are dropped, descriptions lose their RST backticks; other defaults are kept (object fields whose model
  has defaults for everything carry ``default: {}``, so the API server fills in what pydantic
  would);
- ``additionalProperties: false`` (pydantic's ``extra="forbid"``) is dropped: Kubernetes does not
  allow it beside ``properties``; it prunes unknown fields instead, and ``kubectl`` (field
  validation ``Strict``) reports them;
- ``const`` becomes a one-value ``enum``; a numeric ``exclusiveMinimum``/``exclusiveMaximum``
  becomes the OpenAPI v3.0 boolean form;
- quantities keep the int-or-string form (``anyOf: [{type: integer}, {type: string}]`` with
  ``x-kubernetes-int-or-string``), the one ``anyOf`` a structural schema permits.

What a schema cannot say (exactly one model source, no duplicate GPU models after name
normalisation, defaults within limits, a parseable GPU name) is checked by the operator, which
reports it as a Degraded condition naming the field.

``status`` is typed for the fields the operator writes (``observedGeneration``, ``summary`` such
as ``"3/6"``, ``gpuModels``, ``conditions``, ``gpus``, ``gateway``) and keeps unknown fields.
"""

from __future__ import annotations

import re
import sys
from typing import Any

import yaml

from sdxlpool.api import labels as lbl
from sdxlpool.api.spec import GROUP, KIND, PLURAL, VERSION, SDXLPoolSpec

__all__ = ["CRD_NAME", "SHORT_NAMES", "crd_manifest", "crd_yaml", "spec_schema", "status_schema", "structural"]

CRD_NAME = f"{PLURAL}.{GROUP}"
SHORT_NAMES = ["sdxl"]

_DROPPED = frozenset({"title", "$defs"})
_RULES = "x-kubernetes-validations"


def structural(schema: dict[str, Any]) -> dict[str, Any]:
    """A pydantic JSON schema (with ``$defs``) as a Kubernetes structural schema, refs inlined."""
    return _convert(schema, schema.get("$defs", {}))


def _convert(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in node:
        target = defs[node["$ref"].rsplit("/", 1)[-1]]
        siblings = {key: value for key, value in node.items() if key != "$ref"}
        merged = {**target, **siblings}
        rules = [*target.get(_RULES, []), *siblings.get(_RULES, [])]  # the model's and the field's own
        if rules:
            merged[_RULES] = rules
        return _convert(merged, defs)
    if "anyOf" in node:
        options = [option for option in node["anyOf"] if option.get("type") != "null"]
        nullable = len(options) < len(node["anyOf"])
        rest = {key: value for key, value in node.items() if key != "anyOf"}
        if len(options) == 1:
            merged = _convert({**options[0], **rest}, defs)
        else:
            merged = _convert(rest, defs)
            merged["anyOf"] = [_convert(option, defs) for option in options]
        if nullable:
            merged["nullable"] = True
        return merged

    result: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROPPED or (key == "default" and value is None):
            continue
        if key == "properties":
            result[key] = {name: _convert(child, defs) for name, child in value.items()}
        elif key == "items":
            result[key] = _convert(value, defs)
        elif key == "additionalProperties":
            if isinstance(value, dict):
                result[key] = _convert(value, defs)
        elif key == "description":
            result[key] = _plain(value)
        elif key == "const":
            result["enum"] = [value]
        elif key in ("exclusiveMinimum", "exclusiveMaximum") and not isinstance(value, bool):
            result["minimum" if key == "exclusiveMinimum" else "maximum"] = value
            result[key] = True
        else:
            result[key] = value
    if "properties" in result and "type" not in result:
        result["type"] = "object"
    return result


def _plain(text: str) -> str:
    """A docstring as ``kubectl explain`` shows it well: no RST markup, a paragraph or list item per line."""
    text = re.sub(r":\w+:`([^`]*)`", r"\1", text).replace("``", "")
    lines = []
    for paragraph in text.split("\n\n"):
        items = re.split(r"\n(?=- )", paragraph.strip())
        lines.append("\n".join(" ".join(item.split()) for item in items))
    return "\n\n".join(lines)


def spec_schema() -> dict[str, Any]:
    """``openAPIV3Schema.properties.spec``: the structural form of the pydantic spec model."""
    return structural(SDXLPoolSpec.model_json_schema(by_alias=True))


def _condition_schema() -> dict[str, Any]:
    text = {"type": "string"}
    return {
        "type": "object",
        "required": ["type", "status"],
        "properties": {
            "type": {"type": "string", "description": "Ready, Progressing or Degraded."},
            "status": {"type": "string", "enum": ["True", "False", "Unknown"],
                       "description": "Whether the condition holds."},
            "reason": {**text, "description": "One CamelCase word saying why, e.g. ReplicasNotReady."},
            "message": {**text, "description": "What a person should know: which GPU model, which field."},
            "lastTransitionTime": {"type": "string", "format": "date-time",
                                   "description": "When status last changed."},
            "observedGeneration": {"type": "integer", "format": "int64", "minimum": 0,
                                   "description": "The spec generation this condition is about."},
        },
    }


def _replicas_schema(description: str) -> dict[str, Any]:
    def count(what: str) -> dict[str, Any]:
        return {"type": "integer", "minimum": 0, "description": what}

    return {
        "type": "object",
        "description": description,
        "properties": {
            "model": {"type": "string", "description": "The GPU model as written in the spec."},
            "slug": {"type": "string", "description": "Canonical GPU name, e.g. a100-80gb."},
            "desired": count("Replicas wanted (the spec's, or the autoscaler's)."),
            "ready": count("Replicas whose pods are ready."),
            "available": count("Replicas ready for at least the Deployment's minReadySeconds."),
            "matchedNodes": {
                "type": "array",
                "items": {"type": "string"},
                "description": "Nodes whose labels match this GPU model (and its nodeSelector).",
            },
            "message": {"type": "string", "description": "Empty, or why replicas are missing (no matching "
                        "nodes, a failed rollout)."},
        },
    }


def _autoscaling_schema() -> dict[str, Any]:
    count = {"type": "integer", "minimum": 0}
    stamp = {"type": "string", "format": "date-time"}
    return {
        "type": "object",
        "description": "What the autoscaler decided (spec.autoscaling.enabled), and why.",
        "properties": {
            "lastScaleTime": {**stamp, "description": "When it last changed a GPU model's replicas."},
            "demandReadAt": {**stamp, "description": "When it last read the gateway's demand."},
            "message": {"type": "string", "description": "Empty, or why the demand could not be read or a "
                        "scale was refused (the pool then keeps its size)."},
            "gpus": {"type": "array", "description": "Per GPU model with autoscaling bounds.", "items": {
                "type": "object",
                "properties": {
                    "model": {"type": "string", "description": "The GPU model as written in the spec."},
                    "slug": {"type": "string", "description": "Canonical GPU name, e.g. a100-80gb."},
                    "desiredReplicas": {**count, "description": "The replicas it runs, after the delays."},
                    "recommendedReplicas": {**count, "description": "What the demand asks for now."},
                    "reason": {"type": "string", "description": "Why: the load placed on this model and "
                               "what it needs, or the bound that held it."},
                    "predictedP95Seconds": {"type": "number", "minimum": 0,
                                            "description": "Predicted p95 at recommendedReplicas for the demand."},
                },
            }},
        },
    }


def status_schema() -> dict[str, Any]:
    """``openAPIV3Schema.properties.status``: what the operator reports; unknown fields kept."""
    return {
        "type": "object",
        "description": "What the operator observed and did; written by the operator only.",
        "x-kubernetes-preserve-unknown-fields": True,
        "properties": {
            "observedGeneration": {"type": "integer", "format": "int64", "minimum": 0,
                                   "description": "The spec generation this status is about."},
            "summary": {"type": "string", "description": "Ready worker replicas / desired, e.g. 3/6."},
            "gpuModels": {"type": "string", "description": "The pool's GPU models, comma separated."},
            "conditions": {
                "type": "array",
                "description": "Ready, Progressing and Degraded, as Deployments report theirs.",
                "items": _condition_schema(),
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["type"],
            },
            "gpus": {"type": "array", "description": "Workers per GPU model, in spec order.",
                     "items": _replicas_schema("One GPU model's workers.")},
            "gateway": _replicas_schema("The pool's gateway Deployment."),
            "gatewayURL": {"type": "string", "description": "The gateway's in-cluster URL (its Service), e.g. "
                           "http://sdxl-gateway.default.svc:8080; unset without a gateway."},
            "autoscaling": _autoscaling_schema(),
        },
    }


def crd_manifest() -> dict[str, Any]:
    """The ``apiextensions.k8s.io/v1`` CustomResourceDefinition of SDXLPool."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": CRD_NAME,
            "labels": {lbl.NAME: "sdxlpool", lbl.PART_OF: "sdxlpool"},
        },
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": KIND.lower(),
                "shortNames": list(SHORT_NAMES),
                "categories": ["all", "sdxlpool"],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": [
                        {
                            "name": "Ready",
                            "type": "string",
                            "jsonPath": ".status.summary",
                            "description": "Ready worker replicas / desired.",
                        },
                        {
                            "name": "GPUs",
                            "type": "string",
                            "jsonPath": ".status.gpuModels",
                            "description": "GPU models of the pool.",
                        },
                        {
                            "name": "Gateway",
                            "type": "string",
                            "jsonPath": ".status.gatewayURL",
                            "description": "The gateway's in-cluster URL.",
                        },
                        {
                            "name": "Degraded",
                            "type": "string",
                            "jsonPath": '.status.conditions[?(@.type=="Degraded")].status',
                            "priority": 1,
                        },
                        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
                    ],
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": "A pool of SDXL workers on several NVIDIA GPU models, with a gateway.",
                            "required": ["spec"],
                            "properties": {
                                "apiVersion": {"type": "string", "description": "sdxlpool.dev/v1alpha1."},
                                "kind": {"type": "string", "description": "SDXLPool."},
                                # The API server allows nothing more here (not even a description).
                                "metadata": {"type": "object"},
                                "spec": spec_schema(),
                                "status": status_schema(),
                            },
                        }
                    },
                }
            ],
        },
    }


class _Dumper(yaml.SafeDumper):
    """No anchors/aliases; multi-line strings as literal blocks."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _text)


def crd_yaml() -> str:
    """The CRD as the YAML committed in ``crds/``."""
    header = "# Generated by `python -m sdxlpool.operator.crd` from sdxlpool/api/spec.py; do not edit.\n"
    return header + yaml.dump(crd_manifest(), Dumper=_Dumper, sort_keys=False, width=100)


if __name__ == "__main__":
    sys.stdout.write(crd_yaml())
