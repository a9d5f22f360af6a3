"""The short CI version of reliability/fuzz.py: schemathesis against the real worker (tiny model,
small limits) and the real gateway (in front of a sim-worker), on 127.0.0.1. No 5xx, no schemathesis
failure (schema conformance of every answer, status codes, content types, Allow headers...), no
errors. The worker gets the fuzzing and stateful phases (~200 cases; its coverage phase alone is
~700 cases, a minute of images on CPU); the gateway coverage and fuzzing (~1000 cases, seconds)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from reliability.fuzz import FuzzResult, schemathesis_run, start_worker
from sdxlpool.testing.processes import stop
from tests.conftest import ServerThread, TinyModel
from tests.reliability.conftest import backend, gateway

pytest.importorskip("schemathesis")


@pytest.fixture(scope="module")
def fuzzed_worker(tiny_model: TinyModel, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url, process = start_worker(tmp_path_factory.mktemp("fuzz-worker"), models=tiny_model.base.parent)
    try:
        yield url
    finally:
        stop(process)


def check(result: FuzzResult, min_cases: int) -> None:
    print(result.summary())
    assert result.complete, result.output[-3000:]
    assert result.cases >= min_cases, result.summary()
    assert result.server_errors == 0, result.summary() + result.output[-3000:]
    assert not result.failures and not result.errors, result.summary() + result.output[-3000:]


def test_worker_openapi_holds_under_fuzzing(fuzzed_worker: str, tmp_path: Path) -> None:
    result = schemathesis_run(fuzzed_worker, tmp_path, target="worker", max_examples=20, seed=1,
                              phases="fuzzing,stateful", timeout=120, echo=False)
    check(result, min_cases=150)


def test_gateway_openapi_holds_under_fuzzing(sim: ServerThread, tmp_path: Path) -> None:
    with gateway([backend(sim)], tmp_path) as front:
        front.wait_ready()
        result = schemathesis_run(front.url, tmp_path, target="gateway", max_examples=25, seed=1,
                                  phases="coverage,fuzzing", timeout=120, echo=False)
    check(result, min_cases=150)


def test_fuzz_script_runs(tmp_path: Path) -> None:
    """The script's own command line: --help, and a bad flag is a one-line error."""
    import sys

    script = Path(__file__).resolve().parents[2] / "reliability" / "fuzz.py"
    assert subprocess.run([sys.executable, str(script), "--help"], capture_output=True).returncode == 0
    bad = subprocess.run([sys.executable, str(script), "--target", "nope"], capture_output=True, text=True)
    assert bad.returncode == 2 and "invalid choice" in bad.stderr
