"""The CRD's admission rules (sdxlpool.api.cel) and the pydantic model agree; the GPU name pattern
never refuses a name the parser accepts. The API server's side of the same table is
tests/apiserver/test_admission.py."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from sdxlpool.api import cel
from sdxlpool.api.gpu import GPU_NAME_CHARACTERS, GPU_NAME_FAMILY_WORD, parse_gpu_name
from sdxlpool.api.spec import PoolSpecError, load_spec
from sdxlpool.operator.crd import crd_manifest
from tests.api.test_gpu_names import PARSE_CASES
from tests.crd_table import BAD_SPECS, BadSpec, example_specs


@pytest.mark.parametrize("bad", BAD_SPECS, ids=[b.name for b in BAD_SPECS])
def test_pydantic_refuses_every_bad_spec(bad: BadSpec) -> None:
    with pytest.raises(PoolSpecError) as caught:
        load_spec(bad.spec)
    leaf = re.sub(r"\[\d+\]", "", bad.field.rsplit(".", 1)[-1])
    assert any(bad.pydantic in problem and leaf in problem for problem in caught.value.problems), \
        (bad.field, caught.value.problems)


@pytest.mark.parametrize("name", sorted(example_specs()))
def test_examples_pass_pydantic(name: str) -> None:
    load_spec(example_specs()[name]["spec"])


def _rules(node: Any, path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    if isinstance(node, dict):
        for rule in node.get("x-kubernetes-validations", []):
            yield path, rule
        for name, child in (node.get("properties") or {}).items():
            yield from _rules(child, f"{path}.{name}")
        if "items" in node:
            yield from _rules(node["items"], f"{path}[]")


def test_every_rule_is_in_the_crd_where_it_belongs() -> None:
    schema = crd_manifest()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    placed = list(_rules(schema))
    where = {
        ".spec": [cel.DEFAULT_STEPS_WITHIN_LIMITS, cel.DEFAULT_PIXELS_WITHIN_LIMITS],
        ".spec.gpus": [cel.GPU_ENTRIES_UNIQUE],
        ".spec.gpus[]": [cel.REPLICAS_WITHIN_AUTOSCALING],
        ".spec.gpus[].model": [cel.GPU_NAME_LOOKS_NVIDIA],
        ".spec.gpus[].autoscaling": [cel.AUTOSCALING_MIN_WITHIN_MAX],
        ".spec.gpus[].tolerations[]": [cel.TOLERATION_EXISTS_NO_VALUE, cel.TOLERATION_KEYLESS_EXISTS,
                                       cel.TOLERATION_SECONDS_NO_EXECUTE],
        ".spec.model": [cel.MODEL_SOURCE_EXACTLY_ONE],
        ".spec.model.huggingFace.cache": [cel.CACHE_AT_MOST_ONE],
        ".spec.placement": [cel.TEMPLATE_IFF_CUSTOM],
        ".spec.loras[]": [cel.FINE_TUNE_EXACTLY_ONE],
        ".spec.styles": [cel.FINE_TUNE_EXACTLY_ONE],
    }
    for path, rules in where.items():
        assert [rule for at, rule in placed if at == path] == rules, path
    # ... and every rule cel.py defines is used somewhere.
    defined = [getattr(cel, name) for name in cel.__all__ if name.isupper()]
    assert all(any(rule == used for _, used in placed) for rule in defined)


def test_rules_that_walk_lists_and_strings_have_bounds() -> None:
    """The API server refuses rules whose cost it cannot bound: the lists and strings they walk
    carry maxItems / maxLength."""
    spec = crd_manifest()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    assert spec["properties"]["gpus"]["maxItems"] == 64
    assert spec["properties"]["gpus"]["items"]["properties"]["model"]["maxLength"] == 128


def _looks_nvidia(name: str) -> bool:
    """The CEL rule GPU_NAME_LOOKS_NVIDIA, in Python (its patterns are in the subset both read alike)."""
    return re.search(GPU_NAME_CHARACTERS, name) is not None and re.search(GPU_NAME_FAMILY_WORD, name.lower()) is not None


MORE_GOOD_NAMES = ["H100", "h100 80gb", "NVIDIA H100 NVL", "Tesla T4", "A10G", "GH200", "B200", "RTX A6000",
                   "rtxa6000", "A6000", "NVIDIA-RTX-6000-Ada-Generation", "RTX PRO 6000 Blackwell", "TITAN RTX",
                   "Titan V", "GeForce GTX 1080 Ti", "rtx3090ti", "RTX 4000 SFF Ada", "L4", "V100S",
                   "NVIDIA-GeForce-RTX-5090", "A100_80GB", "a100/80gb", "NVIDIA-A100-SXM4-40GB-MIG-1g.10gb+me",
                   "NVIDIA-H100-80GB-HBM3-SHARED"]
NOT_GPUS = ["", "banana", "MI300X", "AMD Instinct MI250", "gpu", "RTX", "nvidia", "A100!", "H100 (SXM)", "Gaudi2",
            "rtx-", "x" * 20]


@pytest.mark.parametrize("name", [case.values[0] for case in PARSE_CASES] + MORE_GOOD_NAMES)
def test_pattern_accepts_every_name_the_parser_accepts(name: str) -> None:
    parse_gpu_name(name)  # the parser's own table: all valid
    assert _looks_nvidia(name), name


@pytest.mark.parametrize("name", NOT_GPUS)
def test_pattern_refuses_plain_non_gpus(name: str) -> None:
    with pytest.raises(ValueError):
        parse_gpu_name(name)
    assert not _looks_nvidia(name), name
