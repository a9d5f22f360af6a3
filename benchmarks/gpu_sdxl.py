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

Measure first (issue 16), in the same run, on the worker's own code path in-process
(`DiffusersEngine.generate`, as a job runs it; not over HTTP):

* **per-stage profile**: text encoders, every base UNet evaluation, every refiner UNet evaluation,
  VAE decode (CUDA events recorded by forward hooks on the modules the pipelines hold, read after
  one synchronize per image; `time.perf_counter` on the CPU, so --smoke runs the same code), and
  the PNG + base64 of each image (the worker's `encode_png`, CPU). Euler runs one UNet evaluation
  per step (CFG batched), DPM++ SDE two; `*_steps` counts the steps, `*_evaluations` the calls.
* **sweep**: sizes (1024x1024 and SDXL's aspect buckets 1152x896, 896x1152, 1216x832, 832x1216,
  1344x768, 768x1344), batch sizes (1, 2, 4) and samplers (Euler; DPM++ SDE Karras, the pool's
  default), each chosen by a flag (`--sweep` takes them all); every cell gets one warm-up job, then
  `--profile-images` timed jobs.
* **the exact fast path**, as the worker runs it on CUDA (channels_last, fused QKV, torch.compile at
  a whitelist of shapes, eager at any other; `--compile`, `--compile-mode`, `--compile-backend`
  choose it for both sides of the worker): in-process, every shape the run times (each sweep size at
  each sweep batch size, and --size at batch 1) is compiled first, one job each, with its seconds
  and whether the compile cache already held it (`compile` in the results: cold or warm start);
  every gate cell and profile cell records the path its jobs took (`compiled`, `eager`, `mixed`).
  The HTTP worker compiles only --size at batch 1, before it turns ready, so nothing compiles
  between its timed images. With max-autotune each shape costs minutes on a cold cache: on a GPU
  with little time, time one size first (`--sizes 1024x1024 --batches 1`) or `--compile-mode default`.
  The results JSON is written after each phase and each sweep cell (`complete`: false until the
  end), so a run cut short still returns what it measured.
* **exactness gate** against today's eager output: for each of `--gate-seeds` fixed seeds and each
  gate sampler, at --size and batch 1, the worker's image next to the eager diffusers pipeline
  (the baseline below, same scheduler, same CPU-drawn noise): the largest |difference| of the final
  latents (before the VAE) and the PSNR of the decoded images. Thresholds: on a GPU (fp16 UNets,
  fp32 VAE) max |d latent| <= 0.05 (`--max-latent-diff`; SDXL's final latents have a spread of
  about 1 and fp16 keeps about 3 significant digits, so reordered fp16 arithmetic should stay well
  inside it, while a changed computation leaves it; a first GPU run should confirm the margin) and
  PSNR >= 40 dB (`--gate-min-psnr`; an RMS error of at most 2.6 levels in 255);
  on the CPU in fp32 (--smoke) identical latents and pixels. A gate that fails prints its figures
  and the script exits 1 without timings. Not run yet on a GPU: the GPU figures of the profile,
  sweep and gate are not measured.

    python benchmarks/gpu_sdxl.py --out results.json            # on a CUDA machine
    python benchmarks/gpu_sdxl.py --sweep --out results.json    # ... with every size, batch and sampler
    python benchmarks/gpu_sdxl.py --smoke                       # seconds, CPU, tiny model: CI

Opt-in fast modes (`--fast-mode deepcache`, with `--deepcache-interval`/`--deepcache-branch`): after
the gate and the profile, in-process at --size and batch 1, `--fast-images` seeds each run exact and
in the mode, taking turns (which goes first alternates): per image the seconds of both, the UNet's
seconds of both (from conv_in's pre-hook to conv_out's hook, spans both modes cross: DeepCache
never calls the UNet's forward), and the mode's quality cost against the exact image of the same
seed (PSNR, largest pixel and |d latent| difference). Reported: the speed-ups (job, UNet) as the
ratio of the medians and as the spread of the per-seed ratios (each pair back to back, so robust
to a shared machine's slow minutes), and the PSNR spread. On a GPU the exact side runs the compiled fast path and DeepCache's UNet runs
eager, as in the worker. Only the random-weight model is at hand, so the quality figures are that
model's, not SDXL's.

    python benchmarks/gpu_sdxl.py --arch tiny --device cpu --no-http --fast-mode deepcache

The same section counts the UNet's FLOPs per evaluation, full and cached (torch's FlopCounterMode
on the meta device: no weights, no machine noise), and per image at --steps (Euler, one evaluation
per step, CFG batched, base to --switch then the refiner). `--flops-only` prints just that, for
any --arch without building a model: `--arch real --size 1024` gives SDXL's own architecture.

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
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from _random_sdxl import random_sdxl, refiner_title
from PIL import Image

from sdxlpool.api import metric_names as mn
from sdxlpool.testing.images import compare_images as compare
from sdxlpool.testing.pool import write_report
from sdxlpool.testing.ports import free_port
from sdxlpool.testing.processes import wait_ready
from sdxlpool.testing.stats import spread
from sdxlpool.worker.fastpath import COMPILE_MODES

PROMPT = "futuristic city with neon lights, rainy streets, bright colors, detailed"
CFG_SCALE = 5.0
WARM_UPS = 2
# --smoke: the tiny architecture on the CPU, two images, in seconds; checks the script end to end.
# In fp32 on the CPU both sides draw identical pixels, so the smoke run asks for exactly that.
SMOKE = {"arch": "tiny", "device": "cpu", "images": 2, "steps": 4, "size": 128, "min_psnr": math.inf,
         "sizes": "128x96", "batches": "1,2", "samplers": "euler", "profile_images": 1,
         "gate_seeds": 1, "warm_ups": 1, "gate_samplers": "euler,dpmpp-sde-karras", "max_latent_diff": 0.0, "gate_min_psnr": math.inf,
         "fast_mode": "deepcache", "fast_images": 1}
ASPECT_SIZES = "1024x1024,1152x896,896x1152,1216x832,832x1216,1344x768,768x1344"
SAMPLERS = {"euler": ("Euler", "Automatic"), "dpmpp-sde-karras": ("DPM++ SDE", "Karras")}
COMPILE = {"auto": None, "on": True, "off": False}  # --compile -> WorkerSettings.compile (None: the device's default)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", choices=["real", "tiny"], default="real")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/sdxl-random"))
    parser.add_argument("--images", type=int, default=10, help="timed images per side (after --warm-ups)")
    parser.add_argument("--warm-ups", type=int, default=WARM_UPS, help="untimed images per side first")
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--switch", type=float, default=0.8)
    parser.add_argument("--min-psnr", type=float, default=50.0,
                        help="the least PSNR (dB) between the two sides' images at one seed for 'same work'")
    parser.add_argument("--port", type=int, help="the worker's port (default: a free one)")
    parser.add_argument("--sizes", default=None, help="profile sweep sizes, WxH,... (default: --size square)")
    parser.add_argument("--batches", default="1", help="profile sweep batch sizes, e.g. 1,2,4")
    parser.add_argument("--samplers", default="euler", help=f"profile sweep samplers, of {sorted(SAMPLERS)}")
    parser.add_argument("--sweep", action="store_true",
                        help=f"the whole sweep: sizes {ASPECT_SIZES}, batches 1,2,4, samplers {','.join(SAMPLERS)}")
    parser.add_argument("--profile-images", type=int, default=3, help="timed jobs per sweep cell (after one warm-up)")
    parser.add_argument("--gate-seeds", type=int, default=3, help="fixed seeds the exactness gate compares")
    parser.add_argument("--gate-samplers", default="euler", help="samplers the exactness gate runs")
    parser.add_argument("--max-latent-diff", type=float, default=0.05,
                        help="the gate's largest |difference| of the final latents")
    parser.add_argument("--gate-min-psnr", type=float, default=40.0, help="the gate's least PSNR (dB) of the images")
    parser.add_argument("--no-http", action="store_true", help="skip the HTTP worker vs diffusers timing")
    parser.add_argument("--smoke", action="store_true", help=f"a quick CPU run that checks the script: {SMOKE}")
    parser.add_argument("--compile", choices=["auto", "on", "off"], default="auto",
                        help="the worker's exact fast path (channels_last, fused QKV, torch.compile), in-process and "
                        "over HTTP (auto: the worker's default, on with CUDA)")
    parser.add_argument("--compile-mode", choices=["auto", *COMPILE_MODES], default="auto",
                        help="torch.compile mode of both (auto: the worker's, max-autotune on CUDA)")
    parser.add_argument("--compile-backend", choices=["inductor", "aot_eager", "eager"], default="inductor",
                        help="torch.compile backend of both (aot_eager and eager make no kernels: checks only)")
    parser.add_argument("--fast-mode", choices=["off", "deepcache"], default="off",
                        help="also measure this opt-in fast mode against the exact path (speed-up, PSNR)")
    parser.add_argument("--deepcache-interval", type=int, default=3, help="deepcache: a full UNet evaluation every N")
    parser.add_argument("--deepcache-branch", type=int, default=0, help="deepcache: the shallow branch's depth")
    parser.add_argument("--fast-images", type=int, default=5, help="seeds the fast mode is timed and compared at")
    parser.add_argument("--flops-only", action="store_true",
                        help="with --fast-mode: only count the UNets' FLOPs (meta device, no weights), then exit")
    parser.add_argument("--out", type=Path, help="write the results JSON here")
    args = parser.parse_args()
    if args.smoke:
        vars(args).update(SMOKE, workdir=Path(tempfile.mkdtemp(prefix="sdxl-gpu-smoke-")))
    if args.sweep:
        vars(args).update(sizes=ASPECT_SIZES, batches="1,2,4", samplers=",".join(SAMPLERS))
    args.sizes = args.sizes or f"{args.size}x{args.size}"
    args.port = args.port or free_port()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.flops_only:
        print(json.dumps(deepcache_flops(args), indent=2))
        write_report(args.out, flops=deepcache_flops(args))
        return 0

    import torch

    dtype = torch.float16 if args.device.startswith("cuda") else torch.float32
    results: dict = {"arch": args.arch, "device": args.device, "steps": args.steps, "size": args.size,
                     "refiner_switch_at": args.switch, "cfg_scale": CFG_SCALE, "images": args.images,
                     "smoke": args.smoke, "torch": torch.__version__}
    if args.device.startswith("cuda"):
        results["gpu"] = torch.cuda.get_device_name()

    base, refiner = random_sdxl(args.workdir, args.arch, args.device, dtype)
    direct = DirectDiffusers(args, base, refiner, dtype)
    # Measure first, in-process: the exactness gate, then the per-stage profile of every sweep cell.
    in_process = InProcessWorker(args, base, refiner)
    phase = time.perf_counter()
    results["compile"] = in_process.warm()  # every shape the run times, compiled before any is timed
    print(f"compile: {time.perf_counter() - phase:.1f}s", file=sys.stderr)
    write_report(args.out, **results, complete=False)  # a run cut short still leaves what it measured
    phase = time.perf_counter()
    results["exactness"] = exactness_gate(args, direct, in_process)
    print(f"exactness gate: {time.perf_counter() - phase:.1f}s", file=sys.stderr)
    if not results["exactness"]["passed"]:
        write_report(args.out, **results, complete=False)
        print(json.dumps(results["exactness"], indent=2), file=sys.stderr)
        print("gpu_sdxl: the worker's images are not today's eager images within the gate's thresholds "
              f"({results['exactness']['thresholds']}); no timing reported", file=sys.stderr)
        return 1
    phase = time.perf_counter()
    results["profile"] = {}  # filled cell by cell, each written as it is measured
    profile_sweep(args, in_process, results["profile"], lambda: write_report(args.out, **results, complete=False))
    print(f"profile sweep: {time.perf_counter() - phase:.1f}s", file=sys.stderr)
    write_report(args.out, **results, complete=False)
    if args.fast_mode != "off":
        phase = time.perf_counter()
        results["fast_mode"] = fast_mode_cost(args, in_process)
        print(f"fast mode {args.fast_mode}: {time.perf_counter() - phase:.1f}s", file=sys.stderr)
        write_report(args.out, **results, complete=False)
    in_process.close()
    del in_process
    if args.no_http:
        print(json.dumps(results, indent=2))
        write_report(args.out, **results, complete=True)
        return 0
    # Both sides are loaded at once (two processes, one GPU) and take turns, image by image (which
    # side goes first alternates), so clock ramps and other drift hit both alike; neither ever
    # runs while the other does.
    worker = WorkerProcess(args, base, refiner)
    try:
        worker.wait_ready()
        for warm_up in range(args.warm_ups):  # kernel selection and allocator growth on both sides
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
    write_report(args.out, **results, complete=True)
    return 0


def parse_sizes(text: str) -> list[tuple[int, int]]:
    """"1024x1024,1152x896" -> [(1024, 1024), (1152, 896)] (width, height)."""
    sizes = []
    for item in text.split(","):
        width, _, height = item.strip().partition("x")
        sizes.append((int(width), int(height)))
    return sizes


def parse_list(text: str, known: dict[str, Any] | None = None) -> list[str]:
    items = [item.strip() for item in text.split(",") if item.strip()]
    unknown = [item for item in items if known is not None and item not in known]
    if unknown:
        raise SystemExit(f"gpu_sdxl: unknown {unknown}; known: {sorted(known or {})}")
    return items


class StageClock:
    """Spans of named stages: CUDA events on a GPU (read after one synchronize), perf_counter on the CPU."""

    def __init__(self, cuda: bool) -> None:
        import torch

        self.torch, self.cuda = torch, cuda
        self.kind = "cuda events" if cuda else "time.perf_counter"
        self.spans: list[tuple[str, Any, Any]] = []
        self.open: dict[str, Any] = {}

    def _mark(self) -> Any:
        if self.cuda:
            event = self.torch.cuda.Event(enable_timing=True)
            event.record()
            return event
        return time.perf_counter()

    def start(self, stage: str) -> None:
        self.open[stage] = self._mark()

    def stop(self, stage: str) -> None:
        if stage in self.open:
            self.spans.append((stage, self.open.pop(stage), self._mark()))

    def read(self) -> dict[str, list[float]]:
        """Milliseconds of every span since the last read, by stage, in order."""
        if self.cuda:
            self.torch.cuda.synchronize()
        out: dict[str, list[float]] = {}
        for stage, begin, end in self.spans:
            out.setdefault(stage, []).append(begin.elapsed_time(end) if self.cuda else 1000 * (end - begin))
        self.spans.clear()
        self.open.clear()
        return out


class KeepLatents:
    """A JobControl that lets the job run to its end and keeps the latest latents (the final ones)."""

    def __init__(self) -> None:
        self.latents: Any = None
        self.steps = 0

    def on_batch(self, batch_no: int) -> bool:
        return True

    def on_step(self, latents: Any) -> bool:
        self.latents = latents
        self.steps += 1
        return True

    def wait(self, seconds: float) -> bool:
        return True


class InProcessWorker:
    """The worker's own code path in this process: `DiffusersEngine.generate` on checkpoints loaded
    by the worker's loader, with a request resolved as the worker resolves it: what a job runs."""

    def __init__(self, args: argparse.Namespace, base: Path, refiner: Path) -> None:
        from sdxlpool.worker.engine import DiffusersEngine
        from sdxlpool.worker.settings import WorkerSettings

        self.args = args
        # The fast path compiles exactly the shapes this run times: every sweep size at every sweep batch
        # size, and --size square at batch 1 (the gate, the fast mode).
        sizes = dict.fromkeys([*parse_sizes(args.sizes), (args.size, args.size)])
        batches = dict.fromkeys([*(int(b) for b in parse_list(args.batches)), 1])
        self.settings = WorkerSettings(
            models=[base], refiner=refiner, device=args.device, warmup=False, compile=COMPILE[args.compile],
            compile_mode=args.compile_mode, compile_backend=args.compile_backend,
            compile_shapes=",".join(f"{w}x{h}" for w, h in sizes), compile_batch_sizes=",".join(map(str, batches)))
        self.engine = DiffusersEngine(self.settings)
        self.checkpoints = self.engine.load()
        self.base = self.checkpoints.current
        self.refiner = next(c for c in self.checkpoints.all if c.kind == "refiner")

    def warm(self) -> dict[str, Any]:
        """Compiles every shape the run times, one job each, before any is timed (the worker does this
        on its job thread at start-up; here this thread runs every job, so CUDA graphs are its own):
        seconds per shape, and whether the compile cache had them already (a warm start)."""
        fast = self.engine.fast
        if fast is None:
            return {"on": False}
        cache_loaded = fast.cache_loaded
        seconds = {}
        for shape in fast.pending:
            started = time.perf_counter()
            with fast.warming(shape):
                self.job(seed=0, width=shape.width, height=shape.height, batch=shape.batch, sampler="euler")
            seconds[str(shape)] = round(time.perf_counter() - started, 3)
        return {"on": True, "mode": fast.mode, "backend": self.settings.compile_backend,
                "cache_loaded": cache_loaded, "warm_seconds": seconds}

    def sampler(self, key: str) -> Any:
        from sdxlpool.worker.samplers import resolve_sampler

        name, schedule = SAMPLERS[key]
        return resolve_sampler(name, schedule, schedules_of=self.engine.schedules)

    def job(self, *, seed: int, width: int, height: int, batch: int, sampler: str,
            deepcache: Any = None) -> tuple[Any, Any]:
        """One job as the worker runs it: (GenerationResult, the final latents); `deepcache`: the
        worker's --fast-mode deepcache parameters (None: exact)."""
        from sdxlpool.api.a1111 import Txt2ImgRequest
        from sdxlpool.api.generation import resolve_request
        from sdxlpool.worker.generate import RuntimeOptions

        name, schedule = SAMPLERS[sampler]
        request = Txt2ImgRequest(prompt=PROMPT, seed=seed, subseed=0, steps=self.args.steps, width=width,
                                 height=height, batch_size=batch, cfg_scale=CFG_SCALE, sampler_name=name,
                                 scheduler=schedule, refiner_checkpoint=self.refiner.title,
                                 refiner_switch_at=self.args.switch)
        params = resolve_request(request, self.settings.defaults, self.settings.limits)
        control = KeepLatents()
        result = self.engine.generate(self.base, self.refiner, params, self.sampler(sampler),
                                      RuntimeOptions(deepcache=deepcache), control)
        return result, control.latents

    def hook(self, clock: StageClock) -> list[Any]:
        """Forward hooks that time each stage on the modules the pipelines hold (shared ones once)."""
        base, refiner = self.base.pipeline, self.refiner.pipeline
        stages = {"text_encoders": [base.text_encoder, base.text_encoder_2, refiner.text_encoder_2],
                  "base_unet": [base.unet], "refiner_unet": [refiner.unet], "vae_decode": [base.vae.decoder]}
        handles, seen = [], set()
        for stage, modules in stages.items():
            for module in modules:
                if module is None or id(module) in seen:
                    continue
                seen.add(id(module))
                handles.append(module.register_forward_pre_hook(lambda *_a, s=stage: clock.start(s)))
                handles.append(module.register_forward_hook(lambda *_a, s=stage: clock.stop(s)))
        return handles

    def close(self) -> None:
        import gc

        import torch

        self.checkpoints = self.base = self.refiner = None  # type: ignore[assignment]
        gc.collect()
        if self.args.device.startswith("cuda"):
            torch.cuda.empty_cache()


def exactness_gate(args: argparse.Namespace, direct: DirectDiffusers, worker: InProcessWorker) -> dict[str, Any]:
    """The worker's images against today's eager ones (diffusers, same scheduler and noise) at fixed
    seeds: the largest |d latent| of the final latents and the PSNR of the decoded images."""
    thresholds = {"max_abs_latent_difference": args.max_latent_diff,
                  "min_psnr_db": args.gate_min_psnr if math.isfinite(args.gate_min_psnr) else "identical pixels"}
    cells = []
    for key in parse_list(args.gate_samplers, SAMPLERS):
        for seed in range(1000, 1000 + args.gate_seeds):
            result, latents = worker.job(seed=seed, width=args.size, height=args.size, batch=1, sampler=key)
            eager_latents, eager_image = direct.eager(seed, worker.sampler(key))
            latent_diff = float((latents.float().cpu() - eager_latents.float().cpu()).abs().max())
            cells.append({"sampler": key, "seed": seed, "max_abs_latent_difference": latent_diff,
                          "path": result.extra.get("path", "eager"), **compare(eager_image, result.images[0])})
    passed = all(c["max_abs_latent_difference"] <= args.max_latent_diff
                 and (c["psnr_db"] is None or c["psnr_db"] >= args.gate_min_psnr) for c in cells)
    return {"reference": "diffusers eager pipelines (base + refiner), same scheduler and CPU noise",
            "size": args.size, "steps": args.steps, "thresholds": thresholds, "per_seed": cells, "passed": passed}


def profile_sweep(args: argparse.Namespace, worker: InProcessWorker, into: dict[str, Any],
                  save: Callable[[], None]) -> None:
    """Per-stage times of every (size, batch, sampler) cell: one warm-up job, then timed jobs. `into`
    gets the profile, a cell at a time, and `save` is called after each."""
    cuda = args.device.startswith("cuda")
    clock = StageClock(cuda)
    handles = worker.hook(clock)
    cells: list[dict[str, Any]] = []
    into.update({"clock": clock.kind, "device": args.device, "steps": args.steps, "refiner_switch_at": args.switch,
                 "jobs_per_cell": args.profile_images, "measured_on_gpu": cuda, "cells": cells})
    try:
        for width, height in parse_sizes(args.sizes):
            for batch in (int(b) for b in parse_list(args.batches)):
                for key in parse_list(args.samplers, SAMPLERS):
                    cell = {"width": width, "height": height, "batch": batch, "sampler": key}
                    worker.job(seed=0, width=width, height=height, batch=batch, sampler=key)  # warm-up
                    clock.read()
                    jobs = [profile_job(worker, clock, seed=100 + n, **cell) for n in range(args.profile_images)]
                    cells.append({**cell, **summarise_jobs(jobs, batch)})
                    save()
    finally:
        for handle in handles:
            handle.remove()


def profile_job(worker: InProcessWorker, clock: StageClock, *, seed: int, width: int, height: int, batch: int,
                sampler: str) -> dict[str, Any]:
    """One timed job: its stages (ms per span), wall seconds, and PNG + base64 ms of each image (CPU)."""
    started = time.perf_counter()
    clock.start("job")
    result, _ = worker.job(seed=seed, width=width, height=height, batch=batch, sampler=sampler)
    clock.stop("job")
    stages = clock.read()
    wall = time.perf_counter() - started
    png = []
    for image, text in zip(result.images, result.infotexts, strict=True):
        begin = time.perf_counter()
        worker.engine.encode_png(image, text)
        png.append(1000 * (time.perf_counter() - begin))
    return {"wall_seconds": wall, "stages": stages, "png_base64_ms": png, "steps_done": result.steps_done,
            "path": result.extra.get("path", "eager")}


def summarise_jobs(jobs: list[dict[str, Any]], batch: int) -> dict[str, Any]:
    """Spreads over a cell's jobs: per stage the ms per job and per call (a UNet call is one evaluation)."""
    out: dict[str, Any] = {"seconds_per_image": spread(j["wall_seconds"] / batch for j in jobs),
                           "steps_per_job": jobs[-1]["steps_done"],
                           # "compiled": every UNet and VAE call of the timed jobs ran compiled (engine.py)
                           "paths": sorted({j["path"] for j in jobs})}
    for stage in ("job", "text_encoders", "base_unet", "refiner_unet", "vae_decode"):
        calls = [j["stages"].get(stage, []) for j in jobs]
        out[f"{stage}_ms_per_job"] = spread(sum(c) for c in calls)
        out[f"{stage}_calls_per_job"] = len(calls[-1])
        if stage in ("base_unet", "refiner_unet"):
            out[f"{stage}_ms_per_evaluation"] = spread(ms for c in calls for ms in c)
            out[f"{stage}_ms_last_job"] = [round(ms, 3) for ms in calls[-1]]  # each step's evaluation(s)
    out["png_base64_ms_per_image"] = spread(ms for j in jobs for ms in j["png_base64_ms"])
    return out


def fast_mode_cost(args: argparse.Namespace, worker: InProcessWorker) -> dict[str, Any]:
    """The fast mode against the exact path at --size, batch 1, Euler: seconds and UNet seconds per
    image of both (taking turns), and the mode's image against the exact one of the same seed."""
    from sdxlpool.worker.deepcache import DeepCache

    mode = DeepCache(args.deepcache_interval, args.deepcache_branch)
    clock = StageClock(args.device.startswith("cuda"))
    handles = []
    for stage, unet in (("base_unet", worker.base.pipeline.unet), ("refiner_unet", worker.refiner.pipeline.unet)):
        # conv_in and conv_out run in every evaluation of both modes: the span is the UNet's.
        handles.append(unet.conv_in.register_forward_pre_hook(lambda *_a, s=stage: clock.start(s)))
        handles.append(unet.conv_out.register_forward_hook(lambda *_a, s=stage: clock.stop(s)))
    job = {"width": args.size, "height": args.size, "batch": 1, "sampler": "euler"}
    sides: dict[str, dict[str, list[float]]] = {s: {"seconds": [], "unet_seconds": []} for s in ("exact", "fast")}
    per_seed = []
    try:
        worker.job(seed=0, **job)  # warm-up, both paths
        worker.job(seed=0, **job, deepcache=mode)
        clock.read()
        for n, seed in enumerate(range(2000, 2000 + args.fast_images)):
            order = ("exact", "fast") if n % 2 == 0 else ("fast", "exact")
            out = {}
            for side in order:
                clock.read()
                started = time.perf_counter()
                result, latents = worker.job(seed=seed, **job, deepcache=mode if side == "fast" else None)
                seconds = time.perf_counter() - started
                stages = clock.read()
                sides[side]["seconds"].append(seconds)
                sides[side]["unet_seconds"].append(sum(sum(stages.get(s, [])) for s in ("base_unet", "refiner_unet"))
                                                   / 1000)
                out[side] = (result.images[0], latents)
            latent_diff = float((out["fast"][1].float().cpu() - out["exact"][1].float().cpu()).abs().max())
            per_seed.append({"seed": seed, "max_abs_latent_difference": round(latent_diff, 5),
                             **compare(out["exact"][0], out["fast"][0])})
    finally:
        for handle in handles:
            handle.remove()
    psnrs = [c["psnr_db"] for c in per_seed if c["psnr_db"] is not None]
    flops = deepcache_flops(args)
    median = {side: {k: statistics.median(v) for k, v in values.items()} for side, values in sides.items()}
    return {
        "mode": args.fast_mode, "interval": mode.interval, "branch": mode.branch,
        "size": args.size, "steps": args.steps, "sampler": "euler", "images": args.fast_images,
        "model": f"{args.arch} random weights (quality figures are this model's, not SDXL's)",
        "exact": {"seconds_per_image": spread(sides["exact"]["seconds"]),
                  "unet_seconds_per_image": spread(sides["exact"]["unet_seconds"])},
        "fast": {"seconds_per_image": spread(sides["fast"]["seconds"]),
                 "unet_seconds_per_image": spread(sides["fast"]["unet_seconds"])},
        "speedup_median": round(median["exact"]["seconds"] / median["fast"]["seconds"], 3),
        "unet_speedup_median": round(median["exact"]["unet_seconds"] / median["fast"]["unet_seconds"], 3),
        # Each seed's pair ran back to back: their ratio shrugs off a shared machine's slower minutes.
        "speedup_per_seed": spread(e / f for e, f in zip(sides["exact"]["seconds"], sides["fast"]["seconds"],
                                                         strict=True)),
        "unet_speedup_per_seed": spread(e / f for e, f in zip(sides["exact"]["unet_seconds"],
                                                              sides["fast"]["unet_seconds"], strict=True)),
        "psnr_db_vs_exact": spread(psnrs) if psnrs else "identical pixels",
        "unet_flops": flops,
        "per_seed": per_seed,
    }


def deepcache_flops(args: argparse.Namespace) -> dict[str, Any]:
    """FLOPs of one UNet evaluation, full and cached, of --arch's base and refiner at --size (CFG:
    batch 2), counted on the meta device; and per image at --steps with Euler (one evaluation a
    step: round(steps x switch) on the base, the rest on the refiner), exact and with DeepCache."""
    import torch
    from diffusers import UNet2DConditionModel
    from torch.utils.flop_counter import FlopCounterMode

    from sdxlpool.worker.architectures import component_configs
    from sdxlpool.worker.deepcache import DeepCache, DeepCacheUNet, full_evaluation

    mode = DeepCache(args.deepcache_interval, args.deepcache_branch)
    evaluations = {"base": round(args.steps * args.switch)}
    evaluations["refiner"] = args.steps - evaluations["base"]
    out: dict[str, Any] = {"arch": args.arch, "size": args.size, "interval": mode.interval, "branch": mode.branch,
                           "counted": "torch FlopCounterMode, meta device, CFG batch 2"}
    exact_total = fast_total = 0.0
    for kind in ("base", "refiner"):
        with torch.device("meta"):
            unet = UNet2DConditionModel.from_config(component_configs(kind, args.arch)["unet"])
        config = unet.config
        time_ids = unet.add_embedding.linear_1.in_features - config.projection_class_embeddings_input_dim
        side = args.size // 8
        inputs = {"sample": torch.empty(2, config.in_channels, side, side, device="meta"),
                  "encoder_hidden_states": torch.empty(2, 77, config.cross_attention_dim, device="meta"),
                  "added_cond_kwargs": {
                      "text_embeds": torch.empty(2, config.projection_class_embeddings_input_dim - time_ids,
                                                 device="meta"),
                      "time_ids": torch.empty(2, time_ids // config.addition_time_embed_dim, device="meta")}}
        wrapper = DeepCacheUNet(unet, mode)
        counted = {}
        with torch.no_grad():
            for name in ("full", "cached"):  # the wrapper's first call is full, its second cached
                with FlopCounterMode(display=False) as counter:
                    wrapper(timestep=torch.tensor(500.0, device="meta"), **inputs)
                counted[name] = counter.get_total_flops()
        n = evaluations[kind]
        full = sum(1 for i in range(n) if full_evaluation(i, mode.interval))
        exact_total += n * counted["full"]
        fast_total += full * counted["full"] + (n - full) * counted["cached"]
        out[kind] = {"tflop_full_evaluation": round(counted["full"] / 1e12, 4),
                     "tflop_cached_evaluation": round(counted["cached"] / 1e12, 4),
                     "cached_over_full": round(counted["cached"] / counted["full"], 4),
                     "evaluations": n, "full_evaluations": full}
    out["tflop_per_image_exact"] = round(exact_total / 1e12, 3)
    out["tflop_per_image_deepcache"] = round(fast_total / 1e12, 3)
    out["flops_exact_over_deepcache"] = round(exact_total / fast_total, 3)
    return out


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

    def eager(self, seed: int, sampler: Any) -> tuple[Any, Image.Image]:
        """Today's eager output for the exactness gate: final latents and decoded image at `seed`,
        with the worker's scheduler for `sampler` (built for this seed) on base and refiner."""
        args, torch = self.args, self.torch
        kept = self.base.scheduler, self.refiner.scheduler
        self.base.scheduler = sampler.build(kept[0].config, image_seeds=[seed])
        self.refiner.scheduler = sampler.build(kept[1].config, image_seeds=[seed])
        try:
            generator = torch.Generator("cpu").manual_seed(seed)
            shape = (1, self.base.unet.config.in_channels, args.size // self.base.vae_scale_factor,
                     args.size // self.base.vae_scale_factor)
            noise = torch.randn(shape, generator=generator).to(device=args.device, dtype=self.base.unet.dtype)
            latents = self.base(PROMPT, num_inference_steps=args.steps, denoising_end=args.switch,
                                output_type="latent", width=args.size, height=args.size, guidance_scale=CFG_SCALE,
                                latents=noise, generator=generator).images
            final = self.refiner(PROMPT, image=latents, num_inference_steps=args.steps, denoising_start=args.switch,
                                 guidance_scale=CFG_SCALE, generator=generator, output_type="latent").images
            with torch.inference_mode():
                vae = self.refiner.vae
                dtype = vae.dtype
                if dtype == torch.float16 and vae.config.force_upcast:  # as diffusers decodes: fp32
                    vae.to(torch.float32)
                pixels = vae.decode(final.to(vae.dtype) / vae.config.scaling_factor, return_dict=False)[0]
                vae.to(dtype)
                image = self.refiner.image_processor.postprocess(pixels, output_type="pil")[0]
        finally:
            self.base.scheduler, self.refiner.scheduler = kept
        return final, image

    def memory(self) -> dict:
        if not self.args.device.startswith("cuda"):
            return {}
        return {"peak_gpu_memory_gib": round(self.torch.cuda.max_memory_allocated() / 2**30, 2)}


class WorkerProcess:
    """The same images through `sdxlpool worker` over HTTP, one request at a time."""

    def __init__(self, args: argparse.Namespace, base: Path, refiner: Path) -> None:
        command = [sys.executable, "-m", "sdxlpool", "worker", "--model", str(base), "--refiner", str(refiner),
                   "--device", args.device, "--port", str(args.port), "--default-width", str(args.size),
                   "--default-height", str(args.size),
                   # The one shape it times, compiled before ready: no other shape compiles in the background
                   # on the job thread while the images are timed.
                   "--compile-mode", args.compile_mode, "--compile-backend", args.compile_backend,
                   "--compile-shapes", f"{args.size}x{args.size}", "--compile-batch-sizes", "1"]
        if COMPILE[args.compile] is not None:
            command.append("--compile" if COMPILE[args.compile] else "--no-compile")
        self.args = args
        self.url = f"http://127.0.0.1:{args.port}"
        self.log = open(args.workdir / "worker.log", "w")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(command, stdout=self.log, stderr=subprocess.STDOUT)
        self.started = time.perf_counter()
        self.client = httpx.Client(base_url=self.url, timeout=600)
        self.inference: list[float] = []
        self.paths: set[str] = set()  # "compiled" / "eager" of every image it answered

    def wait_ready(self) -> None:
        wait_ready(self.url, self.process, timeout=600)
        self.ready_seconds = time.perf_counter() - self.started
        self.body = {"prompt": PROMPT, "steps": self.args.steps, "sampler_name": "Euler", "width": self.args.size,
                     "height": self.args.size, "cfg_scale": CFG_SCALE, "refiner_checkpoint": refiner_title(self.url),
                     "refiner_switch_at": self.args.switch}

    def image(self, seed: int) -> tuple[float, Image.Image]:
        """Client wall-clock seconds for one image over HTTP, and the image (decoded after the clock stops)."""
        started = time.perf_counter()
        response = self.client.post("/sdapi/v1/txt2img", json={**self.body, "seed": seed})
        response.raise_for_status()
        elapsed = time.perf_counter() - started
        answer = response.json()
        placement = json.loads(answer["info"])["sdxlpool"]
        self.inference.append(placement["inference_seconds"])
        self.paths.add(placement.get("path", "eager"))
        image = Image.open(io.BytesIO(base64.b64decode(answer["images"][0])))
        image.load()
        return elapsed, image

    def details(self) -> dict:
        metrics = self.client.get("/metrics").text
        return {
            "inference_seconds": spread(self.inference[self.args.warm_ups:]),
            "load_and_warmup_seconds": round(self.ready_seconds, 1),
            "paths": sorted(self.paths),
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


def summary(times: list[float]) -> dict[str, Any]:
    """Seconds per image: every run, their spread, and the mean (kept for comparison with earlier runs)."""
    return {"seconds": spread(times), "mean_seconds": round(statistics.mean(times), 4),
            "runs": [round(t, 4) for t in times]}


if __name__ == "__main__":
    sys.exit(main())
