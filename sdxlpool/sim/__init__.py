"""A simulated SDXL worker for benchmarks and load tests (`sdxlpool sim-worker`).

It is the real worker (`sdxlpool.worker.app.create_app`: the same routes, request validation, job
queue, Prometheus metrics, progress, interrupt, error bodies and A1111 response shape) with one part
swapped: its `Engine` is `SimEngine`, a timing model instead of SDXL on a GPU, as LLM serving has
inference simulators. A gateway in front of it sees what it would see in front of a real worker.

Timing: a request takes overhead_seconds + normalised steps x step_seconds, where one normalised
step is one denoising iteration of one 1024x1024 image (second-order samplers such as Heun or
DPM++ SDE run 2 x steps - 1 iterations, as on diffusers). Progress advances once per iteration, so
pending_steps, /sdapi/v1/progress and /sdapi/v1/interrupt behave as on a GPU.

Faults: fail_rate of the requests fail part-way with HTTP 500 `{"error": "internal", ...}`;
hang_rate of them never progress until interrupted or abandoned by the client. Both are drawn from
`--seed` in job order, so a run repeats.

Images: solid-colour PNGs of the requested size, the colour a hash of the request (the same request
gives the same image), with the A1111 infotext; `--image-bytes N` pads each PNG to at least N bytes.

Differences from a real worker, all deliberate: one fake checkpoint ("sim-sdxl-base") and no
refiner; no live preview image in /progress; the sampler catalogue is a table of what the real
worker derives from diffusers (`_catalog.py`, checked against diffusers by the tests), so the
simulator never imports torch or diffusers.

Surface: `add_parser` registers the command on the `sdxlpool` CLI and `run_sim_worker` is its
handler (both import only argparse); `SimSettings`, `SimEngine` and `create_sim_app` load on first
use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sdxlpool._lazy import lazy_attributes
from sdxlpool.sim._cli import add_parser, run_sim_worker

if TYPE_CHECKING:
    from sdxlpool.sim._app import create_sim_app
    from sdxlpool.sim._engine import SimEngine, SimulatedDeviceError
    from sdxlpool.sim._settings import SimSettings

__all__ = ["add_parser", "run_sim_worker", "SimSettings", "SimEngine", "SimulatedDeviceError", "create_sim_app"]

__getattr__ = lazy_attributes(__name__, {
    "SimSettings": "sdxlpool.sim._settings",
    "SimEngine": "sdxlpool.sim._engine",
    "SimulatedDeviceError": "sdxlpool.sim._engine",
    "create_sim_app": "sdxlpool.sim._app",
})
