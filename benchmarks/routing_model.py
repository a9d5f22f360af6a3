"""Routing in a model: each policy against least-in-flight and the clairvoyant bound, on several speed
mixes, at several loads, with 1, 2 and 4 gateway replicas.

A discrete-event SIMULATION (benchmarks/_routing_model.py), not a load test: a simulated clock, no
processes, the gateway's real routing code (`default_scheduler`, the plugins, `BackendState`'s
dispatch accounting) fed 100 ms scrapes of simulated workers. Seeded and deterministic: every policy
sees the same arrivals at a mix and load. `benchmarks/routing.py` runs the same pools over HTTP
with real gateways and sim-workers, to check the model where the machine allows.

    python benchmarks/routing_model.py [--requests 3000] [--seeds 1,2,3] [--loads 0.5,0.8,0.95]
                                       [--replicas 1,2,4] [--mixes tiers3,equal,...] [--sizes fixed|mixed]
    python benchmarks/routing_model.py --sweep 1,2,3,5,8   # the default profile at other wait weights
    python benchmarks/routing_model.py --smoke --out FILE   # CI: a few hundred requests, seconds

Mixes (seconds per normalised step; a request is 20 steps at 1024x1024 with `--sizes fixed`):
  tiers3     2 x 0.01, 2 x 0.025, 4 x 0.06   (H100-, A100-, RTX 3090-like: benchmarks/routing.py's pool)
  equal      8 x 0.025
  two_tier   4 x 0.01, 4 x 0.03
  spread10   0.01, 0.015, 0.02, 0.03, 0.045, 0.06, 0.08, 0.1   (a 10x spread)
  batching   tiers3 with workers that batch up to 4 same-shape requests, a batch of n taking
             1 + 0.5 (n - 1) times one (the sim-worker's --batch-max 4 --batch-alpha 0.5, issue 16)
`--sizes mixed`: 20-40 steps, one in ten a hires job of 2.5x that (as benchmarks/autoscaling.py).

Policies (every one behind the same filters):
  ours            the gateway's default profile (`default_scheduler()`: completion_time with
                  waitWeight 5, waitSlack 1, preference 0.1, lora_affinity 0.2)
  ours_peers      the same, the replicas telling each other every dispatch (`--peers`; one
                  replica's scrapes, everyone's dispatches): only with 2+ replicas
  soonest         completion_time with waitWeight 1: the soonest expected completion (the default
                  profile before issue 19)
  least_inflight  scorer least_inflight (least-connections: nginx least_conn, HAProxy leastconn)
  round_robin     picker round_robin
  clairvoyant     ours' scheduler fed the exact remaining work and speed of every worker at each
                  decision, no scrape delay: the bound for this rule with perfect information
  clairvoyant_soonest  the same for soonest: the bound for the plain soonest-completion rule

Load = a fraction of the pool's capacity, the sum of 1 / (mean cost x seconds per step) (unbatched
for the batching mix). Figures per cell: p50/p95/p99 of latency (arrival to answer), lost (never
answered within `--drain-seconds` after the last arrival), and what the router believed: the
chosen worker's expected completion minus the real one (bias, mean absolute error), the work it
thought was queued there minus the truth, and the share of decisions that did not pick the worker
that would really have finished first. Ratios: to least-in-flight at the same mix, load and
replica count, and to the clairvoyant bound at the same mix and load.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _routing_model import Pool, simulate, summarise

from sdxlpool.gateway.routing import Scheduler, default_scheduler, scheduler_from_config
from sdxlpool.testing.pool import write_report

RESULTS = Path(__file__).resolve().parent / "results"
FILTERS = ["gpu_allowed", "not_tried", "available", {"type": "freshness", "staleAfter": 2.0}]
MIXES: dict[str, tuple[tuple[float, ...], int]] = {  # seconds per normalised step per worker; batch_max
    "tiers3": ((0.01,) * 2 + (0.025,) * 2 + (0.06,) * 4, 1),
    "equal": ((0.025,) * 8, 1),
    "two_tier": ((0.01,) * 4 + (0.03,) * 4, 1),
    "spread10": ((0.01, 0.015, 0.02, 0.03, 0.045, 0.06, 0.08, 0.1), 1),
    "batching": ((0.01,) * 2 + (0.025,) * 2 + (0.06,) * 4, 4),
}
BATCH_ALPHA = 0.5
STEPS = 20


def _profile(scorers: list[dict[str, Any]], picker: str = "best") -> Callable[[random.Random], Scheduler]:
    config = {"filters": FILTERS, "scorers": scorers, "picker": picker}
    return lambda rng: scheduler_from_config(config, rng=rng)


def _ours(rng: random.Random) -> Scheduler:
    return default_scheduler(rng=rng)


SOONEST = _profile([{"type": "completion_time", "weight": 1.0, "waitWeight": 1.0}, {"type": "preference", "weight": 0.1}])
POLICIES: dict[str, dict[str, Any]] = {  # name -> simulate() keywords
    "ours": {"scheduler": _ours},
    "ours_peers": {"scheduler": _ours, "share_dispatches": True},
    "soonest": {"scheduler": SOONEST},
    "least_inflight": {"scheduler": _profile([{"type": "least_inflight", "weight": 1.0}])},
    "round_robin": {"scheduler": _profile([], picker="round_robin")},
    "clairvoyant": {"scheduler": _ours, "clairvoyant": True},
    "clairvoyant_soonest": {"scheduler": SOONEST, "clairvoyant": True},
}
ONE_REPLICA_ONLY = {"clairvoyant", "clairvoyant_soonest"}  # no gateway state, so replicas change nothing
SEVERAL_REPLICAS_ONLY = {"ours_peers"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=3000, help="requests per cell and seed (default 3000)")
    parser.add_argument("--seeds", default="1,2,3", help="arrival seeds; a cell pools their requests")
    parser.add_argument("--loads", default="0.5,0.8,0.95", help="offered load as fractions of capacity")
    parser.add_argument("--replicas", default="1,2,4", help="gateway replicas (the client alternates)")
    parser.add_argument("--mixes", default=",".join(MIXES), help=f"from {', '.join(MIXES)}")
    parser.add_argument("--policies", default=",".join(POLICIES), help=f"from {', '.join(POLICIES)}")
    parser.add_argument("--sizes", choices=("fixed", "mixed"), default="fixed", help="request sizes (see above)")
    parser.add_argument("--sweep", help="instead: the default profile at these wait weights, 1 replica")
    parser.add_argument("--drain-seconds", type=float, default=600.0)
    parser.add_argument("--out", type=Path, help="JSON result (default benchmarks/results/DATE-sim-routing_model.json)")
    parser.add_argument("--smoke", action="store_true", help="CI check that the script runs: small, seconds")
    args = parser.parse_args()
    if args.smoke:
        args.requests, args.seeds, args.loads, args.replicas, args.mixes = 300, "1", "0.8", "1,2", "tiers3"
    try:
        seeds = [int(x) for x in args.seeds.split(",")]
        loads = [float(x) for x in args.loads.split(",")]
        replicas = [int(x) for x in args.replicas.split(",")]
        sweep = [float(x) for x in args.sweep.split(",")] if args.sweep else []
    except ValueError as exc:
        parser.error(f"--seeds, --loads, --replicas and --sweep take comma-separated numbers ({exc})")
    mixes = args.mixes.split(",")
    policies = args.policies.split(",")
    bad = [m for m in mixes if m not in MIXES] + [p for p in policies if p not in POLICIES]
    if bad or args.requests < 10 or not loads or min(loads) <= 0 or not replicas or min(replicas) < 1:
        parser.error(f"unknown mixes or policies {bad}, or --requests < 10, or a load or replica count < 1")
    if sweep and min(sweep) < 1:
        parser.error("--sweep: wait weights are numbers >= 1")

    started = time.monotonic()
    if sweep:
        policies, replicas = ["least_inflight"], [1]
        for weight in sweep:
            name = f"ours_wait_{weight:g}"
            POLICIES[name] = {"scheduler": lambda rng, w=weight: default_scheduler(rng=rng, wait_weight=w)}
            policies.append(name)
    cells = [_cell(mix, load, r, policy, seeds, args)
             for mix in mixes for load in loads for r in replicas for policy in policies
             if not (r > 1 and policy in ONE_REPLICA_ONLY) and not (r == 1 and policy in SEVERAL_REPLICAS_ONLY)]
    _add_ratios(cells)
    summary = _summary(cells)
    for line in _table(cells):
        print(line)
    print()
    for line in summary["lines"]:
        print(line)
    out = args.out or RESULTS / f"{time.strftime('%Y-%m-%d')}-sim-routing_model{'-sweep' if sweep else ''}.json"
    write_report(out, simulation=True, mixes={m: {"step_seconds": MIXES[m][0], "batch_max": MIXES[m][1],
                                                  "batch_alpha": BATCH_ALPHA} for m in mixes},
                 steps=STEPS, sizes=args.sizes, requests_per_seed=args.requests, seeds=seeds, loads=loads,
                 replicas=replicas, policies=policies, scrape_period_seconds=0.1,
                 wall_seconds=round(time.monotonic() - started, 1), cells=cells, summary=summary)
    print(f"\nwrote {out}")
    return 0


def _requests(seed: int, rate: float, count: int, sizes: str) -> tuple[list[float], list[float]]:
    rng = random.Random(seed)
    arrivals, costs, t = [], [], 0.0
    for _ in range(count):
        t += rng.expovariate(rate)
        arrivals.append(t)
        cost = float(STEPS) if sizes == "fixed" else float(rng.randint(20, 40)) * (2.5 if rng.random() < 0.1 else 1)
        costs.append(cost)
    return arrivals, costs


def _mean_cost(sizes: str) -> float:
    return float(STEPS) if sizes == "fixed" else 30.0 * (0.9 + 0.1 * 2.5)


def _cell(mix: str, load: float, replicas: int, policy: str, seeds: list[int], args: argparse.Namespace
          ) -> dict[str, Any]:
    step_seconds, batch_max = MIXES[mix]
    pool = Pool(step_seconds, tuple(f"gpu-{s * 1000:g}ms" for s in step_seconds), batch_max, BATCH_ALPHA)
    capacity = sum(1 / (_mean_cost(args.sizes) * s) for s in step_seconds)
    outcomes = []
    for seed in seeds:
        arrivals, costs = _requests(seed * 1000 + round(load * 100), load * capacity, args.requests, args.sizes)
        outcomes += simulate(pool, arrivals, costs, replicas=replicas, seed=seed,
                             drain_seconds=args.drain_seconds, **POLICIES[policy])
    return {"mix": mix, "load": load, "replicas": replicas, "policy": policy,
            "capacity_rps": round(capacity, 3), **summarise(outcomes)}


def _add_ratios(cells: list[dict[str, Any]]) -> None:
    by = {(c["mix"], c["load"], c["replicas"], c["policy"]): c for c in cells}
    for c in cells:
        lif = by.get((c["mix"], c["load"], c["replicas"], "least_inflight"))
        bound = by.get((c["mix"], c["load"], 1, "clairvoyant"))
        for key, peer in (("over_least_inflight", lif), ("over_clairvoyant", bound)):
            c[key] = {q: round(c[q] / peer[q], 3) if peer and peer[q] and c[q] is not None else None
                      for q in ("p50", "p95")}


def _summary(cells: list[dict[str, Any]]) -> dict[str, Any]:
    """Issue 19's goal per policy: p95 <= 0.5x and p50 <= 1.0x least-in-flight's, in how many cells,
    the worst ratios, and the worst ratio to the clairvoyant bound; the same for the bound itself."""
    lines: list[str] = []
    goal: dict[str, Any] = {}
    for policy in dict.fromkeys(c["policy"] for c in cells):
        mine = [c for c in cells if c["policy"] == policy and c["over_least_inflight"]["p95"] is not None]
        if not mine or policy == "least_inflight":
            continue
        met = [c for c in mine if c["over_least_inflight"]["p95"] <= 0.5 and c["over_least_inflight"]["p50"] <= 1.0]
        worst = {q: max(c["over_least_inflight"][q] for c in mine) for q in ("p50", "p95")}
        bound = [c["over_clairvoyant"] for c in mine if c["over_clairvoyant"]["p95"] is not None]
        worst_bound = {q: max(b[q] for b in bound) for q in ("p50", "p95")} if bound else None
        lost = sum(c["lost"] for c in cells if c["policy"] == policy)
        goal[policy] = {"cells": len(mine), "goal_met": len(met), "worst_over_least_inflight": worst,
                        "worst_over_clairvoyant": worst_bound, "lost": lost}
        lines.append(f"{policy}: goal met in {len(met)} of {len(mine)} cells; worst p50 {worst['p50']:.2f}x, "
                     f"p95 {worst['p95']:.2f}x least-in-flight's"
                     + (f"; worst {worst_bound['p50']:.2f}x / {worst_bound['p95']:.2f}x the clairvoyant bound"
                        if worst_bound else "") + f"; lost {lost}")
    return {"goal": goal, "lines": lines}


def _table(cells: list[dict[str, Any]]) -> list[str]:
    lines = ["| mix | load | replicas | policy | p50 s | p95 s | p99 s | p50 / LIF | p95 / LIF | p50 / bound "
             "| p95 / bound | lost | eta bias s | not soonest |", "|" + "---|" * 14]
    for c in cells:
        lif, bound, belief = c["over_least_inflight"], c["over_clairvoyant"], c["belief"]
        lines.append(f"| {c['mix']} | {c['load']:.0%} | {c['replicas']} | {c['policy']} | {_n(c['p50'])} "
                     f"| {_n(c['p95'])} | {_n(c['p99'])} | {_n(lif['p50'], 2)} | {_n(lif['p95'], 2)} "
                     f"| {_n(bound['p50'], 2)} | {_n(bound['p95'], 2)} | {c['lost']} "
                     f"| {_n(belief['eta_bias_seconds'])} | {_n(belief['not_soonest_share'], 2)} |")
    return lines


def _n(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


if __name__ == "__main__":
    sys.exit(main())
