"""A real API server refuses every bad pool of tests/crd_table.py at create time, naming the field
with the CRD's message, and accepts every valid one: what a person sees at `kubectl apply`."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from tests.crd_table import BAD_SPECS, BadSpec, example_specs, pool
from tests.operator.test_desired_state import CASES


def causes(body: dict[str, Any]) -> list[dict[str, Any]]:
    return list((body.get("details") or {}).get("causes") or [])


@pytest.mark.parametrize("bad", BAD_SPECS, ids=[b.name for b in BAD_SPECS])
def test_server_refuses_every_bad_spec(apiserver: Any, bad: BadSpec) -> None:
    response = apiserver.create(pool(f"bad-{bad.name}", bad.spec))
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["reason"] == "Invalid"
    found = [c for c in causes(body) if c.get("field", "").startswith(bad.field) and bad.server in c.get("message", "")]
    assert found, (bad.field, bad.server, causes(body))
    assert bad.server in body["message"]


VALID = {f"case-{name}": copy.deepcopy(case.pool["spec"]) for name, case in CASES.items()}
VALID.update({f"example-{name.removesuffix('.yaml')}": copy.deepcopy(body["spec"])
              for name, body in example_specs().items()})


@pytest.mark.parametrize("name", sorted(VALID))
def test_server_accepts_every_valid_spec(apiserver: Any, name: str) -> None:
    response = apiserver.create(pool(name, VALID[name]))
    assert response.status_code == 201, response.text


@pytest.mark.parametrize(("name", "expected"), [
    ("duplicate-gpu", 'The SDXLPool "readme-duplicate-gpu" is invalid: spec.gpus: Invalid value: '),
    ("steps-over-limit", 'The SDXLPool "readme-steps-over-limit" is invalid: spec.defaults.steps: Invalid value: '),
])
def test_kubectl_shows_the_field_and_the_fix(kubectl_create: Any, name: str, expected: str) -> None:
    """What the README shows: the person who typed the pool sees the field and the fix, not `created`.
    (`kubectl create --raw`: this server has no discovery for `kubectl apply`; the refusal is printed
    the same way.)"""
    bad = next(b for b in BAD_SPECS if b.name == name)
    result = kubectl_create(pool(f"readme-{name}", bad.spec))
    assert result.returncode != 0 and "created" not in result.stdout
    assert expected in result.stderr and bad.server in result.stderr, result.stderr
