"""Time from `sdxlpool up examples/local-pool.yaml` to the first image, as a newcomer meets it.

Two runs: **cold** (an empty cache: `up` first writes the tiny model) and **warm** (the cache of the
cold run). Each measures, from the moment the command starts: the first worker ready, the whole
pool ready (the "sdxlpool up: ready" line), and the first image through the gateway with the
pool's defaults (DPM++ SDE Karras, 25 steps, the size `up` chose, base + refiner), which is what
the web page's Generate button sends. Then `up` is stopped with SIGINT and its stop time measured.

    python benchmarks/up_first_image.py [--runs warm,cold] [--port 8090] [--worker-port 7891]
    python benchmarks/up_first_image.py --smoke --out FILE   # CI: one cold run, in seconds

`--smoke` (tests/benchmarks/test_smoke.py) runs `up --max-workers 1` on free ports, once from an
empty cache, and asks for a 2-step image: it proves the script runs; its figures mean nothing.

Bounded: one image per run, every wait has a timeout, traffic to 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

from sdxlpool.testing.pool import write_report
from sdxlpool.testing.ports import free_port

ROOT = Path(__file__).resolve().parents[1]
PROMPT = "futuristic city with neon lights, rainy streets, bright colors, detailed"


def run_once(cache: Path, port: int, worker_port: int, timeout: float, smoke: bool = False) -> dict[str, float]:
    env = {**os.environ, "SDXLPOOL_CACHE": str(cache), "HF_HUB_CACHE": str(cache / "no-hub"), "PYTHONUNBUFFERED": "1"}
    smaller = ["--max-workers", "1"] if smoke else []
    request = {"prompt": PROMPT, "steps": 2} if smoke else {"prompt": PROMPT}
    started = time.monotonic()
    process = subprocess.Popen([sys.executable, "-m", "sdxlpool", "up", str(ROOT / "examples" / "local-pool.yaml"),
                                "--port", str(port), "--worker-port", str(worker_port), *smaller],
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    marks: dict[str, float] = {}

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            now = time.monotonic() - started
            if "  ready  " in line and "gateway" not in line:
                marks.setdefault("first_worker_ready_s", now)
            if "sdxlpool up: ready" in line:
                marks["pool_ready_s"] = now

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        deadline = started + timeout
        while "pool_ready_s" not in marks:
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError(f"`up` not ready within {timeout}s (exit {process.poll()})")
            time.sleep(0.1)
        response = httpx.post(f"http://127.0.0.1:{port}/sdapi/v1/txt2img", json=request, timeout=timeout)
        response.raise_for_status()
        marks["first_image_s"] = time.monotonic() - started
        marks["image_inference_s"] = float(response.headers["X-SDXL-Inference-Seconds"])
        stop = time.monotonic()
        process.send_signal(signal.SIGINT)
        process.wait(timeout=60)
        marks["stop_s"] = time.monotonic() - stop
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return {k: round(v, 2) for k, v in marks.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", default="cold,warm", help="comma list of cold / warm (cold first fills the cache)")
    parser.add_argument("--port", type=int, default=8090)
    parser.add_argument("--worker-port", type=int, default=7891)
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / f"up-first-image-{time.strftime('%Y-%m-%d')}.json")
    parser.add_argument("--smoke", action="store_true",
                        help="CI check that the script runs: one cold run, one worker, a 2-step image, free ports")
    args = parser.parse_args()
    if args.smoke:
        args.runs, args.port, args.worker_port, args.timeout = "cold", free_port(), free_port(), 240
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="sdxlpool-up-bench-") as tmp:
        cache = Path(tmp)
        for run in args.runs.split(","):
            if run == "cold":
                for child in cache.iterdir():
                    subprocess.run(["rm", "-rf", str(child)], check=True)
            results[run] = run_once(cache, args.port, args.worker_port, args.timeout, args.smoke)
            print(run, json.dumps(results[run]), flush=True)
    write_report(args.out, runs=results)
    print(f"written {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
