"""Overload: 10x the pool's capacity for a minute, and the gateway sheds load cleanly.

    python reliability/overload.py [--seconds 60] [--factor 10] [--workers 2] [--max-requests 2000]
                                   [--queue-deadline 10] [--backlog-seconds 5] [--out FILE]

`--workers` sim-workers (0.1 s a step; a request is 10 normalised steps, 1 s) behind one gateway
get open-loop Poisson arrivals at `--factor` x the pool's capacity for `--seconds` (at most
`--max-requests`). The gateway runs with SDXLPOOL_GATEWAY_QUEUE_DEADLINE=`--queue-deadline` and
SDXLPOOL_GATEWAY_BACKLOG_SECONDS=`--backlog-seconds` (a worker with more queued work than that is
full), so an accepted request spends at most queue deadline + backlog + service in the pool:
that is the latency bound its p50/p95/p99 are compared with.

Invariants (checked by tests/reliability/test_overload_short.py):
  only 200 and 429   every answer is 200, or 429 with Retry-After and a JSON error code; any
                     other status, transport error or timeout is counted as `other`;
  bounded latency    accepted requests' p99 <= the bound above (+ 5 s of slack for the client);
  bounded memory     the gateway's peak RSS, sampled every 0.5 s with psutil, stays under
                     --max-rss-mib (default 300).

Bounded: arrivals stop after `--seconds` or `--max-requests`; answers are awaited at most the
client timeout (bound + 30 s). 127.0.0.1 only; every child process is stopped in `finally`.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from sdxlpool.testing.pool import KEEPALIVE_EXPIRY, LocalPool, Tally, WorkerSpec, send, write_report
from sdxlpool.testing.stats import percentile, poisson_arrivals

STEPS, SIZE = 40, 512  # 40 Euler steps at 512x512 = 10 normalised steps a request


@dataclass(frozen=True)
class OverloadConfig:
    seconds: float = 60.0
    factor: float = 10.0
    workers: int = 2
    step_seconds: float = 0.1
    max_requests: int = 2000
    queue_deadline: float = 10.0
    backlog_seconds: float = 5.0
    max_rss_mib: float = 300.0
    seed: int = 1

    @property
    def service_seconds(self) -> float:
        return STEPS * (SIZE * SIZE) / (1024 * 1024) * self.step_seconds

    @property
    def capacity(self) -> float:
        return self.workers / self.service_seconds

    @property
    def latency_bound(self) -> float:
        """Longest an accepted request should take: gateway queue, worker backlog, its own steps."""
        return self.queue_deadline + self.backlog_seconds + self.service_seconds


def run_overload(config: OverloadConfig, workdir: Path, say: Any = print) -> dict[str, Any]:
    workers = [WorkerSpec(f"w{i + 1}", "A100", config.step_seconds) for i in range(config.workers)]
    env = {"SDXLPOOL_GATEWAY_QUEUE_DEADLINE": str(config.queue_deadline),
           "SDXLPOOL_GATEWAY_BACKLOG_SECONDS": str(config.backlog_seconds)}
    with LocalPool(workdir, workers, gateway_env=env) as pool:
        say(f"[overload] pool of {config.workers} up, capacity {config.capacity:.1f} req/s; offering "
            f"{config.factor:g}x for {config.seconds:g}s")
        return asyncio.run(_drive(config, pool))


async def _drive(config: OverloadConfig, pool: LocalPool) -> dict[str, Any]:
    rng = random.Random(config.seed)
    arrivals = poisson_arrivals(rng, config.factor * config.capacity, config.max_requests, config.seconds)
    tally = Tally()
    gateway = pool.gateway_process()
    rss: list[float] = []
    timeout = config.latency_bound + 30
    limits = httpx.Limits(max_connections=2000, max_keepalive_connections=200,
                          keepalive_expiry=KEEPALIVE_EXPIRY)
    async with httpx.AsyncClient(limits=limits) as client:

        async def sample() -> None:
            while True:
                rss.append(gateway.memory_info().rss / 2**20)
                await asyncio.sleep(0.5)

        async def one(i: int) -> None:
            body = {"prompt": "overload", "steps": STEPS, "width": SIZE, "height": SIZE, "sampler_name": "Euler",
                    "seed": i}
            tally.add(await send(client, pool.url, body, timeout))

        sampler = asyncio.create_task(sample())
        cpu_before = sum(gateway.cpu_times()[:2])
        start = time.monotonic()
        tasks = []
        for i, offset in enumerate(arrivals):
            await asyncio.sleep(max(0.0, start + offset - time.monotonic()))
            tally.sent += 1
            tasks.append(asyncio.create_task(one(i)))
        window = time.monotonic() - start
        await asyncio.gather(*tasks)
        wall = time.monotonic() - start
        cpu = 100 * (sum(gateway.cpu_times()[:2]) - cpu_before) / max(wall, 1e-9)
        sampler.cancel()
    ok = tally.latencies()
    other = tally.sent - tally.count("ok") - tally.count("rejected")
    return {
        "seconds": config.seconds, "factor": config.factor, "workers": config.workers,
        "capacity_rps": round(config.capacity, 2), "offered_rps": round(config.factor * config.capacity, 2),
        "achieved_arrival_rps": round(tally.sent / max(window, 1e-9), 2),
        "queue_deadline": config.queue_deadline, "backlog_seconds": config.backlog_seconds,
        "latency_bound": round(config.latency_bound, 2), "sent": tally.sent, "ok": tally.count("ok"),
        "rejected_429": tally.count("rejected"), "other": other, "errors": tally.codes(),
        "ok_rps": round(len(ok) / max(wall, 1e-9), 2),
        "p50": percentile(ok, 50), "p95": percentile(ok, 95), "p99": percentile(ok, 99),
        "max": round(ok[-1], 3) if ok else None,
        "rejected_p50": percentile(tally.latencies("rejected"), 50),
        "rejected_p99": percentile(tally.latencies("rejected"), 99),
        "gateway_queue_p99": percentile(sorted(o.queue_seconds for o in tally.outcomes if o.kind == "ok"), 99),
        "gateway_cpu_percent": round(cpu, 1),
        "rss_start_mib": round(rss[0], 1) if rss else None, "rss_peak_mib": round(max(rss), 1) if rss else None,
        "max_rss_mib": config.max_rss_mib, "wall_seconds": round(wall, 1),
    }


def violations(s: dict[str, Any]) -> list[str]:
    broken = []
    if s["other"]:
        broken.append(f"{s['other']} answers other than 200/429 {s['errors']}")
    if s["p99"] is not None and s["p99"] > s["latency_bound"] + 5:
        broken.append(f"p99 {s['p99']}s over the bound {s['latency_bound']}s")
    if s["rss_peak_mib"] is not None and s["rss_peak_mib"] > s["max_rss_mib"]:
        broken.append(f"peak RSS {s['rss_peak_mib']} MiB over {s['max_rss_mib']} MiB")
    if not s["ok"] or not s["rejected_429"]:
        broken.append("expected both 200s and 429s")
    return broken


def line(s: dict[str, Any]) -> str:
    return (f"[overload] {s['factor']:g}x {s['capacity_rps']} req/s: sent {s['sent']} "
            f"({s['achieved_arrival_rps']} req/s), 200 {s['ok']} ({s['ok_rps']} req/s), 429 {s['rejected_429']}, "
            f"other {s['other']}; accepted p50 {s['p50']}s p95 {s['p95']}s p99 {s['p99']}s max {s['max']}s "
            f"(bound {s['latency_bound']}s; gateway queue p99 {s['gateway_queue_p99']}s); 429 p50 {s['rejected_p50']}s p99 {s['rejected_p99']}s; "
            f"gateway CPU {s['gateway_cpu_percent']}% of a core, RSS {s['rss_start_mib']} -> "
            f"peak {s['rss_peak_mib']} MiB; {s['wall_seconds']}s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60.0, help="seconds of arrivals (default 60)")
    parser.add_argument("--factor", type=float, default=10.0, help="offered load / capacity (default 10)")
    parser.add_argument("--workers", type=int, default=2, help="sim-workers (default 2)")
    parser.add_argument("--max-requests", type=int, default=2000, help="requests at most (default 2000)")
    parser.add_argument("--queue-deadline", type=float, default=10.0, help="gateway queue deadline (10 s)")
    parser.add_argument("--backlog-seconds", type=float, default=5.0, help="gateway's full-worker backlog (5 s)")
    parser.add_argument("--max-rss-mib", type=float, default=300.0, help="gateway peak RSS bound (300 MiB)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, help="write the summary as JSON here")
    args = parser.parse_args()
    if args.seconds <= 0 or args.factor <= 0 or args.workers < 1 or args.max_requests < 1:
        parser.error("bad --seconds/--factor/--workers/--max-requests")
    config = OverloadConfig(seconds=args.seconds, factor=args.factor, workers=args.workers,
                            max_requests=args.max_requests, queue_deadline=args.queue_deadline,
                            backlog_seconds=args.backlog_seconds, max_rss_mib=args.max_rss_mib, seed=args.seed)
    summary = run_overload(config, Path(tempfile.mkdtemp(prefix="sdxl-overload-")))
    print(line(summary))
    broken = violations(summary)
    print("FAIL: " + "; ".join(broken) if broken else "PASS")
    write_report(args.out, summary=summary)
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
