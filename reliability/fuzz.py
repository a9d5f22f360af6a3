"""Hostile input: schemathesis against the worker's and the gateway's OpenAPI, over 127.0.0.1.

    python reliability/fuzz.py                      # both targets, 100 examples per operation
    python reliability/fuzz.py --target gateway --max-examples 30 --timeout 300
    python reliability/fuzz.py --target gateway --repeat-for 120    # fuzz on for two minutes

Each target is a real server started here as a process: the worker on the tiny random-weight
model (CPU, small limits so each image costs little: --max-steps 2, --max-pixels 16384,
--max-batch 2), the gateway in front of two `sim-worker --step-seconds 0`. Then `schemathesis
run` (every phase: examples, coverage, fuzzing, stateful; every check but the two below) fires
generated requests, valid and invalid, at every operation its OpenAPI document declares.

Two checks are left out, on purpose, as they test contracts these services do not make:
`positive_data_acceptance` (a schema-valid request must succeed: the limits on steps, size,
batch and prompt length are settings of each server, checked at run time with a 422 naming the
field, not constants of the schema) and `negative_data_rejection` (a schema-invalid request
must fail: A1111 clients send 0/1 for booleans and numbers as strings, and the A1111 API, like
this one, coerces them as pydantic's lax mode does).

Prints, per target: generated cases, HTTP calls, status counts, schemathesis failures and
errors. Exit status 1 when any call got a 5xx or schemathesis reports a failure or an error.
Reports (JSON run report and HAR of every call) are kept under --out.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from sdxlpool.testing.pool import LocalPool, WorkerSpec, write_report
from sdxlpool.testing.ports import free_port
from sdxlpool.testing.processes import spawn, stop, wait_ready

__all__ = ["FuzzResult", "schemathesis_run", "start_worker", "main"]

EXCLUDED_CHECKS = ("positive_data_acceptance", "negative_data_rejection")
# The worker's limits while fuzzed: every accepted request is at most 2 steps x 2 images of 128x128.
WORKER_LIMITS = ("--max-steps", "2", "--max-pixels", str(128 * 128), "--max-batch", "2",
                 "--default-steps", "2", "--default-width", "64", "--default-height", "64")


@dataclass
class FuzzResult:
    target: str
    cases: int = 0  # schemathesis's "generated" test cases
    calls: int = 0  # HTTP requests sent (HAR entries; stateful steps and check re-sends included)
    statuses: Counter = field(default_factory=Counter)
    failures: list[dict] = field(default_factory=list)
    errors: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    complete: bool = False
    output: str = ""

    @property
    def server_errors(self) -> int:
        return sum(count for status, count in self.statuses.items() if status >= 500)

    @property
    def ok(self) -> bool:
        return self.complete and not self.failures and not self.errors and self.server_errors == 0

    def record(self) -> dict[str, object]:
        """The figures docs/reliability.md quotes, for the --summary JSON."""
        return {"target": self.target, "cases": self.cases, "calls": self.calls, "seconds": round(self.seconds, 1),
                "server_errors": self.server_errors, "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
                "failures": len(self.failures), "errors": len(self.errors), "complete": self.complete, "ok": self.ok}

    def summary(self) -> str:
        statuses = ", ".join(f"{status}: {count}" for status, count in sorted(self.statuses.items()))
        lines = [f"{self.target}: {self.cases} cases, {self.calls} calls in {self.seconds:.0f} s; "
                 f"5xx: {self.server_errors}; statuses {{{statuses}}}"]
        for failure in self.failures:
            lines.append(f"  FAILURE {failure.get('code')} {failure.get('title')} x{failure.get('count')}: "
                         f"{', '.join(failure.get('operations', []))}")
        for error in self.errors:
            lines.append(f"  ERROR {json.dumps(error)[:300]}")
        if not self.complete:
            lines.append("  schemathesis did not complete (see its output above)")
        return "\n".join(lines)


def schemathesis_run(base_url: str, out: Path, *, target: str, max_examples: int, seed: int,
                     timeout: float = 900, repeat_for: float | None = None, phases: str | None = None,
                     echo: bool = True) -> FuzzResult:
    """`schemathesis run` against `base_url`/openapi.json; its JSON and HAR reports read back."""
    out = out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    report, har = out / f"{target}.json", out / f"{target}.har.json"
    command = [sys.executable, "-m", "schemathesis.cli", "run", f"{base_url}/openapi.json",
               "--checks", "all", "--exclude-checks", ",".join(EXCLUDED_CHECKS),
               "--max-examples", str(max_examples), "--seed", str(seed), "--workers", "1", "--request-timeout", "60", "--generation-database", "none",
               "--report", "json,har", "--report-json-path", str(report), "--report-har-path", str(har),
               "--no-color", "--warnings", "off"]
    if phases:
        command += ["--phases", phases]
    if repeat_for:  # schemathesis repeats its fuzzing and stateful phases until this much time is spent
        command += ["--max-time", str(max(1, int(repeat_for)))]
    started = time.monotonic()
    try:
        # Run in `out`: schemathesis keeps a crash cache in ./.schemathesis, which belongs there, not in a checkout.
        run = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=out)
    except subprocess.TimeoutExpired as exc:
        return FuzzResult(target, seconds=time.monotonic() - started,
                          output=f"schemathesis stopped after the {timeout:g} s timeout: {exc}")
    result = FuzzResult(target, seconds=time.monotonic() - started, output=run.stdout + run.stderr)
    if echo:
        print(result.output[-6000:])
    if report.exists():
        data = json.loads(report.read_text())
        result.cases = data["test_cases"]["generated"]
        result.failures, result.errors = data["failures"], data["errors"]
        result.complete = bool(data.get("complete"))
    if har.exists():
        entries = json.loads(har.read_text())["log"]["entries"]
        result.calls = len(entries)
        result.statuses = Counter(entry["response"]["status"] for entry in entries)
    return result


def start_worker(workdir: Path, models: Path | None = None) -> tuple[str, subprocess.Popen]:
    """A real worker process on the tiny model (`models`/base and /refiner, written here if not
    given), with the small limits above."""
    models = models or workdir / "tiny"
    if not (models / "base").exists():
        subprocess.run([sys.executable, "-m", "sdxlpool", "tiny-model", str(models)], check=True,
                       capture_output=True)
    port = free_port()
    process = spawn([sys.executable, "-m", "sdxlpool", "worker", "--model", str(models / "base"),
                     "--refiner", str(models / "refiner"), "--device", "cpu", "--port", str(port),
                     "--gpu-model", "RTX 3090", *WORKER_LIMITS], workdir / "worker.log",
                    env={"OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"})
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, process, timeout=180)
    except BaseException:
        stop(process)
        raise
    return url, process


def fuzz_worker(workdir: Path, **run: object) -> FuzzResult:
    url, process = start_worker(workdir)
    try:
        return schemathesis_run(url, workdir / "reports", target="worker", **run)  # type: ignore[arg-type]
    finally:
        stop(process)


def fuzz_gateway(workdir: Path, **run: object) -> FuzzResult:
    sims = [WorkerSpec("sim-a100", "A100", 0.0), WorkerSpec("sim-l40", "L40", 0.0)]
    with LocalPool(workdir, sims) as pool:
        return schemathesis_run(pool.url, workdir / "reports", target="gateway", **run)  # type: ignore[arg-type]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", choices=["worker", "gateway", "both"], default="both")
    parser.add_argument("--max-examples", type=int, default=100, help="per operation and phase (default 100)")
    parser.add_argument("--timeout", type=float, default=900,
                        help="seconds per target before schemathesis is stopped (default 900): the time bound")
    parser.add_argument("--repeat-for", type=float, metavar="S",
                        help="instead of one pass, repeat fuzzing until S seconds are spent (schemathesis --max-time)")
    parser.add_argument("--seed", type=int, default=7, help="schemathesis seed (default 7): same seed, same cases")
    parser.add_argument("--out", type=Path, help="keep logs and reports here (default: a temporary folder)")
    parser.add_argument("--summary", type=Path, metavar="FILE",
                        help="write the figures as JSON (with date, machine, command, commit) here")
    args = parser.parse_args(argv)

    workdir = args.out or Path(tempfile.mkdtemp(prefix="sdxlpool-fuzz-"))
    workdir.mkdir(parents=True, exist_ok=True)
    run = {"max_examples": args.max_examples, "seed": args.seed, "timeout": args.timeout,
           "repeat_for": args.repeat_for}
    results = []
    if args.target in ("worker", "both"):
        results.append(fuzz_worker(workdir, **run))
    if args.target in ("gateway", "both"):
        results.append(fuzz_gateway(workdir, **run))
    print("\n== hostile input: schemathesis", f"(seed {args.seed}, max {args.max_examples} examples per operation)")
    for result in results:
        print(result.summary())
    print(f"reports and logs: {workdir}")
    write_report(args.summary, seed=args.seed, max_examples=args.max_examples, repeat_for=args.repeat_for,
                 targets=[result.record() for result in results])
    return 0 if all(result.ok for result in results) else 1


if __name__ == "__main__":
    sys.exit(main())
