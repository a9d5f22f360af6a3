"""The CRDs against a real Kubernetes API server component (the apiextensions-apiserver 1.36 that
scripts/fetch-apiextensions.sh builds from Debian's packages, on etcd): what a platform team meets at
`kubectl apply`. The pool CRD is read from crds/ at test time, so these follow it as it changes.

The server serves apiextensions.k8s.io and custom resources only, no core API: namespaces need not
exist (NamespaceLifecycle is off), and each test uses a namespace of its own. Nor does it serve the
discovery lists /api and /apis (kube-apiserver's aggregator does) or the CRDs' OpenAPI (/openapi/v3
lists apiextensions.k8s.io only, /openapi/v2 is 404): kubectl apply, get and explain stop at
"couldn't get current server API group list". So the printer columns are checked in the Table the
server renders for `kubectl get` (Accept: as=Table), and kubectl itself runs as `kubectl create --raw`,
which needs no discovery and prints a refusal exactly as `kubectl apply` does.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from sdxlpool.api.spec import SDXLPoolSpec, load_spec
from sdxlpool.operator.autoscale import unread_status
from sdxlpool.operator.desired import gateway_url
from sdxlpool.operator.status import EntryObservation, pool_status
from sdxlpool.testing.apiserver import ApiExtensionsServer

from .conftest import CRD_FILES, POOL_CRD, ROOT, KubectlCreate, load_yaml

EXAMPLE_POOLS = [path for path in sorted((ROOT / "examples").glob("*.yaml"))
                 if any(doc.get("kind") == "SDXLPool" for doc in load_yaml(path))]
MINIMAL_SPEC = {"image": "ghcr.io/example/sdxlpool-worker:0.1.0",
                "model": {"huggingFace": {"repo": "stabilityai/stable-diffusion-xl-base-1.0"}},
                "gpus": [{"model": "A100"}]}
NOW = "2026-01-02T03:04:05Z"


def pool(name: str, spec: dict[str, Any], namespace: str) -> dict[str, Any]:
    return {"apiVersion": "sdxlpool.dev/v1alpha1", "kind": "SDXLPool",
            "metadata": {"name": name, "namespace": namespace}, "spec": spec}


def pool_crd() -> dict[str, Any]:
    return yaml.safe_load(POOL_CRD.read_text())


@pytest.mark.parametrize("path", CRD_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_crd_is_accepted_and_established(apiserver: ApiExtensionsServer, path: Path) -> None:
    docs = load_yaml(path)
    crds = [doc for doc in docs if doc["kind"] == "CustomResourceDefinition"]
    assert crds, f"{path} holds no CustomResourceDefinition"
    try:
        for manifest in crds:
            stored = apiserver.apply_crd(manifest)  # raises unless Established
            assert stored["status"]["acceptedNames"]["kind"] == manifest["spec"]["names"]["kind"]
        # Objects beside the CRDs in the same file (kopf's ClusterKopfPeering) are accepted too.
        for other in (doc for doc in docs if doc["kind"] != "CustomResourceDefinition"):
            answer = apiserver.create(other, namespace=None)
            assert answer.status_code in (201, 409), answer.text
    finally:
        apiserver.apply_crd(pool_crd())  # the chart's copy may differ: the other tests use crds/'s


@pytest.mark.parametrize("path", EXAMPLE_POOLS, ids=lambda p: p.name)
def test_every_example_pool_is_accepted(apiserver: ApiExtensionsServer, path: Path) -> None:
    for doc in load_yaml(path):
        if doc.get("kind") != "SDXLPool":
            continue
        doc["metadata"]["namespace"] = "examples-create"
        answer = apiserver.create(doc)
        assert answer.status_code == 201, f"{path.name}: {answer.status_code} {answer.text}"
        assert not answer.headers.get("warning"), f"{path.name}: {answer.headers['warning']}"
        # What the server stored reads back as the same pool for the operator.
        assert load_spec(answer.json()["spec"]) == load_spec(doc["spec"])


def test_kubectl_creates_the_examples_and_shows_the_servers_refusal(kubectl_create: KubectlCreate) -> None:
    # kubectl's discovery needs /api and /apis, which this server does not serve (module docstring):
    # `kubectl create --raw PATH -f -` skips discovery and prints the server's answer as `apply` would.
    for path in EXAMPLE_POOLS:
        for doc in load_yaml(path):
            if doc.get("kind") == "SDXLPool":
                doc["metadata"]["namespace"] = "examples-kubectl"
                done = kubectl_create(doc)
                assert done.returncode == 0, f"{path.name}: {done.stderr}"
    bad = pool("negative", {**MINIMAL_SPEC, "gpus": [{"model": "A100", "replicas": -1}]}, "examples-kubectl")
    done = kubectl_create(bad)
    assert done.returncode == 1
    assert done.stderr.startswith('The SDXLPool "negative" is invalid: spec.gpus[0].replicas: Invalid value: -1'), \
        done.stderr


def test_server_defaults_and_pruning_agree_with_the_model(apiserver: ApiExtensionsServer) -> None:
    sent = copy.deepcopy(MINIMAL_SPEC)
    sent["colour"] = "blue"  # unknown: pruned by the server (the model, extra="forbid", would refuse it)
    sent["gpus"][0]["shade"] = "dark"
    answer = apiserver.create(pool("minimal", sent, "defaults"))
    assert answer.status_code == 201, answer.text
    # Unknown fields are dropped, and said so (fieldValidation defaults to Warn).
    assert 'unknown field \\"spec.colour\\"' in answer.headers.get("warning", ""), answer.headers
    stored = apiserver.request("GET", apiserver.object_path("sdxlpool.dev/v1alpha1", "SDXLPool", "defaults",
                                                            "minimal")).json()["spec"]
    assert "colour" not in stored and "shade" not in stored["gpus"][0], stored

    # The comparison. The server fills a default wherever the CRD schema has one (object fields default
    # to {}, so the defaults inside them apply too); it writes no null and no empty list or map that the
    # model defaults to (None, default_factory=list/dict), and the model dumps those. Both mean "unset",
    # so both sides drop nulls and empty lists/maps (innermost first), and what remains must be equal:
    # every default the server filled is the model's, and every non-empty default of the model is filled
    # by the server (a CRD that lost one fails here, naming it). And the stored spec must read back as
    # the very same spec the model makes of the minimal one: what the operator sees is what was meant.
    model = SDXLPoolSpec.model_validate(MINIMAL_SPEC).model_dump(by_alias=True, mode="json")
    assert set_values(stored) == set_values(model)
    assert stored["defaults"]["steps"] == 25 and stored["gateway"]["replicas"] == 2  # the server filled defaults at all
    assert load_spec(stored) == SDXLPoolSpec.model_validate(MINIMAL_SPEC)


def set_values(value: Any) -> Any:
    """`value` without nulls and empty lists/maps, innermost first (a map left empty goes too)."""
    if isinstance(value, dict):
        kept = {key: set_values(item) for key, item in value.items()}
        return {key: item for key, item in kept.items() if item is not None and item != {} and item != []}
    if isinstance(value, list):
        return [set_values(item) for item in value]
    return value


def test_a_schema_violation_is_refused_naming_the_field(apiserver: ApiExtensionsServer) -> None:
    spec = copy.deepcopy(MINIMAL_SPEC)
    spec["gpus"][0]["replicas"] = -1
    answer = apiserver.create(pool("negative", spec, "invalid"))
    assert answer.status_code == 422, answer.text
    status = answer.json()
    assert status["reason"] == "Invalid"
    assert "spec.gpus[0].replicas" in status["message"], status["message"]
    assert [c["field"] for c in status["details"]["causes"]] == ["spec.gpus[0].replicas"], status["details"]


def operator_status(spec: SDXLPoolSpec, generation: int) -> dict[str, Any]:
    """The status the operator writes for `spec` (sdxlpool.operator.status, and autoscale's part):
    the first GPU model all ready, the others rolling out, the gateway ready."""
    entries = [EntryObservation(model=g.model, slug=g.slug, desired=g.replicas, ready=g.replicas if i == 0 else 0,
                                available=g.replicas if i == 0 else 0, updated=g.replicas, matched_nodes=(f"node-{i}",),
                                placement_message="", no_matching_nodes=False, rolled_out=True, failure=None)
               for i, g in enumerate(spec.gpus)]
    gateway = EntryObservation(model="gateway", slug="gateway", desired=2, ready=2, available=2, updated=2,
                               matched_nodes=(), placement_message="", no_matching_nodes=False, rolled_out=True,
                               failure=None)
    status = pool_status(generation=generation, entries=entries, gateway=gateway, previous=None, now=NOW,
                         gateway_url=gateway_url("printer", "example-gateway"))
    status["autoscaling"] = unread_status(spec, {g.slug: g.replicas for g in spec.gpus}, previous=None,
                                          message="no gateway replica ready")
    return status


def pool_with_status(apiserver: ApiExtensionsServer, namespace: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The autoscaling example created in `namespace`, and the operator's status PUT to its /status."""
    doc = next(d for d in load_yaml(ROOT / "examples" / "autoscaling-pool.yaml") if d["kind"] == "SDXLPool")
    doc["metadata"]["namespace"] = namespace
    created = apiserver.create(doc)
    assert created.status_code == 201, created.text
    body = created.json()
    status = operator_status(load_spec(body["spec"]), body["metadata"]["generation"])
    path = apiserver.object_path("sdxlpool.dev/v1alpha1", "SDXLPool", namespace, body["metadata"]["name"])
    answer = apiserver.request("PUT", path + "/status", json={**body, "status": status})
    assert answer.status_code == 200, answer.text
    return apiserver.request("GET", path).json(), status


def test_the_status_subresource_takes_the_operators_status(apiserver: ApiExtensionsServer) -> None:
    stored, status = pool_with_status(apiserver, "status")
    assert stored["status"] == status  # nothing pruned, nothing refused, nothing reshaped
    assert stored["metadata"]["generation"] == 1  # a status write is no spec change
    # A status sent with the main resource is ignored (only /status writes it).
    path = apiserver.object_path("sdxlpool.dev/v1alpha1", "SDXLPool", "status", stored["metadata"]["name"])
    changed = {**stored, "status": {**status, "summary": "9/9"}}
    assert apiserver.request("PUT", path, json=changed).json()["status"]["summary"] == status["summary"]


def test_printer_columns_render(apiserver: ApiExtensionsServer) -> None:
    stored, status = pool_with_status(apiserver, "printer")
    path = apiserver.object_path("sdxlpool.dev/v1alpha1", "SDXLPool", "printer")
    table = apiserver.request("GET", path, headers={"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"}).json()
    assert table["kind"] == "Table", table
    columns = pool_crd()["spec"]["versions"][0]["additionalPrinterColumns"]
    assert [c["name"] for c in table["columnDefinitions"]] == ["Name", *(c["name"] for c in columns)]
    (row,) = table["rows"]
    cells = dict(zip((c["name"] for c in table["columnDefinitions"]), row["cells"], strict=True))
    assert cells["Name"] == stored["metadata"]["name"]
    assert (cells["Ready"], cells["GPUs"], cells["Degraded"]) == (status["summary"], status["gpuModels"], "False")
    assert (cells["Ready"], cells["GPUs"]) == ("1/1", "RTX-3090,RTX-4090,H100")  # the example's 1 + 0 + 0 replicas
    assert cells["Gateway"] == status["gatewayURL"] == "http://example-gateway.printer.svc:8080"
