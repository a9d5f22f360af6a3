"""Images per second per GPU under concurrent load: today's worker next to the fast one (issue 16).

Two `sdxlpool worker` processes in turn, on the same weights (SDXL's real architecture with random
weights, fp16 on CUDA; `--smoke`: the tiny one on the CPU), each on its own:

* **today**: the eager path (`--no-compile`), one job at a time (`--batch-max 1`);
* **fast**: the exact fast path (`--compile`, `--compile-mode`), compiled at --size for every batch
  size up to --batch-max, with same-shape batching (`--batch-max N --batch-wait-ms W`: queued
  requests of one shape run as one UNet batch, each with its own seed and prompt).

Each side, once ready (and, for the fast one, once every compiled shape is warm: /readyz says none
is pending), gets `--warm-ups` untimed requests, then `--requests` timed ones from `--concurrency`
clients in a closed loop (a client sends its next request when its answer has arrived), every
request at its own seed and the same size, steps, sampler, CFG and refiner, so they can share a
batch. Reported per side: images per second (timed requests over the wall time from the first
sent to the last answered), the latency spread, the model batch sizes the requests ran in
(`info.sdxlpool.batch_images`) and the paths they took (`compiled`, `eager`); then the ratio
fast / today, which issue 16 wants at 1.5 or more. Same pictures, checked: each fast image next to
today's image of the same seed (PSNR, largest difference); under --min-psnr dB (default 40) the
script exits 1 without a ratio, since batching and compiling must change nothing beyond fp noise.

    python benchmarks/worker_throughput.py --out results.json                   # on a CUDA machine
    python benchmarks/worker_throughput.py --compile-mode default --batch-max 4 --concurrency 4
    python benchmarks/worker_throughput.py --smoke --out results.json           # CI: tiny, CPU

Bounded: a fixed number of requests, every wait has a timeout, all traffic to 127.0.0.1.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
from _random_sdxl import random_sdxl, refiner_title
from PIL import Image

from sdxlpool.testing.images import compare_images
from sdxlpool.testing.pool import write_report
from sdxlpool.testing.ports import free_port
from sdxlpool.testing.processes import spawn, stop, wait_ready
from sdxlpool.testing.stats import spread
from sdxlpool.worker.fastpath import COMPILE_MODES

PROMPT = "futuristic city with neon lights, rainy streets, bright colors, detailed"
CFG_SCALE = 5.0
READY_TIMEOUT_S = 1800.0  # loading SDXL and compiling every batch size with max-autotune on a cold cache
# --smoke: the tiny architecture on the CPU, a few requests, in seconds; checks the script end to end.
# The fast side compiles nothing there (dynamo on the CPU would cost a minute per batch size): it
# checks batching and the report, while tests/benchmarks/test_gpu_sdxl_compiled.py checks compiling.
SMOKE = {"arch": "tiny", "device": "cpu", "size": 128, "steps": 4, "requests": 8, "warm_ups": 2, "concurrency": 4,
         "batch_max": 4, "compile": "off"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", choices=["real", "tiny"], default="real")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/sdxl-random"))
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--switch", type=float, default=0.8, help="refiner_switch_at of every request")
    parser.add_argument("--requests", type=int, default=32, help="timed requests per side")
    parser.add_argument("--warm-ups", type=int, default=4, help="untimed requests per side first")
    parser.add_argument("--concurrency", type=int, default=4, help="clients in a closed loop")
    parser.add_argument("--batch-max", type=int, default=4, help="the fast side's --batch-max")
    parser.add_argument("--batch-wait-ms", type=float, default=50.0, help="the fast side's --batch-wait-ms")
    parser.add_argument("--compile", choices=["on", "off"], default="on", help="the fast side's exact fast path")
    parser.add_argument("--compile-mode", choices=["auto", *COMPILE_MODES], default="auto",
                        help="the fast side's torch.compile mode (auto: the worker's, max-autotune on CUDA)")
    parser.add_argument("--min-psnr", type=float, default=40.0,
                        help="the least PSNR (dB) of a fast image against today's at the same seed")
    parser.add_argument("--smoke", action="store_true", help=f"a quick CPU run that checks the script: {SMOKE}")
    parser.add_argument("--out", type=Path, help="write the results JSON here")
    args = parser.parse_args()
    if args.smoke:
        vars(args).update(SMOKE, workdir=Path(tempfile.mkdtemp(prefix="sdxl-throughput-smoke-")))
    if min(args.requests, args.concurrency, args.batch_max, args.steps) < 1 or args.warm_ups < 0:
        parser.error("--requests, --concurrency, --batch-max and --steps must be at least 1, --warm-ups 0 or more")

    import torch

    dtype = torch.float16 if args.device.startswith("cuda") else torch.float32
    base, refiner = random_sdxl(args.workdir, args.arch, args.device, dtype)
    batches = ",".join(str(n) for n in range(1, args.batch_max + 1))
    sides = {
        "today": ["--no-compile", "--batch-max", "1"],
        "fast": ["--compile" if args.compile == "on" else "--no-compile", "--compile-mode", args.compile_mode,
                 "--compile-shapes", f"{args.size}x{args.size}", "--compile-batch-sizes", batches,
                 "--batch-max", str(args.batch_max), "--batch-wait-ms", f"{args.batch_wait_ms:g}"],
    }
    results: dict[str, Any] = {"arch": args.arch, "device": args.device, "size": args.size, "steps": args.steps,
                               "refiner_switch_at": args.switch, "cfg_scale": CFG_SCALE, "requests": args.requests,
                               "warm_ups": args.warm_ups, "concurrency": args.concurrency,
                               "load": "closed loop: each client sends its next request when its answer has arrived",
                               "smoke": args.smoke, "sides": {}}
    images: dict[str, dict[int, Image.Image]] = {}
    for name, flags in sides.items():
        figures, images[name] = run_side(args, name, base, refiner, flags)
        results["sides"][name] = figures
        write_report(args.out, **results, complete=False)  # a run cut short still leaves the first side

    same = [{"seed": seed, **compare_images(images["today"][seed], images["fast"][seed])}
            for seed in sorted(images["today"])]
    results["same_pictures"] = {"min_psnr_db": args.min_psnr, "per_seed": same}
    different = [s["seed"] for s in same if s["psnr_db"] is not None and s["psnr_db"] < args.min_psnr]
    if different:
        write_report(args.out, **results, complete=False)
        print(f"worker_throughput: the fast worker drew other pictures than today's at seeds {different} "
              f"(under {args.min_psnr} dB PSNR): not the same work, no ratio reported", file=sys.stderr)
        return 1
    ratio = results["sides"]["fast"]["images_per_s"] / results["sides"]["today"]["images_per_s"]
    results["fast_over_today_images_per_s"] = round(ratio, 4)
    results["goal"] = {"at_least_1_5x": ratio >= 1.5}
    print(json.dumps({k: v for k, v in results.items() if k != "same_pictures"}, indent=2))
    write_report(args.out, **results, complete=True)
    return 0


def run_side(args: argparse.Namespace, name: str, base: Path, refiner: Path,
             flags: list[str]) -> tuple[dict[str, Any], dict[int, Image.Image]]:
    """One worker process under the closed-loop load: its figures, and its timed images by seed."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "sdxlpool", "worker", "--model", str(base), "--refiner", str(refiner),
               "--device", args.device, "--port", str(port), "--default-width", str(args.size),
               "--default-height", str(args.size), *flags]
    started = time.perf_counter()
    process = spawn(command, args.workdir / f"worker-{name}.log")
    try:
        wait_ready(url, process, timeout=READY_TIMEOUT_S)
        compiled = wait_compiled(url, READY_TIMEOUT_S)
        ready_seconds = time.perf_counter() - started
        body = {"prompt": PROMPT, "steps": args.steps, "width": args.size, "height": args.size,
                "cfg_scale": CFG_SCALE, "sampler_name": "Euler", "refiner_checkpoint": refiner_title(url),
                "refiner_switch_at": args.switch}
        load(url, body, range(1_000_000, 1_000_000 + args.warm_ups), args.concurrency)  # kernels, allocator
        timed = load(url, body, range(args.requests), args.concurrency)
    finally:
        stop(process)
    wall = timed["wall_seconds"]
    figures = {"flags": flags, "ready_seconds": round(ready_seconds, 1), "compiled": compiled,
               "images_per_s": round(args.requests / wall, 4), "wall_seconds": round(wall, 3),
               "latency_seconds": spread(timed["latencies"]),
               "batch_images": dict(sorted(timed["batches"].items())), "paths": sorted(timed["paths"])}
    print(f"{name}: {figures['images_per_s']} images/s, batches {figures['batch_images']}, "
          f"paths {figures['paths']}", file=sys.stderr)
    return figures, timed["images"]


def wait_compiled(url: str, timeout: float) -> dict[str, Any] | None:
    """Until /readyz lists no compiled shape still pending (None: the fast path is off)."""
    deadline = time.monotonic() + timeout
    while True:
        compiled = httpx.get(url + "/readyz", timeout=10).json().get("compiled")
        if compiled is None or not compiled["pending"]:
            return compiled
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url}: shapes {compiled['pending']} still compiling after {timeout:g} s")
        time.sleep(1.0)


def load(url: str, body: dict[str, Any], seeds: range, concurrency: int) -> dict[str, Any]:
    """`seeds` as requests from `concurrency` clients in a closed loop (one thread each)."""
    pending = list(reversed(seeds))
    lock = threading.Lock()
    out: dict[str, Any] = {"latencies": [], "batches": {}, "paths": set(), "images": {}, "errors": []}

    def client() -> None:
        with httpx.Client(base_url=url, timeout=600) as http:
            while True:
                with lock:
                    if not pending or out["errors"]:
                        return
                    seed = pending.pop()
                begin = time.perf_counter()
                response = http.post("/sdapi/v1/txt2img", json={**body, "seed": seed})
                latency = time.perf_counter() - begin
                if response.status_code != 200:
                    with lock:
                        out["errors"].append(f"seed {seed}: HTTP {response.status_code} {response.text[:300]}")
                    return
                answer = response.json()
                placement = json.loads(answer["info"])["sdxlpool"]
                image = Image.open(io.BytesIO(base64.b64decode(answer["images"][0])))
                image.load()
                with lock:
                    out["latencies"].append(latency)
                    batch = str(placement["batch_images"])
                    out["batches"][batch] = out["batches"].get(batch, 0) + 1
                    out["paths"].add(placement.get("path", "eager"))
                    out["images"][seed] = image

    threads = [threading.Thread(target=client, name=f"client-{n}") for n in range(min(concurrency, len(seeds)))]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    out["wall_seconds"] = time.perf_counter() - started
    if out["errors"]:
        raise SystemExit(f"worker_throughput: {url} failed: {out['errors'][0]}")
    return out


if __name__ == "__main__":
    sys.exit(main())
