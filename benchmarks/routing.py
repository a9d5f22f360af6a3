"""Routing under load: this gateway's profile vs round-robin, first-free and least-in-flight.

One pool of `sdxlpool sim-worker`s of mixed speeds (2 fast, 2 medium, 4 slow), and the same
gateway (`sdxlpool gateway --routing PROFILE.yaml`) run once per routing policy; each policy gets
the same open-loop Poisson arrival schedule at each load level (a fraction of the pool's exact
capacity). Per cell: p50/p95/p99 latency, throughput, lost requests, 429s, and the ideal bound.

    python benchmarks/routing.py [--requests 300] [--max-seconds 60] [--loads 0.5,0.8,0.95,1.1]
                                 [--policies ours,round_robin,first_free,least_inflight] [--steps 20]
    python benchmarks/routing.py --smoke --out FILE   # CI: every step at tiny sizes, in seconds
    python benchmarks/routing.py --batch-max 4 [--batch-alpha 0.5]  # batching workers (below)
    python benchmarks/routing.py --gateways 2 [--peers]  # 2 gateway replicas, the client alternating
                                                         # between them; --peers: they share dispatches

`--smoke` (tests/benchmarks/test_smoke.py) runs 3 workers (one per speed), 2 policies at one load,
12 requests of 2 steps: it proves the script runs; its figures mean nothing.

Policies (all with the default filters gpu_allowed, not_tried, available, freshness):
  ours            completion_time 1.0 (waitWeight 5) + preference 0.1, picker best (the gateway's
                  default profile)
  soonest         completion_time 1.0 (waitWeight 1: the soonest expected completion, the default
                  profile before issue 19) + preference 0.1
  round_robin     picker round_robin (nginx/HAProxy round-robin)
  first_free      picker first_free (first idle worker by name, else a random one)
  least_inflight  scorer least_inflight, picker best (least-connections)

Timing model: a request is `--steps` Euler steps at 1024x1024, i.e. `steps` normalised steps, so it
takes steps x step_seconds on a worker (no overhead): 0.2 s / 0.5 s / 1.2 s at 20 steps on the
fast / medium / slow workers (0.01 / 0.025 / 0.06 s per step). Capacity = sum of 1 / service time.

Batching model (`--batch-max N`, default 1: off, the runs above unchanged): every sim-worker runs up
to N queued requests of the same shape as one batch (the worker's own --batch-max and queue), a batch
of n taking t(1) x (1 + a (n - 1)) with a = `--batch-alpha` (default 0.5, an assumed figure, not a
measured one: a = 1 gains nothing, a = 0 makes the batch free). Loads stay fractions of the
unbatched capacity; the batched bound, N / (t(1) x (1 + a (N - 1))) per worker, is reported beside
it. The result goes to routing-batching-DATE.json.

Figures per cell: latency percentiles over the answered (HTTP 200) requests, client wall clock;
throughput = answered / (first arrival to last answer, drain included); steady = answered in the
second half of the arrival window / its length (the pool's rate once it has filled up: the
throughput at saturation); lost = no answer, transport error, or a status other than 200 and 429;
429s on their own; ideal = min(offered, capacity) and the service time on the fastest worker.
CPU use of the gateway, the workers and this client is measured per cell (psutil, which
accelerate already requires), to show the 2-core machine is not the bottleneck.

Bounded: each cell stops sending after `--requests` or `--max-seconds`, whichever comes first,
then waits at most `--drain-seconds` for answers (what is left is lost); between cells every
worker's /metrics must show 0 pending steps. Traffic to 127.0.0.1 only. Every child process runs in
its own process group and is killed in `finally`.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil
import yaml

from sdxlpool.api import metric_names as mn
from sdxlpool.gateway.routing import DEFAULT_WAIT_WEIGHT
from sdxlpool.testing.pool import write_report
from sdxlpool.testing.ports import free_port as _free_port
from sdxlpool.testing.ports import free_udp_port
from sdxlpool.testing.processes import spawn as _spawn
from sdxlpool.testing.processes import stop as _stop
from sdxlpool.testing.processes import wait_ready
from sdxlpool.testing.processes import wait_scraped as _wait_scraped
from sdxlpool.testing.stats import percentile as _pct
from sdxlpool.testing.stats import poisson_arrivals

RESULTS = Path(__file__).resolve().parent / "results"
FILTERS = ["gpu_allowed", "not_tried", "available", {"type": "freshness", "staleAfter": 2.0}]
PROFILES: dict[str, dict[str, Any]] = {
    "ours": {"filters": FILTERS, "scorers": [{"type": "completion_time", "weight": 1.0, "waitWeight": DEFAULT_WAIT_WEIGHT},
                                             {"type": "preference", "weight": 0.1}], "picker": "best"},
    "soonest": {"filters": FILTERS, "scorers": [{"type": "completion_time", "weight": 1.0, "waitWeight": 1.0},
                                                {"type": "preference", "weight": 0.1}], "picker": "best"},
    "round_robin": {"filters": FILTERS, "scorers": [], "picker": "round_robin"},
    "first_free": {"filters": FILTERS, "scorers": [], "picker": "first_free"},
    "least_inflight": {"filters": FILTERS, "scorers": [{"type": "least_inflight", "weight": 1.0}], "picker": "best"},
}
SPEEDS = {"fast": ("H100", 0.01), "medium": ("A100", 0.025), "slow": ("RTX-3090", 0.06)}  # GPU, s per step
POOL = ("fast", "fast", "medium", "medium", "slow", "slow", "slow", "slow")
SMOKE_POOL = ("fast", "medium", "slow")
SIZE = 1024  # 1024x1024: one step is one normalised step
PENDING = re.compile(rf"^{mn.WORKER_PENDING_STEPS}\s+(\S+)$", re.M)


@dataclass
class Worker:
    name: str
    gpu: str
    step_seconds: float
    port: int
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=300, help="requests per cell at most (default 300)")
    parser.add_argument("--max-seconds", type=float, default=60.0, help="seconds of arrivals per cell at most")
    parser.add_argument("--drain-seconds", type=float, default=120.0, help="wait for answers after the last arrival")
    parser.add_argument("--loads", default="0.5,0.8,0.95,1.1", help="offered load as fractions of capacity")
    parser.add_argument("--policies", default=",".join(PROFILES), help=f"from {', '.join(PROFILES)}")
    parser.add_argument("--steps", type=int, default=20, help="Euler steps per request, at 1024x1024")
    parser.add_argument("--seed", type=int, default=1, help="seed of the arrival schedules")
    parser.add_argument("--out", type=Path, help="JSON result (default benchmarks/results/routing-DATE.json)")
    parser.add_argument("--smoke", action="store_true", help="CI check that the script runs: tiny sizes, seconds")
    parser.add_argument("--gateways", type=int, default=1,
                        help="gateway replicas per cell; the client alternates between them (default 1)")
    parser.add_argument("--peers", action="store_true",
                        help="with --gateways N > 1: the replicas share their dispatches (--peer-port, --peers)")
    parser.add_argument("--batch-max", type=int, default=1, help="sim-workers batch up to N requests (default 1: off)")
    parser.add_argument("--batch-alpha", type=float, default=0.5,
                        help="with --batch-max: a batch of n takes 1 + A x (n - 1) times one request (default 0.5)")
    args = parser.parse_args()
    if args.smoke:
        args.requests, args.max_seconds, args.drain_seconds, args.steps = 12, 3.0, 30.0, 2
        args.loads, args.policies = "0.8", "ours,round_robin"
    loads = [float(x) for x in args.loads.split(",") if x.strip()]
    policies = [p.strip() for p in args.policies.split(",") if p.strip()]
    unknown = [p for p in policies if p not in PROFILES]
    if unknown or not policies or not loads or min(loads) <= 0 or args.requests < 2 or args.steps < 2:
        parser.error(f"bad --policies/--loads/--requests/--steps (unknown policies: {unknown})")
    if args.gateways < 1 or (args.peers and args.gateways < 2):
        parser.error("--gateways must be 1 or more, and --peers needs 2 or more")
    if args.batch_max < 1 or not 0 <= args.batch_alpha <= 1:
        parser.error("--batch-max must be 1 or more, --batch-alpha between 0 and 1")
    batching = args.batch_max > 1

    workdir = Path(tempfile.mkdtemp(prefix="sdxl-routing-"))
    counts: Counter[str] = Counter()
    workers = []
    for tier in SMOKE_POOL if args.smoke else POOL:
        counts[tier] += 1
        gpu, step = SPEEDS[tier]
        workers.append(Worker(f"{tier}-{counts[tier]}", gpu, step, _free_port()))
    service = {w.name: args.steps * w.step_seconds for w in workers}  # seconds per request (Euler: 1 it/step)
    capacity = sum(1 / s for s in service.values())
    print(f"pool: {', '.join(f'{w.name} {service[w.name]:.2f}s' for w in workers)}; capacity {capacity:.3f} req/s",
          flush=True)
    batch_flags: list[str] = []
    batched_capacity = capacity
    if batching:
        batch_flags = ["--batch-max", str(args.batch_max), "--batch-alpha", str(args.batch_alpha)]
        batched_capacity = capacity * args.batch_max / (1 + args.batch_alpha * (args.batch_max - 1))
        print(f"batching: up to {args.batch_max} per batch, a = {args.batch_alpha}; batched capacity "
              f"{batched_capacity:.3f} req/s", flush=True)

    cells: list[dict[str, Any]] = []
    started = time.monotonic()
    children: list[subprocess.Popen] = []
    try:
        for w in workers:
            w.process = _spawn([sys.executable, "-m", "sdxlpool", "sim-worker", "--gpu-model", w.gpu,
                                "--step-seconds", str(w.step_seconds), "--port", str(w.port),
                                "--worker-name", w.name, "--max-queue", "16", *batch_flags], workdir / f"{w.name}.log")
            children.append(w.process)
        for w in workers:
            wait_ready(w.url, w.process, timeout=60)  # type: ignore[arg-type]
        asyncio.run(_warm_up(workers, args.steps))  # each measures its step_seconds at this size
        backends = workdir / "backends.yaml"
        backends.write_text(yaml.safe_dump({"backends": [
            {"name": w.name, "url": w.url, "gpu": w.gpu, "type": "sdxlpool"} for w in workers]}))
        for level, load in enumerate(loads):
            rate = load * capacity
            arrivals = poisson_arrivals(random.Random(args.seed * 1000 + level), rate, args.requests, args.max_seconds)
            for policy in policies:
                profile = workdir / f"{policy}.yaml"
                profile.write_text(yaml.safe_dump({"routing": PROFILES[policy]}))
                gateways = _start_gateways(args.gateways, backends, profile, workdir / f"gateway-{policy}",
                                           peers=args.peers)
                children.extend(gateways.values())
                try:
                    for url, gateway in gateways.items():
                        wait_ready(url, gateway, timeout=60)
                        _wait_scraped(url, len(workers))
                    cell = asyncio.run(_run_cell(list(gateways), arrivals, args,
                                                 list(gateways.values()), [w.process for w in workers]))
                finally:
                    for gateway in gateways.values():
                        _stop(gateway)
                        children.remove(gateway)
                _wait_drained(workers, args.drain_seconds)
                cell.update(policy=policy, gateways=args.gateways, peers=args.peers, load=load, offered_rate=round(rate, 3),
                            ideal_throughput=round(min(rate, capacity), 3),
                            ideal_latency=round(min(service.values()), 3))
                cells.append(cell)
                print(_row(cell), flush=True)
    finally:
        for child in children:
            _stop(child)

    result = {
        "pool": {w.name: {"gpu": w.gpu, "step_seconds": w.step_seconds, "service_seconds": round(service[w.name], 4)}
                 for w in workers},
        "steps": args.steps, "size": SIZE, "capacity_rps": round(capacity, 4),
        "requests_per_cell": args.requests, "max_seconds": args.max_seconds, "seed": args.seed,
        "gateways": args.gateways, "peers": args.peers,
        "profiles": {p: PROFILES[p] for p in policies},
        "wall_seconds": round(time.monotonic() - started, 1),
        "cells": cells,
    }
    if batching:
        result["batching"] = {"batch_max": args.batch_max, "alpha": args.batch_alpha,
                              "batched_capacity_rps": round(batched_capacity, 4)}
    result["summary"] = _summary(cells, capacity)
    print()
    print(_table(cells, capacity))
    print()
    for line in result["summary"]["lines"]:
        print(line)
    out = args.out or RESULTS / f"routing{'-batching' if batching else ''}-{time.strftime('%Y-%m-%d')}.json"
    write_report(out, **result)
    print(f"\nwrote {out}")
    return 0


# -- processes --------------------------------------------------------------------------------------

def _start_gateways(count: int, backends: Path, profile: Path, log_prefix: Path, *, peers: bool = False
                    ) -> dict[str, subprocess.Popen]:
    """`count` gateway replicas over the same backends file and profile: {url: process}. With `peers`,
    each announces its dispatches to the others (`--peer-port`, `--peers`)."""
    peer_ports = [free_udp_port() for _ in range(count)] if peers and count > 1 else []
    gateways: dict[str, subprocess.Popen] = {}
    for replica in range(count):
        port = _free_port()
        sharing: list[str] = []
        if peer_ports:
            others = [f"127.0.0.1:{p}" for i, p in enumerate(peer_ports) if i != replica]
            sharing = ["--peer-port", str(peer_ports[replica]), "--peers", ",".join(others)]
        gateways[f"http://127.0.0.1:{port}"] = _spawn(
            [sys.executable, "-m", "sdxlpool", "gateway", "--backends", str(backends), "--routing", str(profile),
             "--port", str(port), *sharing], Path(f"{log_prefix}-{replica + 1}.log"))
    return gateways


def _wait_drained(workers: list[Worker], timeout: float) -> None:
    """Until every worker reports 0 pending steps (queues empty between cells)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pending = [float(m.group(1)) for w in workers
                   if (m := PENDING.search(httpx.get(w.url + "/metrics", timeout=5).text))]
        if len(pending) == len(workers) and not any(pending):
            return
        time.sleep(0.2)
    raise TimeoutError("workers still had pending work")


async def _warm_up(workers: list[Worker], steps: int, rounds: int = 2) -> None:
    """A few jobs straight to each worker at the benchmark's size: step_seconds measured before any cell."""
    async with httpx.AsyncClient(timeout=60) as client:
        for i in range(rounds):
            responses = await asyncio.gather(*(client.post(w.url + "/sdapi/v1/txt2img", json=_body(steps, 1_000_000 + i))
                                               for w in workers))
            for response in responses:
                response.raise_for_status()


# -- one cell ---------------------------------------------------------------------------------------

def _body(steps: int, seed: int) -> dict[str, Any]:
    return {"prompt": "benchmark", "steps": steps, "width": SIZE, "height": SIZE, "sampler_name": "Euler",
            "seed": seed}


async def _run_cell(urls: list[str], arrivals: list[float], args: argparse.Namespace,
                    gateways: list[subprocess.Popen], workers: list[subprocess.Popen]) -> dict[str, Any]:
    """One cell: request i goes to gateway i mod len(urls) (a client alternating between replicas)."""
    watched = {"gateway": [psutil.Process(p.pid) for p in gateways],
               "workers": [psutil.Process(p.pid) for p in workers], "client": [psutil.Process()]}
    cpu_before = {k: _cpu(v) for k, v in watched.items()}
    psutil.cpu_percent()  # starts the machine-wide measurement
    outcomes: list[tuple[str, float, float, str]] = []  # (status, sent at, answered at, worker)
    limits = httpx.Limits(max_connections=2000, max_keepalive_connections=500)
    timeout = httpx.Timeout(args.max_seconds + args.drain_seconds, connect=10)
    async with httpx.AsyncClient(limits=limits, timeout=timeout) as client:

        async def one(i: int) -> None:
            sent = time.monotonic()
            try:
                response = await client.post(urls[i % len(urls)] + "/sdapi/v1/txt2img", json=_body(args.steps, i))
                status = str(response.status_code)
                worker = response.headers.get("X-SDXL-Worker", "")
            except httpx.HTTPError as exc:
                status, worker = type(exc).__name__, ""
            outcomes.append((status, sent, time.monotonic(), worker))

        start = time.monotonic()
        tasks = []
        for i, offset in enumerate(arrivals):
            await asyncio.sleep(max(0.0, start + offset - time.monotonic()))
            tasks.append(asyncio.create_task(one(i)))
        window_end = time.monotonic()
        _, unfinished = await asyncio.wait(tasks, timeout=args.drain_seconds) if tasks else (set(), set())
        for task in unfinished:
            task.cancel()
        await asyncio.gather(*unfinished, return_exceptions=True)
    end = max((answered for _, _, answered, _ in outcomes), default=time.monotonic())
    machine_cpu = psutil.cpu_percent()
    cpu = {k: round(100 * (_cpu(v) - cpu_before[k]) / max(1e-9, end - start), 1) for k, v in watched.items()}

    ok = sorted(answered - sent for status, sent, answered, _ in outcomes if status == "200")
    in_window = sum(1 for status, _, answered, _ in outcomes if status == "200" and answered <= window_end)
    half = start + (window_end - start) / 2  # steady state: the pool has filled up by the window's second half
    steady = sum(1 for status, _, answered, _ in outcomes if status == "200" and half < answered <= window_end)
    too_many = sum(1 for status, *_ in outcomes if status == "429")
    lost = len(arrivals) - len(ok) - too_many
    errors = Counter(status for status, *_ in outcomes if status not in ("200", "429"))
    if unfinished:
        errors["no answer"] += len(unfinished)
    return {
        "sent": len(arrivals), "completed": len(ok), "lost": lost, "rejected_429": too_many, "errors": dict(errors),
        "arrival_seconds": round(window_end - start, 2), "cell_seconds": round(end - start, 2),
        "p50": _pct(ok, 50), "p95": _pct(ok, 95), "p99": _pct(ok, 99), "mean": round(statistics.fmean(ok), 4) if ok else None,
        "throughput": round(len(ok) / max(1e-9, end - start), 3),
        "window_throughput": round(in_window / max(1e-9, window_end - start), 3),
        "steady_throughput": round(steady / max(1e-9, window_end - half), 3),
        "served_by": dict(sorted(Counter(w for status, _, _, w in outcomes if status == "200").items())),
        "cpu_percent": {**cpu, "machine": machine_cpu},
    }


def _cpu(processes: list[psutil.Process]) -> float:
    total = 0.0
    for process in processes:
        try:
            times = process.cpu_times()
            total += times.user + times.system
        except psutil.Error:
            pass
    return total


# -- report ---------------------------------------------------------------------------------------

HEADER = ("| load | policy | offered req/s | p50 s | p95 s | p99 s | throughput req/s | steady req/s | lost | 429 "
          "| ideal throughput | ideal latency s | CPU % gateway / workers / client / machine |")


def _row(c: dict[str, Any]) -> str:
    cpu = c["cpu_percent"]
    return (f"| {c['load']:.0%} | {c['policy']} | {c['offered_rate']:.2f} | {_num(c['p50'])} | {_num(c['p95'])} "
            f"| {_num(c['p99'])} | {c['throughput']:.2f} | {c['steady_throughput']:.2f} | {c['lost']} "
            f"| {c['rejected_429']} | {c['ideal_throughput']:.2f} | {c['ideal_latency']:.2f} "
            f"| {cpu['gateway']:.0f} / {cpu['workers']:.0f} / {cpu['client']:.0f} / {cpu['machine']:.0f} |")


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _table(cells: list[dict[str, Any]], capacity: float) -> str:
    lines = [f"capacity {capacity:.2f} req/s. throughput: answered / (first arrival to last answer); steady: "
             "answered in the second half of the arrival window / its length. CPU: % of one core over the cell "
             "(machine: % of all cores, every process on it)", "",
             HEADER, "|" + "---|" * (HEADER.count("|") - 1)]
    return "\n".join(lines + [_row(c) for c in cells])


def _summary(cells: list[dict[str, Any]], capacity: float) -> dict[str, Any]:
    """p95 ratio to round-robin at 80%, throughput / capacity at the highest load, lost overall."""
    by = {(c["load"], c["policy"]): c for c in cells}
    lines: list[str] = []
    ratios: dict[str, float] = {}
    rr80 = by.get((0.8, "round_robin"))
    if rr80 and rr80["p95"]:
        for (load, policy), cell in by.items():
            if load == 0.8 and cell["p95"]:
                ratios[policy] = round(cell["p95"] / rr80["p95"], 4)
        lines.append("p95 at 80% / round-robin's: " + ", ".join(f"{p} {r:.3f}" for p, r in ratios.items()))
    top = max((c["load"] for c in cells), default=None)
    saturation: dict[str, dict[str, float]] = {}
    for (load, policy), cell in by.items():
        if load == top:
            saturation[policy] = {"throughput_over_capacity": round(cell["throughput"] / capacity, 4),
                                  "steady_throughput_over_capacity": round(cell["steady_throughput"] / capacity, 4)}
    if top is not None:
        lines.append(f"throughput / capacity at {top:.0%} load (steady; whole cell): " + ", ".join(
            f"{p} {s['steady_throughput_over_capacity']:.3f}; {s['throughput_over_capacity']:.3f}"
            for p, s in saturation.items()))
    lost = {p: sum(c["lost"] for c in cells if c["policy"] == p) for p in dict.fromkeys(c["policy"] for c in cells)}
    lines.append("lost over all loads: " + ", ".join(f"{p} {n}" for p, n in lost.items()))
    return {"p95_over_round_robin_at_80": ratios, "saturation_load": top, "saturation": saturation, "lost": lost,
            "lines": lines}


if __name__ == "__main__":
    sys.exit(main())
