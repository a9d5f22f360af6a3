"""Seconds per SDXL image on a GPU: the sdxlpool worker (HTTP) next to diffusers fp16 called directly.

Real SDXL 1.0 architecture with random weights (the released weights cannot be fetched here; FLOPs
and memory are the same): base + refiner, 1024x1024, 25 steps, refiner from 0.8, sampler Euler (the
model's own scheduler, which the baseline uses too), CFG 5 on both sides. Both sides share
text_encoder_2 and the VAE between base and refiner, draw the initial noise on the CPU from the
image's seed and run fp16 with the VAE in fp32 for decoding.

Same work, checked: every timed image is compared pixel by pixel between the two sides (same
seed); below --min-psnr dB (default 50, a mean error under one level in 255; --smoke asks for
identical pixels) the script prints the figures and exits 1 without a result, since the timing
would compare different work. For scale: on the tiny model, CFG 6 against 5 gives 47 dB (largest
difference 8 levels). PSNR and the largest difference per seed are in the results.

Reported: the per-image seconds of each side with their spread (median, p10, p90, min, max), the
ratio of the medians, and the spread of the per-seed ratios (worker over diffusers, same seed).

    python benchmarks/gpu_sdxl.py --out results.json            # on a CUDA machine
    python benchmarks/gpu_sdxl.py --smoke                       # seconds, CPU, tiny model: CI

Bounded: a fixed number of images, every wait has a timeout, all traffic to 127.0.0.1.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from PIL import Image

from sdxlpool.api import metric_names as mn
from sdxlpool.testing.pool import write_report
from sdxlpool.testing.ports import free_port
from sdxlpool.testing.processes import wait_ready
from sdxlpool.testing.stats import spread

PROMPT = "futuristic city with neon lights, rainy streets, bright colors, detailed"
CFG_SCALE = 5.0
WARM_UPS = 2
# --smoke: the tiny architecture on the CPU, two images, in seconds; checks the script end to end.
# In fp32 on the CPU both sides draw identical pixels, so the smoke run asks for exactly that.
SMOKE = {"arch": "tiny", "device": "cpu", "images": 2, "steps": 4, "size": 128, "min_psnr": math.inf}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", choices=["real", "tiny"], default="real")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/sdxl-random"))
    parser.add_argument("--images", type=int, default=10, help=f"timed images per side (after {WARM_UPS} warm-ups)")
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--switch", type=float, default=0.8)
    parser.add_argument("--min-psnr", type=float, default=50.0,
                        help="the least PSNR (dB) between the two sides' images at one seed for 'same work'")
    parser.add_argument("--port", type=int, help="the worker's port (default: a free one)")
    parser.add_argument("--smoke", action="store_true", help=f"a quick CPU run that checks the script: {SMOKE}")
    parser.add_argument("--out", type=Path, help="write the results JSON here")
    args = parser.parse_args()
    if args.smoke:
        vars(args).update(SMOKE, workdir=Path(tempfile.mkdtemp(prefix="sdxl-gpu-smoke-")))
    args.port = args.port or free_port()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    import torch

    dtype = torch.float16 if args.device.startswith("cuda") else torch.float32
    results: dict = {"arch": args.arch, "device": args.device, "steps": args.steps, "size": args.size,
                     "refiner_switch_at": args.switch, "cfg_scale": CFG_SCALE, "images": args.images,
                     "smoke": args.smoke, "torch": torch.__version__}
    if args.device.startswith("cuda"):
        results["gpu"] = torch.cuda.get_device_name()

    base, refiner = weights(args, dtype)
    # Both sides are loaded at once (two processes, one GPU) and take turns, image by image (which
    # side goes first alternates), so clock ramps and other drift hit both alike; neither ever
    # runs while the other does.
    worker = WorkerProcess(args, base, refiner)
    try:
        direct = DirectDiffusers(args, base, refiner, dtype)
        worker.wait_ready()
        for warm_up in range(WARM_UPS):  # kernel selection and allocator growth on both sides
            direct.image(warm_up)
            worker.image(warm_up)
        direct_times, worker_times, same = [], [], []
        for n, seed in enumerate(range(10, 10 + args.images)):
            if n % 2:
                worker_seconds, worker_image = worker.image(seed)
                direct_seconds, direct_image = direct.image(seed)
            else:
                direct_seconds, direct_image = direct.image(seed)
                worker_seconds, worker_image = worker.image(seed)
            direct_times.append(direct_seconds)
            worker_times.append(worker_seconds)
            same.append({"seed": seed, **compare(direct_image, worker_image)})
        results["diffusers"] = {**summary(direct_times), **direct.memory()}
        results["worker"] = {**summary(worker_times), **worker.details()}
    finally:
        worker.stop()

    results["same_work"] = {"min_psnr_db": args.min_psnr if math.isfinite(args.min_psnr) else "identical pixels",
                            "per_seed": same}
    different = [s for s in same if s["psnr_db"] is not None and s["psnr_db"] < args.min_psnr]
    if different:
        print(json.dumps(results["same_work"], indent=2), file=sys.stderr)
        print(f"gpu_sdxl: the two sides drew different images at seeds {[s['seed'] for s in different]} "
              f"(required: {results['same_work']['min_psnr_db']} dB PSNR): they did not do the same work; "
              "no timing reported", file=sys.stderr)
        return 1
    results["ratio_worker_over_diffusers_median"] = round(
        statistics.median(worker_times) / statistics.median(direct_times), 4)
    results["ratio_worker_over_diffusers_per_seed"] = spread(
        w / d for w, d in zip(worker_times, direct_times, strict=True))
    print(json.dumps(results, indent=2))
    write_report(args.out, **results)
    return 0


def compare(direct: Image.Image, worker: Image.Image) -> dict[str, Any]:
    """PSNR in dB (None: identical pixels) and the largest difference in 0-255 levels between two images."""
    a = np.asarray(direct.convert("RGB"), dtype=np.float64)
    b = np.asarray(worker.convert("RGB"), dtype=np.float64)
    if a.shape != b.shape:
        return {"psnr_db": 0.0, "max_abs_difference": None, "sizes": [direct.size, worker.size]}
    mse = float(np.mean((a - b) ** 2))
    psnr = None if mse == 0 else round(10 * math.log10(255**2 / mse), 2)
    return {"psnr_db": psnr, "max_abs_difference": float(np.abs(a - b).max())}


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
        # An empty negative prompt is zeros for the refiner too, as in A1111 (and the worker); the
        # SDXL refiner's own config says otherwise (diffusers would encode "").
        self.refiner.register_to_config(force_zeros_for_empty_prompt=True)
        for pipe in (self.base, self.refiner):
            pipe.set_progress_bar_config(disable=True)

    def image(self, seed: int) -> tuple[float, Image.Image]:
        """Seconds for one image (noise drawn on the CPU from `seed`, as the worker draws it), and the image."""
        args, torch = self.args, self.torch
        started = time.perf_counter()
        generator = torch.Generator("cpu").manual_seed(seed)
        shape = (1, self.base.unet.config.in_channels, args.size // self.base.vae_scale_factor,
                 args.size // self.base.vae_scale_factor)
        noise = torch.randn(shape, generator=generator).to(device=args.device, dtype=self.base.unet.dtype)
        latents = self.base(PROMPT, num_inference_steps=args.steps, denoising_end=args.switch, output_type="latent",
                            width=args.size, height=args.size, guidance_scale=CFG_SCALE, latents=noise,
                            generator=generator).images
        image = self.refiner(PROMPT, image=latents, num_inference_steps=args.steps, denoising_start=args.switch,
                             guidance_scale=CFG_SCALE, generator=generator).images[0]
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        return time.perf_counter() - started, image

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
                     "height": self.args.size, "cfg_scale": CFG_SCALE, "refiner_checkpoint": refiner_name(self.url),
                     "refiner_switch_at": self.args.switch}

    def image(self, seed: int) -> tuple[float, Image.Image]:
        """Client wall-clock seconds for one image over HTTP, and the image (decoded after the clock stops)."""
        started = time.perf_counter()
        response = self.client.post("/sdapi/v1/txt2img", json={**self.body, "seed": seed})
        response.raise_for_status()
        elapsed = time.perf_counter() - started
        answer = response.json()
        self.inference.append(json.loads(answer["info"])["sdxlpool"]["inference_seconds"])
        image = Image.open(io.BytesIO(base64.b64decode(answer["images"][0])))
        image.load()
        return elapsed, image

    def details(self) -> dict:
        metrics = self.client.get("/metrics").text
        return {
            "inference_seconds": spread(self.inference[WARM_UPS:]),
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


def summary(times: list[float]) -> dict[str, Any]:
    """Seconds per image: every run, their spread, and the mean (kept for comparison with earlier runs)."""
    return {"seconds": spread(times), "mean_seconds": round(statistics.mean(times), 4),
            "runs": [round(t, 4) for t in times]}


if __name__ == "__main__":
    sys.exit(main())
