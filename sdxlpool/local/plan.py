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

Nothing here starts a process or touches the disk; `supervisor.py` does, from this plan.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sdxlpool.api.pool_config import backend_entry, gateway_args, worker_args
from sdxlpool.api.ports import GATEWAY_PORT, LOCAL_WORKER_PORT
from sdxlpool.api.spec import GpuEntry, SDXLPoolSpec

__all__ = ["Model", "WorkerPlan", "GatewayPlan", "LocalPlan", "plan_pool", "cap_replicas", "TINY_DEFAULT_SIDE"]

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

    @property
    def gpu_model(self) -> str:
        return self.entry.model

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
    workers: list[WorkerPlan]
    gateway: GatewayPlan
    notes: list[str]  # what `up` decided on the user's behalf, printed before starting

    def backends_file_entries(self) -> dict[str, Any]:
        return {"backends": [w.backend() for w in self.workers]}


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
) -> LocalPlan:
    """`device`: "cpu" or "cuda" (already resolved from "auto"); `cuda_devices`: GPUs visible."""
    notes: list[str] = [f"model: {model.source}"] if model.source else []
    notes += model.fine_tune_notes
    fine_tunes = {name: str(folder) for name, folder in model.fine_tunes.items()}
    wanted = [entry.replicas for entry in spec.gpus]
    counts = cap_replicas(wanted, max_workers)
    if counts != wanted:
        notes.append(f"--max-workers {max_workers}: running {sum(counts)} of the spec's {sum(wanted)} workers")
    total = sum(counts)
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
    if device == "cpu" and total:
        notes.append(f"device cpu: {total} worker processes, {threads} CPU thread(s) each")

    workers: list[WorkerPlan] = []
    for entry, count in zip(spec.gpus, counts, strict=True):
        provider = entry.provider.name if entry.provider else "local"
        location = (entry.provider.location if entry.provider else None) or "this machine"
        for n in range(1, count + 1):
            index = len(workers)
            worker_device = f"cuda:{index % cuda_devices}" if device == "cuda" and cuda_devices else device
            name = f"{entry.slug}-{n}"
            worker_port_n = worker_port + index
            args = worker_args(spec, entry, base=str(model.base), refiner=str(model.refiner) if model.refiner else None,
                               host="127.0.0.1", port=worker_port_n, device=worker_device, provider=provider,
                               location=location, name=name, defaults=defaults, fine_tunes=fine_tunes)
            env = {"OMP_NUM_THREADS": str(threads)} if threads else {}
            workers.append(WorkerPlan(name, entry, provider, location, worker_port_n, worker_device, threads,
                                      (python, "-m", "sdxlpool", *args), env))

    args = gateway_args(spec, discovery=["--backends", str(backends_file)], host=host, port=port, defaults=defaults)
    return LocalPlan(workers, GatewayPlan(host, port, (python, "-m", "sdxlpool", *args), {}), notes)
