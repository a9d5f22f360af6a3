"""Filter `gpu_allowed`: the request's GPU models, matched like a pool entry matches a node label."""

from __future__ import annotations

import pytest

from sdxlpool.gateway.routing import Candidate, GpuAllowed, RouteRequest, allowed_rank
from sdxlpool.gateway.routing.testing import fake_state

POOL = {"a100": "A100", "a100-80": "NVIDIA-A100-SXM4-80GB", "a100-40": "A100 40GB PCIe", "3090": "RTX 3090",
        "3090ti": "RTX 3090 Ti", "mig": "NVIDIA-A100-SXM4-40GB-MIG-1g.5gb", "l40s": "L40S"}


@pytest.mark.parametrize(
    ("allowed", "kept"),
    [
        pytest.param((), list(POOL), id="no-list-allows-any"),
        pytest.param(("a100",), ["a100", "a100-80", "a100-40"], id="family-admits-every-memory-variant"),
        pytest.param(("a100-80gb",), ["a100-80"], id="memory-variant-only"),
        pytest.param(("rtx-3090",), ["3090"], id="3090-is-not-3090-ti"),
        pytest.param(("a100-40gb-mig-1g.5gb",), ["mig"], id="mig-slice-only-by-profile"),
        pytest.param(("l40s-48gb",), ["l40s"], id="single-memory-family-matches-unstated-memory"),
        pytest.param(("rtx-3090", "a100-80gb"), ["a100-80", "3090"], id="several-models-pool-order-kept"),
        pytest.param(("h100",), [], id="model-not-in-pool"),
        pytest.param(("banana",), [], id="unparseable-name-matches-nothing"),
    ],
)
def test_gpu_allowed(allowed: tuple[str, ...], kept: list[str]) -> None:
    candidates = [Candidate.of(fake_state(name, gpu), 0.0) for name, gpu in POOL.items()]
    result = GpuAllowed().filter(RouteRequest(cost=25, allowed_gpus=allowed), candidates)
    assert [c.name for c in result] == kept


@pytest.mark.parametrize(
    ("allowed", "gpu", "rank"),
    [
        pytest.param((), "a100", 0, id="any"),
        pytest.param(("rtx-3090", "a100"), "a100-80gb", 1, id="second-choice"),
        pytest.param(("a100-80gb", "a100"), "a100-80gb", 0, id="first-match-wins"),
        pytest.param(("a100-80gb", "a100"), "a100-40gb", 1, id="falls-to-the-broader-entry"),
        pytest.param(("h100",), "a100", None, id="no-match"),
        pytest.param(("a100",), "not-a-gpu", None, id="backend-gpu-unparseable"),
    ],
)
def test_allowed_rank(allowed: tuple[str, ...], gpu: str, rank: int | None) -> None:
    assert allowed_rank(allowed, gpu) == rank
