"""Operator scale: 100 pools x 4 GPU models brought to their children, and API calls at rest.

The real operator (kopf, in-process) against the Kubernetes emulator on 127.0.0.1 (the test
substrate of tests/operator, `sdxlpool.testing`). It measures:

* convergence: from creating N pools at once until every pool has all its Deployments (one per GPU
  model + the gateway) and a status reporting every GPU model;
* calls at rest: API requests per pool per minute once everything has converged, excluding kopf's
  long-lived watch streams (what a quiet cluster costs the API server).

    python benchmarks/operator_scale.py [--pools 100] [--rest-seconds 60] [--resync-seconds 300]

Bounded: a fixed number of pools, every wait has a timeout, traffic to 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

from sdxlpool.api import labels as lbl

GPUS = ["A100", "RTX-3090", "L40S", "H100"]
NODES = {"gpu-a100": "NVIDIA-A100-SXM4-80GB", "gpu-3090": "NVIDIA-GeForce-RTX-3090",
         "gpu-l40s": "NVIDIA-L40S", "gpu-h100": "NVIDIA-H100-80GB-HBM3"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pools", type=int, default=100)
    parser.add_argument("--rest-seconds", type=float, default=60)
    parser.add_argument("--settle-seconds", type=float, default=15,
                        help="after convergence, before the rest window: late events still being handled")
    parser.add_argument("--resync-seconds", type=float, default=300, help="the operator's safety-net timer")
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    os.environ["SDXLPOOL_OPERATOR_RESYNC_SECONDS"] = str(args.resync_seconds)

    from sdxlpool._kube import connect
    from sdxlpool.testing.emulator import EmulatorThread
    from sdxlpool.testing.operator import OperatorThread

    with EmulatorThread(Path(tempfile.mkdtemp(prefix="operator-scale-"))) as emulator:
        kube = connect(str(emulator.kubeconfig))
        for name, product in NODES.items():
            kube.create({"apiVersion": "v1", "kind": "Node",
                         "metadata": {"name": name, "labels": {lbl.NVIDIA_PRODUCT: product}}})
        with OperatorThread(emulator.kubeconfig):
            started = time.perf_counter()
            for i in range(args.pools):
                kube.create(pool(f"pool-{i:03d}"))
            created = time.perf_counter() - started
            converged = wait_converged(emulator, args.pools, args.timeout) - started
            settle_start = api_calls(emulator)
            time.sleep(args.settle_seconds)
            before = api_calls(emulator)
            time.sleep(args.rest_seconds)
            at_rest = api_calls(emulator) - before
    per_pool_minute = at_rest / args.pools / (args.rest_seconds / 60)
    result = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.node()} {platform.machine()}, {os.cpu_count()} CPUs",
        "command": " ".join(["python", *sys.argv]),
        "pools": args.pools,
        "gpu_models_per_pool": len(GPUS),
        "deployments": args.pools * (len(GPUS) + 1),
        "seconds_to_create_pools": round(created, 2),
        "seconds_to_converge": round(converged, 2),
        "api_calls_to_converge": settle_start,
        "api_calls_while_settling": before - settle_start,
        "rest_seconds": args.rest_seconds,
        "resync_seconds": args.resync_seconds,
        "api_calls_at_rest": at_rest,
        "api_calls_per_pool_per_minute_at_rest": round(per_pool_minute, 3),
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text)
    return 0


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
    from kmock._internal import enums

    return sum(1 for request in list(emulator.emulator) if request.action != enums.action.WATCH)


if __name__ == "__main__":
    sys.exit(main())
