"""API overhead of the worker: tiny-model images/s through HTTP vs calling diffusers directly.

Both sides make the same images (tiny SDXL base, Euler, CPU noise from the same seeds) on this
machine's CPU. The worker runs as a real `sdxlpool worker` process; a client keeps two requests in
flight so its GPU thread never waits for the network, which is how a loaded worker runs. The HTTP
side pays for everything a client gets: queueing, PNG encoding with the infotext, base64, JSON.
Rounds alternate between the two sides so machine noise hits both.

    python benchmarks/worker_overhead.py [--rounds 3] [--images 12] [--size 256] [--steps 20]

Bounded: rounds x images requests per side, every wait has a timeout, traffic to 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from sdxlpool.testing.processes import wait_ready

PROMPT = "futuristic city with neon lights, rainy streets, bright colors, detailed"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--images", type=int, default=12, help="images per side per round")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--port", type=int, default=7897)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from sdxlpool.worker.tiny import write_tiny_model

    workdir = Path(tempfile.mkdtemp(prefix="sdxl-overhead-"))
    base, _ = write_tiny_model(workdir / "tiny")
    direct = Direct(base, args)
    worker = subprocess.Popen(
        [sys.executable, "-m", "sdxlpool", "worker", "--model", str(base), "--port", str(args.port), "--device", "cpu",
         "--default-width", str(args.size), "--default-height", str(args.size)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{args.port}"
    try:
        wait_ready(url, worker, timeout=180)
        direct.images(2, seed=0)  # warm-up both sides
        over_http(url, args, 2, seed=0)
        direct_rates, http_rates = [], []
        for round_no in range(args.rounds):
            seed = 1000 * (round_no + 1)
            direct_rates.append(direct.images(args.images, seed))
            http_rates.append(over_http(url, args, args.images, seed))
    finally:
        worker.terminate()
        worker.wait(timeout=30)

    direct_median, http_median = statistics.median(direct_rates), statistics.median(http_rates)
    result = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.node()} {platform.machine()}, {os.cpu_count()} CPUs, torch threads "
                   f"{direct.torch.get_num_threads()}",
        "command": " ".join(["python", *sys.argv]),
        "size": args.size, "steps": args.steps, "images_per_round": args.images, "rounds": args.rounds,
        "direct_images_per_s": [round(r, 3) for r in direct_rates],
        "http_images_per_s": [round(r, 3) for r in http_rates],
        "direct_median": round(direct_median, 3),
        "http_median": round(http_median, 3),
        "http_over_direct": round(http_median / direct_median, 4),
        "overhead_percent": round(100 * (1 - http_median / direct_median), 2),
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text)
    return 0


class Direct:
    """diffusers' StableDiffusionXLPipeline called in-process, as the worker calls it."""

    def __init__(self, base: Path, args: argparse.Namespace) -> None:
        import torch
        from diffusers import StableDiffusionXLPipeline

        self.torch, self.args = torch, args
        self.pipe = StableDiffusionXLPipeline.from_pretrained(base, local_files_only=True)
        self.pipe.set_progress_bar_config(disable=True)

    def images(self, count: int, seed: int) -> float:
        started = time.perf_counter()
        for i in range(count):
            generator = self.torch.Generator("cpu").manual_seed(seed + i)
            self.pipe(PROMPT, num_inference_steps=self.args.steps, width=self.args.size, height=self.args.size,
                      generator=generator).images[0]
        return count / (time.perf_counter() - started)


def over_http(url: str, args: argparse.Namespace, count: int, seed: int) -> float:
    body = {"prompt": PROMPT, "steps": args.steps, "sampler_name": "Euler", "width": args.size, "height": args.size}

    def one(i: int) -> None:
        response = httpx.post(url + "/sdapi/v1/txt2img", json={**body, "seed": seed + i}, timeout=300)
        response.raise_for_status()

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=2) as pool:  # two in flight: one running, one queued
        list(pool.map(one, range(count)))
    return count / (time.perf_counter() - started)


if __name__ == "__main__":
    sys.exit(main())
