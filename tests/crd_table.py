"""Pool specs that must be refused at `kubectl apply`, shared by the pydantic check
(tests/api/test_cel_rules.py) and the real API server's (tests/apiserver/test_admission.py).

Each row: the spec, the field the error must name, what pydantic says (a fragment of the
problem at that field) and what the API server says (a fragment of its message: the CEL rule's
message, or the OpenAPI schema's). Both must reject every row, so the CRD's rules and the pydantic
model cannot drift apart. Valid specs: every example pool and the operator's test pools
(`valid_specs`).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


def minimal_spec(**changes: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "image": "worker:1",
        "model": {"volume": {"claimName": "sdxl-weights", "basePath": "base"}},
        "gpus": [{"model": "A100"}],
    }
    spec.update(copy.deepcopy(changes))
    return spec


def one_gpu(**fields: Any) -> dict[str, Any]:
    return minimal_spec(gpus=[{"model": "A100", **fields}])


def pool(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "sdxlpool.dev/v1alpha1", "kind": "SDXLPool", "metadata": {"name": name}, "spec": spec}


@dataclass(frozen=True)
class BadSpec:
    name: str
    spec: dict[str, Any]
    field: str  # the path the error names, from spec: "spec.gpus[0].model"
    pydantic: str  # a fragment of pydantic's problem for that field
    server: str  # a fragment of the API server's message


_AUTOSCALED = {"autoscaling": {"enabled": True}}
_HUB = {"huggingFace": {"repo": "nerijs/pixel-art-xl", "file": "pixel-art-xl.safetensors"}}
_VOLUME_FILE = {"volume": {"path": "loras/a.safetensors"}}

BAD_SPECS = [
    BadSpec("duplicate-gpu", minimal_spec(gpus=[{"model": "A100"}, {"model": "RTX 3090"}, {"model": "A100"}]),
            "spec.gpus", "are both GPU model a100", "a GPU model is listed more than once"),
    BadSpec("duplicate-gpu-other-case", minimal_spec(gpus=[{"model": "L40S"}, {"model": "l40s"}]),
            "spec.gpus", "are both GPU model l40s", "a GPU model is listed more than once"),
    BadSpec("unknown-gpu", one_gpu(model="banana"), "spec.gpus[0].model", "invalid GPU name 'banana'",
            "banana is not an NVIDIA GPU model name"),
    BadSpec("amd-gpu", one_gpu(model="MI300X"), "spec.gpus[0].model", "invalid GPU name 'MI300X'",
            "MI300X is not an NVIDIA GPU model name"),
    BadSpec("steps-over-limit", minimal_spec(defaults={"steps": 100000}, limits={"maxSteps": 60}),
            "spec.defaults.steps", "defaults.steps (100000) exceeds limits.maxSteps (60)",
            "defaults.steps exceeds limits.maxSteps: lower defaults.steps or raise limits.maxSteps"),
    BadSpec("steps-over-default-limit", minimal_spec(defaults={"steps": 61}),
            "spec.defaults.steps", "defaults.steps (61) exceeds limits.maxSteps (60)",
            "defaults.steps exceeds limits.maxSteps"),
    BadSpec("pixels-over-limit", minimal_spec(defaults={"width": 2048, "height": 2048}),
            "spec.defaults.width", "exceeds limits.maxPixels (2097152)",
            "defaults.width x defaults.height exceeds limits.maxPixels"),
    BadSpec("replicas-below-min", {**one_gpu(replicas=1, autoscaling={"minReplicas": 2, "maxReplicas": 4}),
                                   **_AUTOSCALED},
            "spec.gpus[0].replicas", "replicas (1) must lie within autoscaling minReplicas..maxReplicas (2..4)",
            "replicas must lie within autoscaling.minReplicas..maxReplicas"),
    BadSpec("replicas-above-max", one_gpu(replicas=5, autoscaling={"maxReplicas": 4}),
            "spec.gpus[0].replicas", "replicas (5) must lie within autoscaling minReplicas..maxReplicas (1..4)",
            "replicas must lie within autoscaling.minReplicas..maxReplicas"),
    BadSpec("min-over-max", one_gpu(replicas=3, autoscaling={"minReplicas": 5, "maxReplicas": 2}),
            "spec.gpus[0].autoscaling.minReplicas", "minReplicas (5) exceeds maxReplicas (2)",
            "minReplicas exceeds maxReplicas"),
    BadSpec("width-not-multiple-of-8", minimal_spec(defaults={"width": 1020}), "spec.defaults.width",
            "multiple of 8", "multiple of 8"),
    BadSpec("fast-mode-unknown", one_gpu(fastMode="turbo"), "spec.gpus[0].fastMode", "'off' or 'deepcache'",
            'supported values: "off", "deepcache"'),
    BadSpec("price-zero", one_gpu(pricePerHour=0), "spec.gpus[0].pricePerHour", "greater than 0",
            "greater than 0"),
    BadSpec("price-negative", one_gpu(pricePerHour=-1.5), "spec.gpus[0].pricePerHour", "greater than 0",
            "greater than 0"),
    BadSpec("model-two-sources",
            minimal_spec(model={"volume": {"claimName": "w", "basePath": "b"}, "huggingFace": {"repo": "a/b"}}),
            "spec.model", "set exactly one of volume or huggingFace", "set exactly one of model.volume or "
            "model.huggingFace"),
    BadSpec("model-no-source", minimal_spec(model={}), "spec.model", "set exactly one of volume or huggingFace",
            "set exactly one of model.volume or model.huggingFace"),
    BadSpec("lora-two-sources", minimal_spec(loras=[{**_HUB, **_VOLUME_FILE}]), "spec.loras[0]",
            "set exactly one of volume or huggingFace", "set exactly one of volume or huggingFace"),
    BadSpec("cache-two-kinds",
            minimal_spec(model={"huggingFace": {"repo": "a/b", "cache": {"claimName": "c", "emptyDir": {}}}}),
            "spec.model.huggingFace.cache", "set claimName or emptyDir, not both",
            "set claimName or emptyDir, not both"),
    BadSpec("compile-cache-two-kinds", minimal_spec(compileCache={"claimName": "k", "emptyDir": {}}),
            "spec.compileCache", "set claimName or emptyDir, not both", "set claimName or emptyDir, not both"),
    BadSpec("compile-cache-empty-claim", minimal_spec(compileCache={"claimName": ""}),
            "spec.compileCache.claimName", "at least 1 character", "should be at least 1"),
    BadSpec("custom-without-template", minimal_spec(placement={"labelScheme": "custom"}), "spec.placement",
            "labelScheme custom needs labelKeyTemplate", "labelScheme custom needs labelKeyTemplate"),
    BadSpec("template-without-custom",
            minimal_spec(placement={"labelScheme": "akash", "labelKeyTemplate": "example.com/gpu.{model}"}),
            "spec.placement", "labelKeyTemplate is only used with labelScheme custom, not akash",
            "labelKeyTemplate is only used with labelScheme custom, not akash"),
    BadSpec("toleration-exists-with-value",
            one_gpu(tolerations=[{"key": "k", "operator": "Exists", "value": "v"}]),
            "spec.gpus[0].tolerations[0]", "operator Exists takes no value", "operator Exists takes no value"),
    BadSpec("toleration-keyless-equal", one_gpu(tolerations=[{"value": "v"}]),
            "spec.gpus[0].tolerations[0]", "a toleration without a key needs operator Exists",
            "a toleration without a key needs operator Exists"),
    BadSpec("toleration-seconds-without-no-execute",
            one_gpu(tolerations=[{"key": "k", "effect": "NoSchedule", "tolerationSeconds": 30}]),
            "spec.gpus[0].tolerations[0]", "tolerationSeconds needs effect NoExecute",
            "tolerationSeconds needs effect NoExecute"),
]


def example_specs() -> dict[str, dict[str, Any]]:
    """The SDXLPool objects in examples/*.yaml, by file name."""
    found = {}
    for path in sorted(EXAMPLES.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            if isinstance(document, dict) and document.get("kind") == "SDXLPool":
                found[path.name] = document
    return found
