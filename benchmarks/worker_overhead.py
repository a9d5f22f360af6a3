"""API overhead of the worker: tiny-model images/s through HTTP vs calling diffusers directly.

Both sides make the same images (tiny SDXL base, Euler, CPU noise from the same seeds) on this
machine's CPU, and both make them one at a time: the direct side calls the pipeline image after
image, the HTTP side sends the next request when the previous answer has arrived. So the HTTP side
pays for everything a client waits for (the round trip, queueing, PNG encoding with the infotext,
base64, JSON) and nothing overlaps that the direct side could not overlap too. The worker runs as a
real `sdxlpool worker` process. Each round times both sides on the same seeds, and which side goes
first alternates from round to round, so machine drift hits both alike.

Reported: images/s per round and side, their spread (median, p10, p90, min, max), the ratio of the
medians, and the spread of the per-round ratios (HTTP over direct in the same round).

    python benchmarks/worker_overhead.py [--rounds 9] [--images 8] [--size 256] [--steps 20] [--out F]
    python benchmarks/worker_overhead.py --smoke      # seconds: 64x64, 3 steps, 2 rounds of 2

Bounded: rounds x images requests per side, every wait has a timeout, traffic to 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import json
import os
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

PROMPT = "futuristic city with neon lights, rainy streets, bright colors, detailed"
SMOKE = {"rounds": 2, "images": 2, "size": 64, "steps": 3}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--images", type=int, default=8, help="images per side per round")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=20)
    args = bench_arguments(parser, SMOKE)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from sdxlpool.worker.tiny import write_tiny_model

    workdir = Path(tempfile.mkdtemp(prefix="sdxl-overhead-"))
    base, _ = write_tiny_model(workdir / "tiny")
    direct = Direct(base, args)
    port = free_port()
    worker = subprocess.Popen(
        [sys.executable, "-m", "sdxlpool", "worker", "--model", str(base), "--port", str(port), "--device", "cpu",
         "--default-width", str(args.size), "--default-height", str(args.size)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, worker, timeout=180)
        with httpx.Client(base_url=url, timeout=300) as client:
            http = OverHttp(client, args)
            direct.images(2, seed=0)  # warm-up both sides
            http.images(2, seed=0)
            rounds = [run_round(direct, http, args.images, seed=1000 * (n + 1), http_first=n % 2 == 1)
                      for n in range(args.rounds)]
    finally:
        worker.terminate()
        worker.wait(timeout=30)

    results = {"torch_threads": direct.torch.get_num_threads(), **summarise(rounds, args)}
    print(json.dumps(results, indent=2))
    write_report(args.out, **results)
    return 0


def run_round(direct: Direct, http: OverHttp, count: int, *, seed: int, http_first: bool) -> dict[str, float]:
    sides = [("http", http), ("direct", direct)] if http_first else [("direct", direct), ("http", http)]
    return {name: side.images(count, seed) for name, side in sides}


def summarise(rounds: list[dict[str, float]], args: argparse.Namespace) -> dict:
    """The figures: per-round rates, their spread per side, the ratio of medians, per-round ratios."""
    direct = [r["direct"] for r in rounds]
    http = [r["http"] for r in rounds]
    ratios = [r["http"] / r["direct"] for r in rounds]
    median_ratio = statistics.median(http) / statistics.median(direct)
    return {
        "size": args.size, "steps": args.steps, "images_per_round": args.images, "rounds": args.rounds,
        "smoke": args.smoke, "concurrency": "one request at a time on both sides",
        "direct_images_per_s": [round(r, 4) for r in direct],
        "http_images_per_s": [round(r, 4) for r in http],
        "direct_spread": spread(direct),
        "http_spread": spread(http),
        "http_over_direct_of_medians": round(median_ratio, 4),
        "overhead_percent_of_medians": round(100 * (1 - median_ratio), 2),
        "http_over_direct_per_round": [round(r, 4) for r in ratios],
        "http_over_direct_per_round_spread": spread(ratios),
    }


class Direct:
    """diffusers' StableDiffusionXLPipeline called in-process, as the worker calls it, one image at a time."""

    def __init__(self, base: Path, args: argparse.Namespace) -> None:
        import torch
        from diffusers import StableDiffusionXLPipeline

        self.torch, self.args = torch, args
        self.pipe = StableDiffusionXLPipeline.from_pretrained(base, local_files_only=True)
        self.pipe.set_progress_bar_config(disable=True)

    def images(self, count: int, seed: int) -> float:
        """Images per second over `count` images, seeds seed..seed+count-1."""
        started = time.perf_counter()
        for i in range(count):
            generator = self.torch.Generator("cpu").manual_seed(seed + i)
            self.pipe(PROMPT, num_inference_steps=self.args.steps, width=self.args.size, height=self.args.size,
                      generator=generator).images[0]
        return count / (time.perf_counter() - started)


class OverHttp:
    """The same images from the worker's txt2img, one request at a time."""

    def __init__(self, client: httpx.Client, args: argparse.Namespace) -> None:
        self.client = client
        self.body = {"prompt": PROMPT, "steps": args.steps, "sampler_name": "Euler", "width": args.size,
                     "height": args.size}

    def images(self, count: int, seed: int) -> float:
        started = time.perf_counter()
        for i in range(count):
            response = self.client.post("/sdapi/v1/txt2img", json={**self.body, "seed": seed + i})
            response.raise_for_status()
        return count / (time.perf_counter() - started)


if __name__ == "__main__":
    sys.exit(main())
