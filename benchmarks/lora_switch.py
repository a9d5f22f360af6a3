"""Cost of a LoRA switch on the tiny model: a request with no LoRA, with a cached LoRA, with a cold load.

One real `sdxlpool worker` process (tiny model, `--lora-dir` with the tiny model's kohya LoRAs, the
default cache bound) answers three kinds of request, the same image otherwise (prompt, seed, size,
steps, sampler):

* `none`:   the prompt alone;
* `cached`: the prompt with `<lora:tiny_all:1>`, a LoRA the worker already holds (loaded by the
            warm-up), so only switching its adapters on and off is paid;
* `cold`:   the prompt with `<lora:cold_N:1>`, a copy of the same file under a new name never
            requested before, so the worker reads it and builds its adapters first.

Each round sends `--images` requests of each kind, one at a time, in an order that rotates from
round to round (so drift hits all kinds alike). Reported: client-side seconds per request for each
kind with their spread (median, p10, p90, min, max), and the ratios of the medians cached/none and
cold/none; with the per-round ratios' spread.

    python benchmarks/lora_switch.py [--rounds 5] [--images 4] [--size 128] [--steps 10] [--out F]
    python benchmarks/lora_switch.py --smoke      # seconds: 64x64, 3 steps, 2 rounds of 1

Bounded: rounds x images x 3 requests, every wait has a timeout, traffic to 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from sdxlpool.testing.pool import bench_arguments, write_report
from sdxlpool.testing.ports import free_port
from sdxlpool.testing.processes import wait_ready
from sdxlpool.testing.stats import spread

PROMPT = "a lighthouse on a cliff at dusk, dramatic sky"
SMOKE = {"rounds": 2, "images": 1, "size": 64, "steps": 3}
KINDS = ("none", "cached", "cold")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--images", type=int, default=4, help="requests of each kind per round")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--device", default="auto", help="the worker's --device (auto: CUDA when present)")
    args = bench_arguments(parser, SMOKE)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from sdxlpool.worker.tiny import write_tiny_model

    workdir = Path(tempfile.mkdtemp(prefix="sdxl-lora-switch-"))
    base, _ = write_tiny_model(workdir / "tiny")
    loras = workdir / "Lora"
    shutil.copytree(workdir / "tiny" / "loras", loras)
    colds = args.rounds * args.images + 1
    for n in range(colds):  # one never-requested copy per cold request (and one for the warm-up)
        shutil.copy(loras / "tiny_all.safetensors", loras / f"cold_{n}.safetensors")
    port = free_port()
    worker = subprocess.Popen(
        [sys.executable, "-m", "sdxlpool", "worker", "--model", str(base), "--port", str(port),
         "--device", args.device, "--lora-dir", str(loras), "--default-width", str(args.size),
         "--default-height", str(args.size)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, worker, timeout=180)
        with httpx.Client(base_url=url, timeout=300) as client:
            sender = Sender(client, args)
            sender.send("none")  # warm-up: first-call set-up, and tiny_all loaded for `cached`
            sender.send("cached")
            sender.send("cold")
            rounds = []
            for n in range(args.rounds):
                order = KINDS[n % 3:] + KINDS[:n % 3]
                times: dict[str, list[float]] = {kind: [] for kind in KINDS}
                for _ in range(args.images):
                    for kind in order:
                        times[kind].append(sender.send(kind))
                rounds.append(times)
            held = [line for line in client.get("/metrics").text.splitlines() if line.startswith("sdxl_worker_lora")]
    finally:
        worker.terminate()
        worker.wait(timeout=30)
        shutil.rmtree(workdir, ignore_errors=True)

    results = summarise(rounds, args)
    results["loras_held_at_the_end"] = len([line for line in held if not line.startswith("#")])
    print(json.dumps(results, indent=2))
    write_report(args.out, **results)
    return 0


class Sender:
    def __init__(self, client: httpx.Client, args: argparse.Namespace) -> None:
        self.client = client
        self.body = {"steps": args.steps, "width": args.size, "height": args.size, "seed": 7, "sampler_name": "Euler"}
        self.cold = 0

    def send(self, kind: str) -> float:
        prompt = PROMPT
        if kind == "cached":
            prompt += " <lora:tiny_all:1>"
        elif kind == "cold":
            prompt += f" <lora:cold_{self.cold}:1>"
            self.cold += 1
        started = time.perf_counter()
        response = self.client.post("/sdapi/v1/txt2img", json={**self.body, "prompt": prompt})
        seconds = time.perf_counter() - started
        response.raise_for_status()
        ignored = json.loads(response.json()["info"])["sdxlpool"]["ignored"]
        if ignored:
            raise SystemExit(f"the worker did not apply the LoRA: {ignored}")
        return seconds


def summarise(rounds: list[dict[str, list[float]]], args: argparse.Namespace) -> dict:
    every = {kind: [t for r in rounds for t in r[kind]] for kind in KINDS}
    medians = {kind: statistics.median(times) for kind, times in every.items()}
    per_round = {kind: [statistics.median(r[kind]) / statistics.median(r["none"]) for r in rounds]
                 for kind in ("cached", "cold")}
    return {
        "size": args.size, "steps": args.steps, "images_per_kind_per_round": args.images, "rounds": args.rounds,
        "device": args.device, "smoke": args.smoke, "concurrency": "one request at a time",
        "seconds": {kind: [round(t, 4) for t in times] for kind, times in every.items()},
        "seconds_spread": {kind: spread(times) for kind, times in every.items()},
        "cached_over_none_of_medians": round(medians["cached"] / medians["none"], 4),
        "cold_over_none_of_medians": round(medians["cold"] / medians["none"], 4),
        "cold_load_seconds_median": round(medians["cold"] - medians["cached"], 4),
        "per_round_ratio_spread": {kind: spread(ratios) for kind, ratios in per_round.items()},
    }


if __name__ == "__main__":
    sys.exit(main())
