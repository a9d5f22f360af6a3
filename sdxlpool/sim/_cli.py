"""`sdxlpool sim-worker`: its flags, their checks, and serving the simulated worker.

Only argparse is imported up front (the main CLI imports this module to build its parser, and must
start without fastapi or torch); the server side is imported when the command runs. Bad values exit
2 with one line: argparse checks each flag's value, `SimSettings` the rest (ConfigError).
"""

from __future__ import annotations

import argparse
from typing import Any

from sdxlpool._args import (
    FAST_MODE_KEYS,
    add_fast_mode_flags,
    add_generation_flags,
    at_least,
    between,
    generation_given,
)
from sdxlpool.api.pool_config import WORKER_DRAIN_SECONDS
from sdxlpool.errors import ConfigError

__all__ = ["add_parser", "run_sim_worker"]

# flag attribute -> SimSettings field, for everything the command passes on when given
_SETTINGS_KEYS = ("gpu_model", "step_seconds", "overhead_seconds", "fail_rate", "hang_rate", "seed", "image_bytes",
                  "host", "port", "provider", "location", "worker_name", "max_queue", "warmup", "drain_seconds",
                  "batch_max", "batch_wait_ms", "batch_alpha", *FAST_MODE_KEYS)


def add_parser(subcommands: Any) -> argparse.ArgumentParser:
    """Register `sim-worker` on the CLI's sub-parsers (`parser.add_subparsers(...)`); returns its parser."""
    sim = subcommands.add_parser(
        "sim-worker", help="run a simulated worker: the worker's API and metrics, a clock instead of a GPU",
        description="Serve the worker's AUTOMATIC1111 API and Prometheus metrics with a timing model instead of "
        "SDXL, for benchmarks and load tests: each request takes overhead + normalised steps x step seconds "
        "(one normalised step = one denoising step of one 1024x1024 image) and returns solid-colour PNGs that "
        "depend only on the request. Other worker settings come from SDXLPOOL_* environment variables.")
    add_generation_flags(sim)
    sim.add_argument("--gpu-model", required=True, type=_name, metavar="NAME",
                     help="the GPU model to pretend to be, e.g. A100 (normalised as a real worker's)")
    sim.add_argument("--step-seconds", required=True, type=_seconds, metavar="S",
                     help="wall seconds per normalised step (e.g. 0.05 for a fast card; 0: no delay)")
    sim.add_argument("--overhead-seconds", type=_seconds, metavar="S",
                     help="fixed seconds per request on top of the steps (default 0)")
    sim.add_argument("--fail-rate", type=_probability, metavar="P",
                     help="fraction of requests that fail part-way with HTTP 500 (default 0)")
    sim.add_argument("--hang-rate", type=_probability, metavar="P",
                     help="fraction of requests that never progress until interrupted or abandoned (default 0)")
    sim.add_argument("--seed", type=int, metavar="N",
                     help="seed of the fail/hang draws (default 0): the same seed fails the same jobs in order")
    sim.add_argument("--image-bytes", type=_count, metavar="N",
                     help="pad every PNG to at least N bytes, for realistic response sizes (default 0: no padding)")
    sim.add_argument("--max-queue", type=_count, metavar="N",
                     help="requests that may wait behind the running one; more get 503 (default 16)")
    sim.add_argument("--batch-max", type=_positive, metavar="N",
                     help="run up to N queued same-shape txt2img requests as one batch, as a real worker's "
                          "--batch-max (default 1: off)")
    sim.add_argument("--batch-wait-ms", type=_seconds, metavar="MS",
                     help="with --batch-max: how long the oldest request may wait for partners (default 0)")
    sim.add_argument("--batch-alpha", type=_probability, metavar="A",
                     help="with --batch-max: a batch of n takes 1 + A x (n - 1) times one image's time "
                          "(default 1: batching gains nothing; 0: the batch is free)")
    add_fast_mode_flags(sim)  # the timing model runs DeepCache's cached evaluations at their share of the FLOPs
    sim.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    sim.add_argument("--port", type=_port, help="port (default 7860)")
    sim.add_argument("--provider", help="provider name shown to users")
    sim.add_argument("--location", help="location shown to users")
    sim.add_argument("--worker-name", help="this worker's name (default host:port)")
    sim.add_argument("--drain-seconds", type=_seconds, metavar="S",
                     help="on SIGTERM: refuse new connections, finish the running and queued jobs for up to S "
                          f"seconds, then exit (default {WORKER_DRAIN_SECONDS:g})")
    sim.add_argument("--no-warmup", dest="warmup", action="store_const", const=False,
                     help="skip the start-up job that measures step time (step_seconds reads 0 until a request)")
    sim.set_defaults(handler=run_sim_worker)
    return sim


def run_sim_worker(args: argparse.Namespace) -> int:
    """The `sim-worker` handler: check the settings, then serve until stopped (SIGTERM exits 0)."""
    from pydantic import ValidationError
    from pydantic_settings import SettingsError

    from sdxlpool._settings import settings_error
    from sdxlpool.sim._settings import SimSettings

    given = {key: getattr(args, key) for key in _SETTINGS_KEYS if getattr(args, key, None) is not None}
    given |= generation_given(args)
    if given.get("fail_rate", 0) + given.get("hang_rate", 0) > 1:
        raise ConfigError(f"--fail-rate + --hang-rate is {given['fail_rate'] + given['hang_rate']:g}; "
                          "at most 1 (a request either fails, hangs or runs)")
    try:
        settings = SimSettings(**given)
    except (ValidationError, SettingsError) as exc:  # SettingsError: an SDXLPOOL_* variable that does not parse
        raise settings_error(exc) from None
    from sdxlpool._serving import serve
    from sdxlpool.sim._app import create_sim_app

    return serve("sim-worker", lambda on_fatal: create_sim_app(settings, on_fatal=on_fatal),
                 host=settings.host, port=settings.port, max_message_bytes=settings.max_body_bytes,
                 drain_seconds=settings.drain_seconds)


_seconds = at_least(float, 0, rule="0 or more seconds")
_probability = between(float, 0, 1)
_count = at_least(int, 0)
_positive = at_least(int, 1)
_port = between(int, 0, 65535)


def _name(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("must not be empty")
    return text.strip()
