"""Seconds per SDXL image on a GPU: the sdxlpool worker (HTTP) next to diffusers fp16 called directly.

Real SDXL 1.0 architecture with random weights (the released weights cannot be fetched here; FLOPs
and memory are the same): base + refiner, 1024x1024, 25 steps, refiner from 0.8, sampler Euler (the
model's own scheduler, which the baseline uses too). Both sides share text_encoder_2 and the VAE
between base and refiner, draw noise on the CPU and run fp16 with the VAE upcast for decoding.

    python benchmarks/gpu_sdxl.py --out results.json            # on a CUDA machine
    python benchmarks/gpu_sdxl.py --arch tiny --device cpu      # a quick dry run anywhere

Bounded: a fixed number of images, every wait has a timeout, all traffic to 127.0.0.1.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

from sdxlpool.api import metric_names as mn
from sdxlpool.testing.processes import wait_ready

PROMPT = "futuristic city with neon lights, rainy streets, bright colors, detailed"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", choices=["real", "tiny"], default="real")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/sdxl-random"))
    parser.add_argument("--images", type=int, default=6, help="timed images per side (after two warm-ups)")
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--switch", type=float, default=0.8)
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    import torch

    dtype = torch.float16 if args.device.startswith("cuda") else torch.float32
    results: dict = {"arch": args.arch, "device": args.device, "steps": args.steps, "size": args.size,
                     "refiner_switch_at": args.switch, "images": args.images, "torch": torch.__version__}
    if args.device.startswith("cuda"):
        results["gpu"] = torch.cuda.get_device_name()

    base, refiner = weights(args, dtype)
    # Both sides are loaded at once (two processes, one GPU) and take turns, image by image, so
    # clock ramps and other drift hit both alike; neither ever runs while the other does.
    worker = WorkerProcess(args, base, refiner)
    try:
        direct = DirectDiffusers(args, base, refiner, dtype)
        worker.wait_ready()
        for warm_up in range(2):  # kernel selection and allocator growth on both sides
            direct.image(warm_up)
            worker.image(warm_up)
        direct_times, worker_times = [], []
        for seed in range(10, 10 + args.images):
            direct_times.append(direct.image(seed))
            worker_times.append(worker.image(seed))
        results["diffusers"] = {**summary(direct_times), **direct.memory()}
        results["worker"] = {**summary(worker_times), **worker.details()}
    finally:
        worker.stop()
    for stat in ("mean_seconds", "median_seconds", "min_seconds"):
        results[f"ratio_worker_over_diffusers_{stat.split('_')[0]}"] = round(
            results["worker"][stat] / results["diffusers"][stat], 4
        )
    text = json.dumps(results, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text)
    return 0


def weights(args: argparse.Namespace, dtype) -> tuple[Path, Path]:
    from sdxlpool.worker.tiny import write_random_model

    target = args.workdir / args.arch
    if (target / "refiner" / "model_index.json").exists():
        return target / "base", target / "refiner"
    started = time.perf_counter()
    paths = write_random_model(target, size=args.arch, device=args.device, dtype=dtype)
    print(f"random {args.arch} weights written in {time.perf_counter() - started:.1f}s", file=sys.stderr)
    return paths


class DirectDiffusers:
    """The baseline: diffusers' documented base + refiner ensemble, called directly."""

    def __init__(self, args: argparse.Namespace, base_path: Path, refiner_path: Path, dtype) -> None:
        import torch
        from diffusers import StableDiffusionXLImg2ImgPipeline, StableDiffusionXLPipeline

        self.args, self.torch = args, torch
        self.base = StableDiffusionXLPipeline.from_pretrained(base_path, torch_dtype=dtype, local_files_only=True)
        self.base.to(args.device)
        self.refiner = StableDiffusionXLImg2ImgPipeline.from_pretrained(
            refiner_path, text_encoder_2=self.base.text_encoder_2, vae=self.base.vae, torch_dtype=dtype,
            local_files_only=True,
        ).to(args.device)
        for pipe in (self.base, self.refiner):
            pipe.set_progress_bar_config(disable=True)

    def image(self, seed: int) -> float:
        args, torch = self.args, self.torch
        started = time.perf_counter()
        generator = torch.Generator("cpu").manual_seed(seed)
        latents = self.base(PROMPT, num_inference_steps=args.steps, denoising_end=args.switch, output_type="latent",
                            width=args.size, height=args.size, generator=generator).images
        self.refiner(PROMPT, image=latents, num_inference_steps=args.steps, denoising_start=args.switch,
                     generator=generator).images[0]
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        return time.perf_counter() - started

    def memory(self) -> dict:
        if not self.args.device.startswith("cuda"):
            return {}
        return {"peak_gpu_memory_gib": round(self.torch.cuda.max_memory_allocated() / 2**30, 2)}


class WorkerProcess:
    """The same images through `sdxlpool worker` over HTTP, one request at a time."""

    def __init__(self, args: argparse.Namespace, base: Path, refiner: Path) -> None:
        command = [sys.executable, "-m", "sdxlpool", "worker", "--model", str(base), "--refiner", str(refiner),
                   "--device", args.device, "--port", str(args.port), "--default-width", str(args.size),
                   "--default-height", str(args.size)]
        self.args = args
        self.url = f"http://127.0.0.1:{args.port}"
        self.log = open(args.workdir / "worker.log", "w")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(command, stdout=self.log, stderr=subprocess.STDOUT)
        self.started = time.perf_counter()
        self.client = httpx.Client(base_url=self.url, timeout=600)
        self.inference: list[float] = []

    def wait_ready(self) -> None:
        wait_ready(self.url, self.process, timeout=600)
        self.ready_seconds = time.perf_counter() - self.started
        self.body = {"prompt": PROMPT, "steps": self.args.steps, "sampler_name": "Euler", "width": self.args.size,
                     "height": self.args.size, "refiner_checkpoint": refiner_name(self.url),
                     "refiner_switch_at": self.args.switch}

    def image(self, seed: int) -> float:
        started = time.perf_counter()
        response = self.client.post("/sdapi/v1/txt2img", json={**self.body, "seed": seed})
        response.raise_for_status()
        elapsed = time.perf_counter() - started
        self.inference.append(json.loads(response.json()["info"])["sdxlpool"]["inference_seconds"])
        return elapsed

    def details(self) -> dict:
        metrics = self.client.get("/metrics").text
        return {
            "inference_seconds_mean": round(statistics.mean(self.inference[2:]), 4),
            "load_and_warmup_seconds": round(self.ready_seconds, 1),
            "step_seconds_metric": next(float(line.split()[-1]) for line in metrics.splitlines()
                                        if line.startswith(f"{mn.WORKER_STEP_SECONDS} ")),
        }

    def stop(self) -> None:
        self.client.close()
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()


def refiner_name(url: str) -> str:
    models = httpx.get(url + "/sdapi/v1/sd-models", timeout=10).json()
    return next(m["title"] for m in models if m.get("sdxlpool_kind") == "refiner")


def summary(times: list[float]) -> dict:
    return {"mean_seconds": round(statistics.mean(times), 4), "median_seconds": round(statistics.median(times), 4),
            "min_seconds": round(min(times), 4),
            "max_seconds": round(max(times), 4), "runs": [round(t, 4) for t in times]}


if __name__ == "__main__":
    sys.exit(main())
