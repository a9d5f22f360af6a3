"""The kopf peering CRDs shipped in crds/ are valid Kubernetes 1.35 objects."""

from __future__ import annotations

from pathlib import Path

import kubernetes_validate
import yaml

PEERING = Path(__file__).resolve().parents[2] / "crds" / "kopfpeerings.kopf.dev.yaml"


def test_peering_crds_validate_and_name_the_operator_peering() -> None:
    documents = list(yaml.safe_load_all(PEERING.read_text()))
    crds = [d for d in documents if d["kind"] == "CustomResourceDefinition"]
    assert {c["spec"]["names"]["kind"] for c in crds} == {"ClusterKopfPeering", "KopfPeering"}
    for crd in crds:
        kubernetes_validate.validate(crd, "1.35", strict=True)
    peering = next(d for d in documents if d["kind"] == "ClusterKopfPeering")
    assert peering["metadata"]["name"] == "sdxlpool"  # the operator's default --peering
