"""Soak: 10 000 requests through the gateway, and nothing in it grows.

    python reliability/soak.py [--requests 10000] [--concurrency 8] [--every 250] [--warmup 0.2]
                               [--max-seconds 900] [--out FILE]

Two sim-workers with no delay (--step-seconds 0) behind one gateway; `--concurrency` closed-loop
clients send 64x64, 1-step txt2img requests until `--requests` have been answered. Every `--every`
answers the gateway process is sampled: RSS and open file descriptors (psutil), threads, and the
event loop's live asyncio tasks (`sdxl_gateway_asyncio_tasks` on its /metrics, read at scrape time).
After the first `--warmup` fraction of the requests, each series' least-squares slope per 1000
requests is its growth; the run passes when

  RSS      < --max-rss-slope MiB per 1000 requests (default 1.0: a leak of 1 KiB a request fails)
  fds      < 1 per 1000 requests (anything that grows with the request count shows here)
  tasks    < 5 per 1000 requests (a sample counts the in-flight requests' tasks too, up to a few per
           request: noise of +-10), and once idle after the run, at most 2 more than before it
  errors   every request answered 200; no transport errors; and at the end the gateway's
           in-flight gauge is back to 0.

Bounded: stops at `--requests` or `--max-seconds`. 127.0.0.1 only; every child is stopped.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx

from sdxlpool.testing.pool import (
    KEEPALIVE_EXPIRY,
    GatewaySample,
    LocalPool,
    Tally,
    WorkerSpec,
    sample_gateway,
    send,
    write_report,
)
from sdxlpool.testing.stats import percentile, slope_per_1000

BODY = {"prompt": "soak", "steps": 1, "width": 64, "height": 64, "sampler_name": "Euler"}


@dataclass(frozen=True)
class SoakConfig:
    requests: int = 10_000
    concurrency: int = 8
    every: int = 250
    warmup: float = 0.2  # fraction of the requests before the slope is measured
    max_seconds: float = 900.0
    max_rss_slope: float = 1.0  # MiB per 1000 requests
    max_fd_slope: float = 1.0
    max_task_slope: float = 5.0


def run_soak(config: SoakConfig, workdir: Path, say: Any = print) -> dict[str, Any]:
    workers = [WorkerSpec(f"w{i + 1}", "A100", 0.0) for i in range(2)]
    with LocalPool(workdir, workers) as pool:
        say(f"[soak] pool of 2 up; {config.requests} requests, {config.concurrency} at a time")
        return asyncio.run(_drive(config, pool, say))


async def _drive(config: SoakConfig, pool: LocalPool, say: Any) -> dict[str, Any]:
    gateway = pool.gateway_process()
    tally = Tally()
    samples: list[GatewaySample] = []
    next_sample = 0
    limits = httpx.Limits(max_connections=config.concurrency + 4, keepalive_expiry=KEEPALIVE_EXPIRY)
    async with httpx.AsyncClient(limits=limits) as client:
        samples.append(await sample_gateway(gateway, client, pool.url, 0))
        start = time.monotonic()
        deadline = start + config.max_seconds

        async def loop(n: int) -> None:
            nonlocal next_sample
            while tally.sent < config.requests and time.monotonic() < deadline:
                tally.sent += 1
                tally.add(await send(client, pool.url, {**BODY, "seed": tally.sent}, timeout=30))
                if len(tally.outcomes) >= next_sample + config.every:
                    next_sample += config.every
                    samples.append(await sample_gateway(gateway, client, pool.url, len(tally.outcomes)))
                    if len(samples) % 8 == 0:
                        say(f"[soak] {_sample_text(samples[-1])}")

        await asyncio.gather(*(loop(n) for n in range(config.concurrency)))
        wall = time.monotonic() - start
        await asyncio.sleep(0.5)  # the last answers' tasks finish
        final = await sample_gateway(gateway, client, pool.url, len(tally.outcomes))
    return _summary(config, tally, samples, final, wall)


def _summary(config: SoakConfig, tally: Tally, samples: list[GatewaySample], final: GatewaySample,
             wall: float) -> dict[str, Any]:
    measured = [s for s in samples if s.requests >= config.warmup * tally.sent]
    xs = [float(s.requests) for s in measured]

    def slope(values: list[float | None]) -> float | None:
        if any(v is None for v in values):
            return None
        return round(slope_per_1000(xs, [float(v) for v in values if v is not None]), 4)

    latencies = tally.latencies()
    return {
        "requests": config.requests, "sent": tally.sent, "ok": tally.count("ok"), "errors": tally.codes(),
        "concurrency": config.concurrency, "wall_seconds": round(wall, 1),
        "rps": round(len(tally.outcomes) / max(wall, 1e-9), 1),
        "p50": percentile(latencies, 50), "p99": percentile(latencies, 99),
        "warmup_requests": int(config.warmup * tally.sent), "samples": len(measured),
        "rss_mib_per_1000": slope([s.rss_mib for s in measured]),
        "fds_per_1000": slope([s.fds for s in measured]),
        "threads_per_1000": slope([s.threads for s in measured]),
        "tasks_per_1000": slope([s.tasks for s in measured]),
        "first": asdict(samples[0]), "after_warmup": asdict(measured[0]) if measured else None,
        "last": asdict(samples[-1]), "final": asdict(final),
        "bounds": {"rss_mib_per_1000": config.max_rss_slope, "fds_per_1000": config.max_fd_slope,
                   "tasks_per_1000": config.max_task_slope},
    }


def violations(s: dict[str, Any]) -> list[str]:
    broken = []
    if s["ok"] != s["sent"] or s["sent"] < s["requests"]:
        broken.append(f"{s['ok']} of {s['sent']} answered 200 ({s['requests']} asked) {s['errors']}")
    for key, bound in s["bounds"].items():
        if s[key] is None:
            broken.append(f"{key} not measured")
        elif s[key] >= bound:
            broken.append(f"{key} {s[key]} >= {bound}")
    if s["final"]["tasks"] is not None and s["final"]["tasks"] > s["first"]["tasks"] + 2:
        broken.append(f"{s['final']['tasks']} asyncio tasks once idle, {s['first']['tasks']} before the run")
    if s["final"]["inflight"]:
        broken.append(f"gateway in-flight gauge {s['final']['inflight']} after the run")
    return broken


def _sample_text(s: GatewaySample) -> str:
    return f"{s.requests} answered: RSS {s.rss_mib:.1f} MiB, {s.fds} fds, {s.threads} threads, {s.tasks} tasks"


def line(s: dict[str, Any]) -> str:
    return (f"[soak] {s['ok']}/{s['sent']} ok in {s['wall_seconds']}s ({s['rps']} req/s, p50 {s['p50']}s, p99 "
            f"{s['p99']}s); per 1000 requests after {s['warmup_requests']}: RSS {s['rss_mib_per_1000']} MiB, fds "
            f"{s['fds_per_1000']}, threads {s['threads_per_1000']}, tasks {s['tasks_per_1000']}; RSS "
            f"{s['first']['rss_mib']:.1f} -> {s['last']['rss_mib']:.1f} MiB, fds {s['first']['fds']} -> "
            f"{s['last']['fds']}, tasks {s['first']['tasks']} -> {s['last']['tasks']} (idle after: "
            f"{s['final']['tasks']}, in flight {s['final']['inflight']})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=10_000, help="requests in all (default 10000)")
    parser.add_argument("--concurrency", type=int, default=8, help="requests at a time (default 8)")
    parser.add_argument("--every", type=int, default=250, help="sample the gateway every N answers (250)")
    parser.add_argument("--warmup", type=float, default=0.2, help="fraction left out of the slope (0.2)")
    parser.add_argument("--max-seconds", type=float, default=900.0, help="stop after this long (900)")
    parser.add_argument("--max-rss-slope", type=float, default=1.0, help="MiB per 1000 requests (1.0)")
    parser.add_argument("--out", type=Path, help="write the summary as JSON here")
    args = parser.parse_args()
    if args.requests < 10 or args.concurrency < 1 or args.every < 1 or not 0 <= args.warmup < 1:
        parser.error("bad --requests/--concurrency/--every/--warmup")
    config = SoakConfig(requests=args.requests, concurrency=args.concurrency, every=args.every, warmup=args.warmup,
                        max_seconds=args.max_seconds, max_rss_slope=args.max_rss_slope)
    summary = run_soak(config, Path(tempfile.mkdtemp(prefix="sdxl-soak-")))
    print(line(summary))
    broken = violations(summary)
    print("FAIL: " + "; ".join(broken) if broken else "PASS")
    write_report(args.out, summary=summary)
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
