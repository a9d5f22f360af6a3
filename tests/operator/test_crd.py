"""The SDXLPool CRD: committed file in sync with the pydantic model, structural, and as strict as it can be."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from sdxlpool.api.spec import PoolSpecError, load_spec
from sdxlpool.operator.crd import CRD_NAME, crd_manifest, crd_yaml, spec_schema, status_schema, structural
from tests.operator.test_desired_state import CASES

ROOT = Path(__file__).resolve().parents[2]
CRD_FILE = ROOT / "crds" / "sdxlpools.sdxlpool.dev.yaml"


def version() -> dict[str, Any]:
    (only,) = crd_manifest()["spec"]["versions"]
    return only


def walk(schema: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every schema node with its path, through properties, items and additionalProperties."""
    yield path, schema
    for name, child in schema.get("properties", {}).items():
        yield from walk(child, f"{path}.{name}")
    if isinstance(schema.get("items"), dict):
        yield from walk(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from walk(schema["additionalProperties"], f"{path}{{}}")


def as_json_schema(node: Any) -> Any:
    """OpenAPI v3.0 (Kubernetes flavour) -> JSON Schema: ``nullable: true`` -> a ``null`` type."""
    if isinstance(node, list):
        return [as_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    result = {key: as_json_schema(value) for key, value in node.items() if key != "nullable"}
    if node.get("nullable"):
        if "type" in result:
            result["type"] = [result["type"], "null"]
        else:
            result = {"anyOf": [result, {"type": "null"}]}
    return result


SPEC_VALIDATOR = jsonschema.Draft4Validator(as_json_schema(spec_schema()))


def apply_defaults(schema: dict[str, Any], value: Any) -> Any:
    """What the API server's structural defaulting does: fill missing fields, recursively."""
    if isinstance(value, dict):
        for name, child in schema.get("properties", {}).items():
            if name not in value and "default" in child:
                value[name] = copy.deepcopy(child["default"])
            if name in value:
                value[name] = apply_defaults(child, value[name])
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [apply_defaults(schema["items"], item) for item in value]
    return value


def without_empties(value: Any) -> Any:
    if isinstance(value, dict):
        cleaned = {k: without_empties(v) for k, v in value.items()}
        return {k: v for k, v in cleaned.items() if v not in ({}, [])}
    if isinstance(value, list):
        return [without_empties(v) for v in value]
    return value


# --- in sync ---------------------------------------------------------------------------------------


def test_committed_crd_is_generated() -> None:
    """Regenerate with: python -m sdxlpool.operator.crd > crds/sdxlpools.sdxlpool.dev.yaml"""
    assert CRD_FILE.read_text() == crd_yaml()
    assert yaml.safe_load(CRD_FILE.read_text()) == crd_manifest()


def test_crd_validates_as_kubernetes() -> None:
    kubernetes_validate.validate(crd_manifest(), "1.35", strict=True)


def test_names_and_printer_columns() -> None:
    crd = crd_manifest()
    spec = crd["spec"]
    assert crd["metadata"]["name"] == CRD_NAME == "sdxlpools.sdxlpool.dev"
    assert (spec["group"], spec["scope"]) == ("sdxlpool.dev", "Namespaced")
    assert spec["names"]["kind"] == "SDXLPool" and spec["names"]["plural"] == "sdxlpools"
    assert spec["names"]["shortNames"] == ["sdxl"]
    v = version()
    assert (v["name"], v["served"], v["storage"], v["subresources"]) == ("v1alpha1", True, True, {"status": {}})
    columns = {c["name"]: c["jsonPath"] for c in v["additionalPrinterColumns"]}
    assert columns["Ready"] == ".status.summary" and columns["GPUs"] == ".status.gpuModels"
    assert columns["Gateway"] == ".status.gatewayURL"
    assert columns["Age"] == ".metadata.creationTimestamp"
    status = status_schema()["properties"]
    for path in columns.values():
        if path.startswith(".status."):
            assert path.split(".")[2].split("[")[0] in status


def test_every_field_has_a_description() -> None:
    """`kubectl explain sdxlpool.spec...` is never blank: each field of spec and status says what it is."""
    fields = [(path, node) for path, node in walk(version()["schema"]["openAPIV3Schema"])
              if path not in ("", ".metadata")  # the API server forbids anything but a type on metadata
              and not path.endswith(("[]", "{}"))]  # list items and map values: their field says
    assert len(fields) > 150
    missing = [path for path, node in fields if "description" not in node]
    assert missing == []


# --- structural -------------------------------------------------------------------------------------


def test_schema_is_structural() -> None:
    root = version()["schema"]["openAPIV3Schema"]
    for path, node in walk(root):
        where = path or "<root>"
        int_or_string = node.get("x-kubernetes-int-or-string") is True
        preserve = node.get("x-kubernetes-preserve-unknown-fields") is True
        assert "type" in node or int_or_string or preserve, f"{where}: no type"
        assert not ({"$ref", "$defs", "title", "const", "allOf", "oneOf", "not"} & set(node)), where
        assert not ("properties" in node and "additionalProperties" in node), where
        assert node.get("additionalProperties", {}) is not False, where
        assert node.get("uniqueItems") is not True, where
        if "anyOf" in node:  # only the int-or-string form
            assert int_or_string and node["anyOf"] == [{"type": "integer"}, {"type": "string"}], where
        if "default" in node:
            assert node["default"] is not None, where
            jsonschema.Draft4Validator(as_json_schema(node)).validate(node["default"])
        for key in ("exclusiveMinimum", "exclusiveMaximum"):
            assert isinstance(node.get(key, True), bool), where
        if node.get("type") == "object" and "properties" in node:
            assert set(node.get("required", [])) <= set(node["properties"]), where
    assert root["properties"]["status"]["x-kubernetes-preserve-unknown-fields"] is True
    spec_nodes = list(walk(root["properties"]["spec"]))
    assert not any(node.get("x-kubernetes-preserve-unknown-fields") for _, node in spec_nodes)


def test_schema_keeps_constraints_descriptions_and_defaults() -> None:
    spec = spec_schema()
    props = spec["properties"]
    assert spec["required"] == ["image", "model", "gpus"]
    assert props["gpus"]["minItems"] == 1
    entry = props["gpus"]["items"]["properties"]
    assert {k: v for k, v in entry["replicas"].items() if k != "description"} == {
        "default": 1, "minimum": 0, "type": "integer"}
    assert entry["gpusPerReplica"]["minimum"] == 1
    assert entry["model"]["description"].startswith("GPU model, any common spelling")
    assert props["placement"]["properties"]["labelScheme"]["enum"] == ["nvidia", "akash", "custom"]
    assert props["placement"]["default"] == {}
    assert props["defaults"]["properties"]["width"]["multipleOf"] == 8
    assert props["gateway"]["properties"]["serviceType"]["enum"] == ["ClusterIP", "NodePort", "LoadBalancer"]
    assert props["model"]["properties"]["volume"]["nullable"] is True
    cpu = entry["resources"]["properties"]["requests"]["properties"]["cpu"]
    assert cpu["x-kubernetes-int-or-string"] is True and "pattern" in cpu
    assert entry["tolerations"]["items"]["properties"]["effect"]["enum"] == ["NoSchedule", "PreferNoSchedule", "NoExecute"]
    assert entry["nodeSelector"]["additionalProperties"]["type"] == "string"
    assert "``" not in yaml.safe_dump(spec)


def test_structural_conversion_rules() -> None:
    schema = {
        "type": "object",
        "title": "X",
        "additionalProperties": False,
        "properties": {
            "a": {"anyOf": [{"$ref": "#/$defs/A"}, {"type": "null"}], "default": None, "description": "field"},
            "b": {"const": "only", "type": "string"},
            "c": {"type": "number", "exclusiveMinimum": 0},
        },
        "$defs": {"A": {"type": "object", "description": "model", "properties": {"x": {"type": "integer"}}}},
    }
    assert structural(schema) == {
        "type": "object",
        "properties": {
            "a": {"type": "object", "description": "field", "properties": {"x": {"type": "integer"}}, "nullable": True},
            "b": {"enum": ["only"], "type": "string"},
            "c": {"type": "number", "minimum": 0, "exclusiveMinimum": True},
        },
    }


# --- the schema accepts what pydantic accepts, and rejects what it can -------------------------------


@pytest.mark.parametrize("name", sorted(CASES))
def test_valid_pools_validate(name: str) -> None:
    spec = CASES[name].pool["spec"]
    SPEC_VALIDATOR.validate(spec)
    dumped = load_spec(spec).model_dump(by_alias=True, exclude_none=True)  # as the operator reads it back
    SPEC_VALIDATOR.validate(dumped)


@pytest.mark.parametrize("name", ["pool.yaml", "local-pool.yaml", "autoscaling-pool.yaml"])
def test_examples_pool_validates(name: str) -> None:
    SPEC_VALIDATOR.validate(yaml.safe_load((ROOT / "examples" / name).read_text())["spec"])


def test_server_defaults_equal_pydantic_defaults() -> None:
    """A minimal spec defaulted by the CRD is the spec pydantic fills in: the defaults are in sync."""
    for name in ("minimal", "huggingface-empty-dir", "akash"):
        spec = copy.deepcopy(CASES[name].pool["spec"])
        defaulted = apply_defaults(spec_schema(), spec)
        expected = load_spec(CASES[name].pool["spec"]).model_dump(by_alias=True, exclude_none=True)
        assert without_empties(defaulted) == without_empties(expected), name


def minimal_spec(**changes: Any) -> dict[str, Any]:
    spec = copy.deepcopy(CASES["minimal"].pool["spec"])
    spec.update(changes)
    return spec


def entry(**fields: Any) -> dict[str, Any]:
    return minimal_spec(gpus=[{"model": "A100", **fields}])


INVALID = {
    "unknown-label-scheme": minimal_spec(placement={"labelScheme": "gke"}),
    "zero-gpu-entries": minimal_spec(gpus=[]),
    "negative-replicas": entry(replicas=-1),
    "zero-gpus-per-replica": entry(gpusPerReplica=0),
    "negative-price": entry(pricePerHour=-1),
    "bad-quantity": entry(resources={"requests": {"cpu": "lots"}}),
    "negative-quantity": entry(resources={"limits": {"memory": "-1Gi"}}),
    "bad-toleration-effect": entry(tolerations=[{"key": "a", "effect": "Sometimes"}]),
    "bad-node-selector-value": entry(nodeSelector={"a": "not valid!"}),
    "image-missing": {k: v for k, v in minimal_spec().items() if k != "image"},
    "image-empty": minimal_spec(image=""),
    "pull-policy": minimal_spec(imagePullPolicy="Sometimes"),
    "model-missing": {k: v for k, v in minimal_spec().items() if k != "model"},
    "hf-repo": minimal_spec(model={"huggingFace": {"repo": "not a repo"}}),
    "service-type": minimal_spec(gateway={"serviceType": "ExternalName"}),
    "rate-limit-zero": minimal_spec(gateway={"rateLimit": {"requestsPerMinute": 0}}),
    "width-not-multiple-of-8": minimal_spec(defaults={"width": 1020}),
    "cfg-too-high": minimal_spec(defaults={"cfgScale": 31}),
    "gpus-not-a-list": minimal_spec(gpus={"model": "A100"}),
}


@pytest.mark.parametrize("name", sorted(INVALID))
def test_invalid_pools_are_rejected_by_schema_and_model(name: str) -> None:
    spec = INVALID[name]
    assert not SPEC_VALIDATOR.is_valid(spec), name
    with pytest.raises(PoolSpecError):
        load_spec(spec)


def test_status_sample_validates() -> None:
    condition = {
        "type": "Ready", "status": "False", "reason": "ReplicasNotReady", "message": "A100 1/2",
        "lastTransitionTime": "2026-01-01T00:00:00Z", "observedGeneration": 3,
    }  # fmt: skip
    gpu = {"model": "A100", "slug": "a100", "desired": 2, "ready": 1, "available": 1, "matchedNodes": ["n1"], "message": "1/2 ready"}
    status = {
        "observedGeneration": 3, "summary": "1/2", "gpuModels": "A100", "conditions": [condition], "gpus": [gpu],
        "gateway": {**gpu, "model": "gateway", "slug": "gateway", "matchedNodes": []}, "kopf": {"progress": {}},
    }  # fmt: skip
    validator = jsonschema.Draft4Validator(as_json_schema(status_schema()))
    validator.validate(status)
    assert not validator.is_valid({**status, "gpus": [{**gpu, "desired": -1}]})
    assert not validator.is_valid({**status, "conditions": [{**condition, "status": "Maybe"}]})
