"""Chaos under load: workers die or hang while the gateway serves a steady open-loop load.

    python reliability/chaos.py [--seconds 120] [--modes kill,hang] [--workers 4] [--load 0.5]
                                [--progress-deadline 2] [--out FILE]

A pool of `--workers` sim-workers behind one gateway gets Poisson arrivals at `--load` x the pool's
capacity for `--seconds` (at most `--max-requests`), each a txt2img with its own prompt
("chaos N"); three in four ask for `seed: -1` (in hang mode, more: see below), the rest for a
concrete seed. Meanwhile a chaos monkey, every 2-5 s (random), picks a worker and:

  kill   SIGKILLs it and starts it again on the same port 0.5-2 s later;
  hang   SIGSTOPs it for 5-10 s, well past the gateway's --progress-deadline, then SIGCONTs it;
         in this mode one worker also runs with --hang-rate 0.1 (a job that never progresses),
         its fault seed chosen so that its first job hangs, and every request asks for `seed: -1`
         until that worker has been sent a job: one `seed: -1` request's first attempt hangs,
         and is on record, whatever the machine's load or the gateway's spread of the requests.

Invariants, per mode (all counted, and checked by tests/reliability/test_chaos_short.py):
  lost 0       every request sent is answered 200, or with a clear JSON error (4xx/5xx with an
               error code; 429 with Retry-After): no transport error, no unclear answer;
  hung 0       no request is still unanswered at the client's timeout, which is above the
               gateway's own bound (queue deadline + max attempts x attempt timeout);
  late 0       (hang mode) a 200's time in the gateway after its queue wait stays within
               attempts x (progress deadline + 1 s + service) + 3 s, `attempts` being the workers
               it tried (X-SDXL-Attempts): a hung worker is given up after the progress deadline,
               not when it comes back or after the attempt timeout;
  seeds 0      every 200 returns in `info` the seed its first attempt was sent, also after a failover:
               the workers log each job's seed and prompt (--log-prompts), so every attempt a worker
               received is on record, and all of a request's attempts must carry one seed, the one
               it returned (and the client's own, when it sent one). `seed: -1` requests are the
               ones a gateway that drew a seed per attempt would get wrong; `seed_checked` counts
               those that failed over with their first attempt on record.

Bounded: arrivals stop after `--seconds` or `--max-requests`; answers are awaited at most the
client timeout. 127.0.0.1 only; every child process is stopped in `finally`.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import signal
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from sdxlpool.testing.pool import (
    JOB_LOG_ENV,
    KEEPALIVE_EXPIRY,
    LocalPool,
    Outcome,
    Tally,
    WorkerSpec,
    seeds_sent,
    send,
    write_report,
)
from sdxlpool.testing.stats import percentile, poisson_arrivals

STEPS, SIZE = 40, 512  # 40 Euler steps at 512x512 = 10 normalised steps a request
QUEUE_DEADLINE, ATTEMPT_TIMEOUT, MAX_ATTEMPTS = 10.0, 20.0, 3
HANG_RATE = 0.1  # of the hang-rate worker's jobs (hang mode)
MODES = ("kill", "hang")


@dataclass(frozen=True)
class ChaosConfig:
    mode: str = "kill"
    seconds: float = 120.0
    max_requests: int = 5000
    workers: int = 4
    step_seconds: float = 0.04
    load: float = 0.5  # of the pool's capacity
    progress_deadline: float = 2.0
    interval: tuple[float, float] = (2.0, 5.0)  # seconds between two chaos events
    seed: int = 1

    @property
    def service_seconds(self) -> float:
        return STEPS * (SIZE * SIZE) / (1024 * 1024) * self.step_seconds

    @property
    def capacity(self) -> float:
        return self.workers / self.service_seconds

    @property
    def client_timeout(self) -> float:
        """Above the gateway's own bound for one request, so a timeout here means a hung request."""
        return QUEUE_DEADLINE + MAX_ATTEMPTS * ATTEMPT_TIMEOUT + 10

    def late_after(self, attempts: int) -> float:
        """Longest a 200 that tried `attempts` workers may take in the gateway, after its queue wait."""
        return max(1, attempts) * (self.progress_deadline + 1 + self.service_seconds) + 3


def run_chaos(config: ChaosConfig, workdir: Path, say: Any = print) -> dict[str, Any]:
    """One mode's run: start the pool, drive the load under chaos, return the summary."""
    rng = random.Random(config.seed)
    workers = [WorkerSpec(f"w{i + 1}", "A100", config.step_seconds, env=JOB_LOG_ENV) for i in range(config.workers)]
    if config.mode == "hang":
        workers[-1].args = ("--hang-rate", str(HANG_RATE), "--seed", str(first_job_hangs(config.seed, HANG_RATE)))
    env = {"SDXLPOOL_GATEWAY_QUEUE_DEADLINE": str(QUEUE_DEADLINE),
           "SDXLPOOL_GATEWAY_ATTEMPT_TIMEOUT": str(ATTEMPT_TIMEOUT)}
    gateway_args = ("--progress-deadline", str(config.progress_deadline), "--max-attempts", str(MAX_ATTEMPTS))
    with LocalPool(workdir, workers, gateway_args=gateway_args, gateway_env=env) as pool:
        say(f"[{config.mode}] pool of {config.workers} up; {config.load:.0%} of {config.capacity:.1f} req/s "
            f"for {config.seconds:g}s")
        tally, answered, events, wall = asyncio.run(_drive(config, pool, rng))
        pool.close()  # every worker stopped: its log is complete
        record = seeds_sent(*(pool.worker_log(w) for w in workers))
    return _summary(config, tally, events, wall, _seed_checks(answered, record))


def prompt_of(i: int) -> str:
    return f"chaos {i}"


def asks_random_seed(i: int) -> bool:
    """Three requests in four send `seed: -1`: the gateway fixes the seed, and must keep it."""
    return i % 4 != 0


def first_job_hangs(seed: int, hang_rate: float) -> int:
    """The first fault seed from `seed` on with which a sim-worker run with `--hang-rate hang_rate`
    (and no --fail-rate) hangs its first job. The sim draws each job's fate in job order from
    `random.Random(seed)`, the roll first, and hangs the job when the roll is below the hang rate
    (sdxlpool/sim/_engine.py, `_draw_fault`; the warm-up job draws nothing)."""
    while random.Random(seed).random() >= hang_rate:
        seed += 1
    return seed


async def _drive(config: ChaosConfig, pool: LocalPool, rng: random.Random
                 ) -> tuple[Tally, dict[str, Outcome], list[str], float]:
    arrivals = poisson_arrivals(rng, config.load * config.capacity, config.max_requests, config.seconds)
    tally = Tally()
    events: list[str] = []
    limits = httpx.Limits(max_connections=1000, max_keepalive_connections=100,
                          keepalive_expiry=KEEPALIVE_EXPIRY)
    async with httpx.AsyncClient(limits=limits) as client:
        start = time.monotonic()
        monkey = asyncio.create_task(_monkey(config, pool, rng, start + (arrivals[-1] if arrivals else 0), events))

        answered: dict[str, Outcome] = {}

        async def one(i: int, random_seed: bool) -> None:
            body = {"prompt": prompt_of(i), "steps": STEPS, "width": SIZE, "height": SIZE, "sampler_name": "Euler",
                    "seed": -1 if random_seed else 1_000_000 + i}
            answered[body["prompt"]] = outcome = await send(client, pool.url, body, config.client_timeout)
            tally.add(outcome)

        # Hang mode: until the hang-rate worker has been sent a job, every request asks for `seed: -1`,
        # so its first job (which hangs: `first_job_hangs`) is one a re-drawn seed would get wrong,
        # however the gateway spreads the load.
        hang_worker = pool.workers[-1] if config.mode == "hang" else None
        tasks = []
        for i, offset in enumerate(arrivals):
            await asyncio.sleep(max(0.0, start + offset - time.monotonic()))
            random_seed = asks_random_seed(i) or (hang_worker is not None and not seeds_sent(pool.worker_log(hang_worker)))
            tally.sent += 1
            tasks.append(asyncio.create_task(one(i, random_seed)))
        await monkey
        await asyncio.gather(*tasks)
        wall = time.monotonic() - start
    return tally, answered, events, wall


async def _monkey(config: ChaosConfig, pool: LocalPool, rng: random.Random, until: float, events: list[str]) -> None:
    """Kill-and-restart, or stop-and-continue, one random worker every few seconds until `until`."""
    loop = asyncio.get_running_loop()
    while True:
        await asyncio.sleep(rng.uniform(*config.interval))
        if time.monotonic() >= until:
            return
        worker = rng.choice(pool.workers)
        if config.mode == "kill":
            await loop.run_in_executor(None, pool.signal_worker, worker, signal.SIGKILL)
            events.append(f"kill {worker.name}")
            await asyncio.sleep(rng.uniform(0.5, 2.0))
            pool.start_worker(worker)
        else:
            pool.signal_worker(worker, signal.SIGSTOP)
            events.append(f"stop {worker.name}")
            await asyncio.sleep(rng.uniform(5.0, 10.0))
            pool.signal_worker(worker, signal.SIGCONT)


@dataclass(frozen=True)
class SeedChecks:
    """Each 200's seed judged against the workers' record of what its attempts were sent."""

    kept: set[int]  # id() of the 200s whose every attempt on record carried the seed they returned
    checked: int  # `seed: -1` 200s that failed over with their first attempt on record (2+ records)


def seed_kept(outcome: Outcome, recorded: list[int]) -> bool:
    """Every attempt on record was sent one seed, the one the answer returned (and the client's own)."""
    return (bool(recorded) and set(recorded) == {outcome.seed_returned}
            and outcome.seed_sent in (None, outcome.seed_returned))


def _seed_checks(answered: dict[str, Outcome], record: dict[str, list[int]]) -> SeedChecks:
    ok = {prompt: o for prompt, o in answered.items() if o.kind == "ok"}
    kept = {id(o) for prompt, o in ok.items() if seed_kept(o, record.get(prompt, []))}
    checked = sum(1 for prompt, o in ok.items()
                  if o.seed_sent is None and o.attempts > 1 and len(record.get(prompt, [])) >= 2)
    return SeedChecks(kept, checked)


def _summary(config: ChaosConfig, tally: Tally, events: list[str], wall: float, seeds: SeedChecks
             ) -> dict[str, Any]:
    ok = [o for o in tally.outcomes if o.kind == "ok"]
    failed_over = [o for o in ok if o.attempts > 1]
    wrong_seed = [o for o in ok if id(o) not in seeds.kept]
    in_gateway = sorted(o.seconds - o.queue_seconds for o in ok)
    late = [o for o in ok if o.seconds - o.queue_seconds > config.late_after(o.attempts)] if config.mode == "hang" \
        else []
    latencies = tally.latencies()
    return {
        "mode": config.mode, "seconds": config.seconds, "workers": config.workers,
        "step_seconds": config.step_seconds, "service_seconds": round(config.service_seconds, 3),
        "offered_rps": round(config.load * config.capacity, 2), "progress_deadline": config.progress_deadline,
        "client_timeout": config.client_timeout, "late_after": round(config.late_after(1), 2),
        "chaos_events": len(events), "sent": tally.sent, **tally.kinds(), "errors": tally.codes(),
        "lost": tally.lost, "hung": tally.count("timeout"), "late": len(late),
        "failed_over_ok": len(failed_over), "failed_over_seed_ok": sum(1 for o in failed_over if id(o) in seeds.kept),
        "wrong_seed": len(wrong_seed), "random_seed_sent": sum(1 for o in tally.outcomes if o.seed_sent is None),
        "seed_checked": seeds.checked,
        "p50": percentile(latencies, 50), "p99": percentile(latencies, 99),
        "max": round(latencies[-1], 3) if latencies else None,
        "max_in_gateway": round(in_gateway[-1], 3) if in_gateway else None,
        "late_examples": [{"seconds": round(o.seconds, 2), "attempts": o.attempts} for o in late[:5]],
        "wall_seconds": round(wall, 1),
    }


def violations(summary: dict[str, Any]) -> list[str]:
    """The invariants this run broke (empty: passed)."""
    broken = [f"{key} {summary[key]}" for key in ("lost", "hung", "late", "wrong_seed", "unclear", "transport")
              if summary[key]]
    if summary["sent"] != summary["ok"] + summary["rejected"] + summary["clear_error"] + summary["lost"]:
        broken.append("outcomes do not add up to sent")
    return broken


def line(s: dict[str, Any]) -> str:
    return (f"[{s['mode']}] {s['chaos_events']} chaos events; sent {s['sent']}: ok {s['ok']}, clear errors "
            f"{s['clear_error'] + s['rejected']} {s['errors'] or ''}, lost {s['lost']}, hung {s['hung']}, "
            f"late {s['late']} (> {s['late_after']}s a worker tried); failed over and ok {s['failed_over_ok']} "
            f"(seed kept {s['failed_over_seed_ok']}; seed -1 with the first attempt on record {s['seed_checked']}), "
            f"wrong seed {s['wrong_seed']}; p50 {s['p50']}s p99 "
            f"{s['p99']}s max {s['max']}s (in gateway {s['max_in_gateway']}s); {s['wall_seconds']}s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=120.0, help="seconds of arrivals per mode (default 120)")
    parser.add_argument("--max-requests", type=int, default=5000, help="requests per mode at most")
    parser.add_argument("--modes", default=",".join(MODES), help="kill, hang or both (default)")
    parser.add_argument("--workers", type=int, default=4, help="sim-workers (default 4)")
    parser.add_argument("--step-seconds", type=float, default=0.04, help="sim-worker seconds per step (0.04)")
    parser.add_argument("--load", type=float, default=0.5, help="offered load, fraction of capacity (0.5)")
    parser.add_argument("--progress-deadline", type=float, default=2.0, help="the gateway's (default 2 s)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, help="write the summaries as JSON here")
    args = parser.parse_args()
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if not modes or set(modes) - set(MODES) or args.workers < 2 or args.seconds <= 0 or args.load <= 0:
        parser.error("bad --modes/--workers/--seconds/--load")
    summaries = []
    for mode in modes:
        config = ChaosConfig(mode=mode, seconds=args.seconds, max_requests=args.max_requests, workers=args.workers,
                             step_seconds=args.step_seconds, load=args.load,
                             progress_deadline=args.progress_deadline, seed=args.seed)
        summaries.append(run_chaos(config, Path(tempfile.mkdtemp(prefix=f"sdxl-chaos-{mode}-"))))
        print(line(summaries[-1]), flush=True)
    failed = False
    for s in summaries:
        broken = violations(s)
        failed |= bool(broken)
        print(f"[{s['mode']}] {'FAIL: ' + ', '.join(broken) if broken else 'PASS'}")
    write_report(args.out, runs=summaries)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
