"""Scorer `preference`: 1 - rank / n over the request's GPU list; neutral without a list."""

from __future__ import annotations

import pytest

from sdxlpool.gateway.routing import Candidate, Preference, RouteRequest
from sdxlpool.gateway.routing.testing import fake_state

POOL = {"a100": "A100", "a100-80": "A100-80GB", "3090": "RTX 3090", "l40s": "L40S"}


@pytest.mark.parametrize(
    ("allowed", "scores"),
    [
        pytest.param((), {"a100": 1.0, "a100-80": 1.0, "3090": 1.0, "l40s": 1.0}, id="no-preference-neutral"),
        pytest.param(("a100",), {"a100": 1.0, "a100-80": 1.0, "3090": 1.0, "l40s": 1.0}, id="one-model-neutral"),
        pytest.param(("a100", "rtx-3090"), {"a100": 1.0, "a100-80": 1.0, "3090": 0.5, "l40s": 0.0},
                     id="two-models-unlisted-zero"),
        pytest.param(("rtx-3090", "l40s", "a100"), {"a100": 1 / 3, "a100-80": 1 / 3, "3090": 1.0, "l40s": 2 / 3},
                     id="three-models"),
        pytest.param(("a100-80gb", "a100"), {"a100": 0.5, "a100-80": 1.0, "3090": 0.0, "l40s": 0.0},
                     id="specific-variant-before-family"),
    ],
)
def test_preference(allowed: tuple[str, ...], scores: dict[str, float]) -> None:
    candidates = [Candidate.of(fake_state(n, gpu), 0.0) for n, gpu in POOL.items()]
    assert Preference().score(RouteRequest(cost=1, allowed_gpus=allowed), candidates) == pytest.approx(scores)
