"""What `sdxlpool up` runs for a pool: pure, from the SDXLPool spec and the command's options.

    SDXLPool spec.gpus[i] (model, replicas, provider, pricePerHour)
        -> one `WorkerPlan` per replica: name "<gpu>-<n>", its own 127.0.0.1 port, the GPU label,
           provider and location users see, the device it runs on and its CPU threads
    spec.loras / .embeddings / .vaes / .styles (as found on this machine by model.py)
        -> the workers' --lora-dir / --embeddings-dir / --vae-dir / --styles
    spec.defaults / spec.limits / spec.gateway.rateLimit
        -> the workers' and the gateway's flags, rendered by sdxlpool.api.pool_config exactly as
           for the operator's pods and the Akash export, so requests are judged as in the cluster
    the workers
        -> the gateway's backends file (`backends_file_entries`)
    spec.autoscaling (enabled) and spec.gpus[i].autoscaling.maxReplicas
        -> a worker slot (name, port, flags) for every replica up to maxReplicas; those past
           `replicas` are `standby`: not started at first, started and stopped by the autoscaler
           (autoscale.py)
    --sim
        -> `sdxlpool sim-worker` processes instead of workers, each GPU model timed by its estimated
           seconds per step (sdxlpool.scaling.speeds), so the relative speeds are those of the cards

Nothing here starts a process or touches the disk; `supervisor.py` does, from this plan.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sdxlpool.api.pool_config import backend_entry, fast_mode_args, gateway_args, generation_args, worker_args
from sdxlpool.api.ports import GATEWAY_PORT, LOCAL_WORKER_PORT
from sdxlpool.api.spec import DefaultsSpec, GpuEntry, SDXLPoolSpec
from sdxlpool.scaling.speeds import estimate_seconds_per_step

__all__ = ["Model", "WorkerPlan", "GatewayPlan", "LocalPlan", "plan_pool", "cap_replicas", "autoscaling_slots",
           "sim_worker_args", "TINY_DEFAULT_SIDE"]

# The tiny random-weight model on a CPU takes minutes per 1024x1024 image: `up` asks for this size by
# default instead (and says so), so a first image comes in seconds. Real weights keep the spec's size.
TINY_DEFAULT_SIDE = 256


@dataclass(frozen=True)
class Model:
    base: Path
    refiner: Path | None
    tiny: bool  # the random-weight stand-in, not the spec's weights
    source: str = ""  # where the weights come from, in words, for the start-up notes
    fine_tunes: dict[str, Path] = field(default_factory=dict)  # spec field ("loras") -> folder for its flag
    fine_tune_notes: tuple[str, ...] = ()  # what became of the spec's fine-tunes, for the start-up notes


@dataclass(frozen=True)
class WorkerPlan:
    name: str
    entry: GpuEntry
    provider: str
    location: str
    port: int
    device: str
    threads: int | None = None  # OMP/torch threads on a CPU; None: library default
    argv: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    standby: bool = False  # a slot past `replicas` (up to maxReplicas): started only by the autoscaler

    @property
    def gpu_model(self) -> str:
        return self.entry.model

    @property
    def slug(self) -> str:
        return self.entry.slug

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def backend(self) -> dict[str, Any]:
        """This worker's entry in the gateway's backends file."""
        return backend_entry(self.entry, self.name, self.url, provider=self.provider, location=self.location)


@dataclass(frozen=True)
class GatewayPlan:
    host: str
    port: int
    argv: tuple[str, ...]
    env: dict[str, str]

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
        return f"http://{host}:{self.port}"


@dataclass(frozen=True)
class LocalPlan:
    workers: list[WorkerPlan]  # every slot, standby ones included
    gateway: GatewayPlan
    notes: list[str]  # what `up` decided on the user's behalf, printed before starting
    max_running: int | None = None  # --max-workers: the most workers running at once

    @property
    def starting(self) -> list[WorkerPlan]:
        """The workers started at first: `replicas` of each entry."""
        return [w for w in self.workers if not w.standby]

    def backends_file_entries(self, workers: list[WorkerPlan] | None = None) -> dict[str, Any]:
        """The gateway's backends file listing `workers` (default: those started at first)."""
        return {"backends": [w.backend() for w in (self.starting if workers is None else workers)]}


def cap_replicas(replicas: list[int], limit: int | None) -> list[int]:
    """At most `limit` workers in all, shared out one at a time over the entries in order, so
    every GPU model with replicas keeps at least one worker while the limit allows."""
    if limit is None or sum(replicas) <= limit:
        return list(replicas)
    capped = [0] * len(replicas)
    left = limit
    while left > 0:
        progressed = False
        for i, wanted in enumerate(replicas):
            if left and capped[i] < wanted:
                capped[i] += 1
                left -= 1
                progressed = True
        if not progressed:
            break
    return capped


def plan_pool(
    spec: SDXLPoolSpec,
    model: Model,
    *,
    device: str,
    cuda_devices: int = 0,
    cpu_count: int = 1,
    max_workers: int | None = None,
    host: str = "127.0.0.1",
    port: int = GATEWAY_PORT,
    worker_port: int = LOCAL_WORKER_PORT,
    backends_file: Path,
    python: str = sys.executable,
    sim: bool = False,
) -> LocalPlan:
    """`device`: "cpu" or "cuda" (already resolved from "auto"); `cuda_devices`: GPUs visible;
    `sim`: simulated workers (`sdxlpool sim-worker`), no model, no device."""
    notes: list[str] = [f"model: {model.source}"] if model.source else []
    notes += model.fine_tune_notes
    fine_tunes = {name: str(folder) for name, folder in model.fine_tunes.items()}
    wanted = [entry.replicas for entry in spec.gpus]
    counts = cap_replicas(wanted, max_workers)
    if counts != wanted:
        notes.append(f"--max-workers {max_workers}: running {sum(counts)} of the spec's {sum(wanted)} workers")
    slots = autoscaling_slots(spec, counts)
    if slots != counts:
        bounds = ", ".join(f"{e.slug} {e.autoscaling.min_replicas}..{e.autoscaling.max_replicas}"
                           for e in spec.gpus if e.autoscaling is not None)
        notes.append(f"autoscaling ({bounds}; p95 target {spec.autoscaling.latency_target.p95_seconds:g} s, "
                     f"delays up {spec.autoscaling.scale_up_delay:g} s / down {spec.autoscaling.scale_down_delay:g} s):"
                     f" {sum(counts)} workers at first, up to {sum(slots)}"
                     + (f" ({max_workers} at once: --max-workers)" if max_workers is not None else ""))
    if sim:
        notes.append("--sim: simulated workers (sdxlpool sim-worker, no model, no GPU), each GPU model as fast as "
                     "its estimated seconds per step: " + ", ".join(
                         f"{e.slug} {estimate_seconds_per_step(e.slug, {}):.3g} s" for e in spec.gpus))
    total = sum(slots) if max_workers is None else min(sum(slots), max_workers)
    defaults = spec.defaults
    if model.tiny and device == "cpu" and max(defaults.width, defaults.height) > TINY_DEFAULT_SIDE:
        defaults = defaults.model_copy(update={"width": TINY_DEFAULT_SIDE, "height": TINY_DEFAULT_SIDE})
        notes.append(f"tiny model on the CPU: default image size {defaults.width}x{defaults.height} instead of the "
                     f"spec's {spec.defaults.width}x{spec.defaults.height}, so an image takes seconds (ask for more "
                     "per request)")
    threads = max(1, cpu_count // max(1, total)) if device == "cpu" else None
    if device == "cuda" and cuda_devices and total > cuda_devices:
        notes.append(f"{total} workers on {cuda_devices} GPU(s): they share them round-robin, each process with "
                     "its own copy of the model (cap with --max-workers)")
    if sim:
        device, threads = "sim", None
    elif device == "cpu" and total:
        notes.append(f"device cpu: {total} worker processes, {threads} CPU thread(s) each")

    workers: list[WorkerPlan] = []
    for entry, count, slot_count in zip(spec.gpus, counts, slots, strict=True):
        provider = entry.provider.name if entry.provider else "local"
        location = (entry.provider.location if entry.provider else None) or "this machine"
        for n in range(1, slot_count + 1):
            index = len(workers)
            worker_device = f"cuda:{index % cuda_devices}" if device == "cuda" and cuda_devices else device
            name = f"{entry.slug}-{n}"
            worker_port_n = worker_port + index
            if sim:
                args = sim_worker_args(spec, entry, port=worker_port_n, provider=provider, location=location,
                                       name=name, defaults=defaults)
            else:
                args = worker_args(spec, entry, base=str(model.base),
                                   refiner=str(model.refiner) if model.refiner else None, host="127.0.0.1",
                                   port=worker_port_n, device=worker_device, provider=provider, location=location,
                                   name=name, defaults=defaults, fine_tunes=fine_tunes)
            env = {"OMP_NUM_THREADS": str(threads)} if threads else {}
            workers.append(WorkerPlan(name, entry, provider, location, worker_port_n, worker_device, threads,
                                      (python, "-m", "sdxlpool", *args), env, standby=n > count))

    args = gateway_args(spec, discovery=["--backends", str(backends_file)], host=host, port=port, defaults=defaults)
    return LocalPlan(workers, GatewayPlan(host, port, (python, "-m", "sdxlpool", *args), {}), notes, max_workers)


def autoscaling_slots(spec: SDXLPoolSpec, counts: list[int]) -> list[int]:
    """Worker slots per entry: `counts` (the replicas started), raised to maxReplicas for the
    entries the autoscaler sizes (spec.autoscaling.enabled and the entry has bounds)."""
    if not spec.autoscaling.enabled:
        return list(counts)
    return [max(count, entry.autoscaling.max_replicas) if entry.autoscaling is not None else count
            for entry, count in zip(spec.gpus, counts, strict=True)]


def sim_worker_args(spec: SDXLPoolSpec, entry: GpuEntry, *, port: int, provider: str, location: str, name: str,
                    defaults: DefaultsSpec) -> list[str]:
    """``sim-worker`` standing in for a worker of `entry`: as fast as its GPU model is estimated to be
    (nothing is measured yet: the H100 reference scaled by relative speed), in the entry's fast mode
    (its timing model, sdxlpool/sim/_deepcache.py), with the pool's limits and defaults."""
    seconds = estimate_seconds_per_step(entry.slug, {})
    return ["sim-worker", "--gpu-model", entry.model, "--step-seconds", f"{seconds:.4g}", "--host", "127.0.0.1",
            "--port", str(port), "--provider", provider, "--location", location, "--worker-name", name,
            *fast_mode_args(entry), *generation_args(spec.limits, defaults)]
