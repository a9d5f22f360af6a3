"""Operator scale: 100 pools x 4 GPU models brought to their children, and API calls at rest.

The real operator (kopf, in-process) against the Kubernetes emulator on 127.0.0.1 (the test
substrate of tests/operator, `sdxlpool.testing`). It measures:

* convergence: from creating N pools at once until every pool has all its Deployments (one per GPU
  model + the gateway) and a status reporting every GPU model;
* calls at rest: API requests once everything has converged, excluding kopf's long-lived watch
  streams (what a quiet cluster costs the API server), per pool per minute and per pool per run of
  the resync timer.

The resync timer (a safety net that re-syncs every pool; 300 s in production) is SHORTENED here,
to 20 s by default, so that the rest window holds its runs: the window lasts at least
`--rest-seconds` and until every pool's timer has run `--timer-runs` times (2) inside it, counted
from the operator's own log. A window shorter than the timer would measure nothing but silence.

    python benchmarks/operator_scale.py [--pools 100] [--resync-seconds 20] [--timer-runs 2] [--out FILE]
    python benchmarks/operator_scale.py --smoke     # 2 pools, a 2 s timer: seconds, for CI

The results JSON (`--out`) says when, where, how, from which commit and whether the tree was clean
(`sdxlpool.testing.pool.write_report`).

Bounded: a fixed number of pools, every wait has a timeout, traffic to 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from sdxlpool.api import labels as lbl

GPUS = ["A100", "RTX-3090", "L40S", "H100"]
NODES = {"gpu-a100": "NVIDIA-A100-SXM4-80GB", "gpu-3090": "NVIDIA-GeForce-RTX-3090",
         "gpu-l40s": "NVIDIA-L40S", "gpu-h100": "NVIDIA-H100-80GB-HBM3"}
PRODUCTION_RESYNC_SECONDS = 300.0  # OperatorSettings' default
QUIET_SECONDS = 1.0  # settled: no API call for this long (the timer, if it calls, runs less often)
REPO = Path(__file__).resolve().parent.parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pools", type=int, default=100)
    parser.add_argument("--rest-seconds", type=float, default=0,
                        help="shortest rest window; it lasts until every pool's timer ran --timer-runs times in it")
    parser.add_argument("--timer-runs", type=int, default=2, help="timer runs per pool the rest window must hold")
    parser.add_argument("--settle-seconds", type=float, default=15,
                        help="after convergence, before the rest window: late events still being handled; "
                        f"longer until no API call came for {QUIET_SECONDS:g} s")
    parser.add_argument("--resync-seconds", type=float, default=20,
                        help=f"the operator's safety-net timer, shortened (production: {PRODUCTION_RESYNC_SECONDS:g})")
    parser.add_argument("--timeout", type=float, default=600, help="for convergence, and again for the rest window")
    parser.add_argument("--smoke", action="store_true", help="2 pools, a 2 s timer, 2 s settling: seconds (CI)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if args.smoke:
        args.pools, args.resync_seconds, args.settle_seconds, args.timeout = 2, 2.0, 2.0, 60.0

    from sdxlpool._kube import connect
    from sdxlpool.testing.emulator import EmulatorThread
    from sdxlpool.testing.operator import OperatorThread, TimerRuns
    from sdxlpool.testing.pool import write_report

    timer_runs = TimerRuns()
    with EmulatorThread(Path(tempfile.mkdtemp(prefix="operator-scale-"))) as emulator, timer_runs:
        kube = connect(str(emulator.kubeconfig))
        for name, product in NODES.items():
            kube.create({"apiVersion": "v1", "kind": "Node",
                         "metadata": {"name": name, "labels": {lbl.NVIDIA_PRODUCT: product}}})
        names = [f"pool-{i:03d}" for i in range(args.pools)]
        with OperatorThread(emulator.kubeconfig, resync_seconds=args.resync_seconds):
            started = time.perf_counter()
            for name in names:
                kube.create(pool(name))
            created = time.perf_counter() - started
            converged = wait_converged(emulator, args.pools, args.timeout) - started
            settle_start = api_calls(emulator)
            settle(emulator, args.settle_seconds, args.timeout)
            before, runs_before, rest_started = api_calls(emulator), timer_runs.snapshot(), time.perf_counter()
            runs = wait_timer_runs(timer_runs, runs_before, names, args.timer_runs, args.rest_seconds, args.timeout)
            at_rest, rest_seconds = api_calls(emulator) - before, time.perf_counter() - rest_started
        kube.close()
    total_runs = sum(runs.values())
    results: dict[str, Any] = {
        "pools": args.pools,
        "gpu_models_per_pool": len(GPUS),
        "deployments": args.pools * (len(GPUS) + 1),
        "seconds_to_create_pools": round(created, 2),
        "seconds_to_converge": round(converged, 2),
        "api_calls_to_converge": settle_start,
        "api_calls_while_settling": before - settle_start,
        "resync_seconds": args.resync_seconds,
        "resync_seconds_in_production": PRODUCTION_RESYNC_SECONDS,
        "note": f"resync timer shortened from {PRODUCTION_RESYNC_SECONDS:g} s to {args.resync_seconds:g} s so that "
                "the rest window holds its runs",
        "rest_seconds": round(rest_seconds, 2),
        "timer_runs_in_rest_window": total_runs,
        "timer_runs_per_pool_in_rest_window": {"min": min(runs.values()), "max": max(runs.values())},
        "api_calls_at_rest": at_rest,
        "api_calls_per_pool_per_minute_at_rest": round(at_rest / args.pools / (rest_seconds / 60), 3),
        "api_calls_per_pool_per_timer_run": round(at_rest / total_runs, 3),
    }
    print(json.dumps(results, indent=2))
    write_report(args.out, **results)
    return 0


def settle(emulator, at_least: float, timeout: float) -> None:
    """Wait `at_least` seconds, and on until no API call came for QUIET_SECONDS: the operator has
    worked off the events of its own writes (on a loaded machine that takes longer)."""
    started = time.perf_counter()
    time.sleep(at_least)
    calls, since = api_calls(emulator), time.perf_counter()
    while time.perf_counter() - since < QUIET_SECONDS:
        if time.perf_counter() - started > timeout:
            raise TimeoutError(f"API calls still coming {timeout}s after convergence")
        time.sleep(0.1)
        if (now := api_calls(emulator)) != calls:
            calls, since = now, time.perf_counter()


def wait_timer_runs(timer_runs: Any, before: Counter[str], names: list[str], runs: int, at_least: float,
                    timeout: float) -> dict[str, int]:
    """Wait until every pool's timer ran `runs` times since `before`, and `at_least` seconds passed;
    the runs per pool in that window."""
    started = time.perf_counter()
    while True:
        now = timer_runs.snapshot()
        counts = {name: now[name] - before[name] for name in names}
        elapsed = time.perf_counter() - started
        if min(counts.values()) >= runs and elapsed >= at_least:
            return counts
        if elapsed > timeout:
            raise TimeoutError(f"after {timeout}s, timer runs per pool: {sorted(Counter(counts.values()).items())}")
        time.sleep(0.2)


def pool(name: str) -> dict:
    return copy.deepcopy({
        "apiVersion": "sdxlpool.dev/v1alpha1", "kind": "SDXLPool",
        "metadata": {"name": name, "namespace": "bench"},
        "spec": {"image": "example/sdxlpool:1", "model": {"volume": {"claimName": "weights", "basePath": "base"}},
                 "gpus": [{"model": gpu, "replicas": 2} for gpu in GPUS], "gateway": {"enabled": True}},
    })


def wait_converged(emulator, pools: int, timeout: float) -> float:
    """Read the emulator's memory directly: polling over HTTP would itself load the server."""
    deadline = time.perf_counter() + timeout
    want_deployments = pools * (len(GPUS) + 1)
    while time.perf_counter() < deadline:
        objects = [obj for obj in list(emulator.emulator.objects.values()) if not obj.deleted]
        deployments = sum(1 for obj in objects if obj.get("kind") == "Deployment")
        reported = sum(1 for obj in objects if obj.get("kind") == "SDXLPool"
                       and len((obj.get("status") or {}).get("gpus") or []) == len(GPUS))
        if deployments >= want_deployments and reported >= pools:
            return time.perf_counter()
        time.sleep(0.2)
    raise TimeoutError(f"not converged after {timeout}s")


def api_calls(emulator) -> int:
    """Requests so far, not counting watch streams (kopf keeps one open per watched kind)."""
    return emulator.api_calls()


if __name__ == "__main__":
    sys.exit(main())
