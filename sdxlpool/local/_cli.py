"""`sdxlpool up POOL.yaml`: a whole pool on this machine, as processes, until Ctrl-C.

Steps, each visible in what it prints:
  1. read and validate the SDXLPool (the same YAML a platform team applies to a cluster)
  2. choose the weights (`model.py`): the spec's when on this machine, else the tiny model
  3. plan the processes (`plan.py`): one worker per replica, each on its own port, and the gateway
     (with spec.autoscaling.enabled: a slot per replica up to each entry's maxReplicas)
  4. check every port is free (a second `up` gets one clear line, exit 2)
  5. start and supervise them (`supervisor.py`), print a line per process as it becomes ready,
     then the web page's address; Ctrl-C or SIGTERM stops everything, exit 0
  6. with autoscaling: size each autoscaled GPU model from the gateway's demand (`autoscale.py`,
     the operator's policy), a line per change; removed workers drain first

`--sim` runs simulated workers (`sdxlpool sim-worker`: no model, no GPU, each GPU model as fast as
its estimate), so a pool, its routing and its autoscaling can be watched on any machine.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from sdxlpool.api.ports import GATEWAY_PORT, HEALTH_PATH, LOCAL_WORKER_PORT, READY_PATH
from sdxlpool.errors import ConfigError

__all__ = ["add_parser", "run_up"]


def add_parser(subcommands: Any) -> argparse.ArgumentParser:
    up = subcommands.add_parser(
        "up", help="run a whole pool on this machine: its workers and gateway as processes",
        description="Run an SDXLPool here, without a cluster: one worker process per replica of each GPU "
        "model entry (each on its own 127.0.0.1 port, labelled with its GPU model, provider and location) and "
        "the gateway in front, with its web page. Serves the spec's weights when they are on this machine, else "
        "a tiny random-weight model (created once). Crashed processes are restarted; Ctrl-C stops everything.")
    up.add_argument("pool", type=Path, metavar="POOL.yaml", help="an SDXLPool manifest, e.g. examples/local-pool.yaml")
    up.add_argument("--host", default="127.0.0.1", help="the gateway's address (default 127.0.0.1)")
    up.add_argument("--port", type=int, default=GATEWAY_PORT, help=f"the gateway's port (default {GATEWAY_PORT})")
    up.add_argument("--worker-port", type=int, default=LOCAL_WORKER_PORT, metavar="PORT",
                    help=f"first worker port; the others follow (default {LOCAL_WORKER_PORT})")
    up.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                    help="where workers run (auto: cuda when a GPU is visible, else cpu)")
    up.add_argument("--max-workers", type=int, metavar="N",
                    help="run at most N workers in all (each GPU model keeps at least one while N allows)")
    up.add_argument("--model", type=Path, metavar="PATH", help="serve this SDXL base instead of the spec's weights")
    up.add_argument("--refiner", type=Path, metavar="PATH", help="with --model: this refiner")
    up.add_argument("--sim", action="store_true",
                    help="run simulated workers (sdxlpool sim-worker) instead of real ones: no model, no GPU; each "
                         "GPU model as fast as its estimated seconds per step, so routing and autoscaling can be "
                         "watched on any machine")
    up.add_argument("--log-dir", type=Path, metavar="DIR",
                    help="keep each process's log here (default: a temporary folder, removed at exit)")
    up.set_defaults(handler=run_up)
    return up


def run_up(args: argparse.Namespace) -> int:
    import asyncio
    import logging
    import shutil
    import tempfile

    from sdxlpool._files import read_text
    from sdxlpool._serving import check_port_free
    from sdxlpool.api.spec import pool_from_yaml
    from sdxlpool.local.model import resolve_model
    from sdxlpool.local.plan import Model, plan_pool
    from sdxlpool.worker.settings import default_cache_dir

    logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per readiness probe
    # 1. The pool.
    pool = pool_from_yaml(read_text(args.pool))
    name = pool.metadata.get("name", args.pool.stem)
    if args.refiner is not None and args.model is None:
        raise ConfigError("--refiner needs --model")
    if args.max_workers is not None and args.max_workers < 1:
        raise ConfigError(f"--max-workers: must be at least 1, got {args.max_workers}")
    for flag, port in (("--port", args.port), ("--worker-port", args.worker_port)):
        if not 1 <= port <= 65535:
            raise ConfigError(f"{flag}: must be a port number 1-65535, got {port}")
    if args.sim and args.model is not None:
        raise ConfigError("--sim runs simulated workers: it takes no --model")
    device, cuda_devices = ("sim", 0) if args.sim else _device(args.device)
    log_dir = args.log_dir or Path(tempfile.mkdtemp(prefix="sdxlpool-up-"))
    log_dir.mkdir(parents=True, exist_ok=True)

    # 2-3. The weights, then the processes.
    say(f"sdxlpool up: pool {name} from {args.pool}")
    if args.sim:
        model = Model(Path("sim"), None, tiny=False)
    else:
        model = resolve_model(pool.spec, cache_dir=default_cache_dir(), base=args.model, refiner=args.refiner)
    plan = plan_pool(pool.spec, model, device=device, cuda_devices=cuda_devices, cpu_count=os.cpu_count() or 1,
                     max_workers=args.max_workers, host=args.host, port=args.port, worker_port=args.worker_port,
                     backends_file=log_dir / "backends.yaml", sim=args.sim)
    if not plan.workers:
        raise ConfigError(f"{args.pool}: no replicas to run (every spec.gpus entry has replicas: 0)")

    # 4. Ports.
    for worker in plan.workers:
        _check_port(check_port_free, "127.0.0.1", worker.port, f"worker {worker.name}")
    _check_port(check_port_free, args.host, args.port, "the gateway")

    for note in plan.notes:
        say(f"  {note}")
    say(f"  starting {len(plan.starting)} workers and the gateway (logs: {log_dir})")
    try:
        asyncio.run(_run(plan, log_dir, pool.spec))
    finally:
        if args.log_dir is None:
            shutil.rmtree(log_dir, ignore_errors=True)
    say("sdxlpool up: stopped")
    return 0


async def _run(plan: Any, log_dir: Path, spec: Any) -> None:
    import asyncio
    import signal

    import yaml

    from sdxlpool.local.autoscale import LocalAutoscaler
    from sdxlpool.local.supervisor import Supervised, Supervisor
    from sdxlpool.scaling import policy_from_spec

    backends_file = log_dir / "backends.yaml"
    backends_file.write_text(yaml.safe_dump(plan.backends_file_entries(), sort_keys=False))
    supervised = {
        w.name: Supervised(w.name, w.argv, w.env, w.url + READY_PATH, log_dir / f"{w.name}.log",
                           describe=f"{w.name:<16} {w.gpu_model:<10} {w.provider}, {w.location}  {w.url}  [{w.device}]")
        for w in plan.workers
    }
    processes = [supervised[w.name] for w in plan.starting]
    gateway = plan.gateway
    gateway_process = Supervised("gateway", gateway.argv, gateway.env, gateway.url + HEALTH_PATH,
                                 log_dir / "gateway.log", describe=f"{'gateway':<16} {gateway.url}/")
    processes.append(gateway_process)
    supervisor = Supervisor(say)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, _stopper(supervisor))

    def all_ready() -> None:
        say(f"sdxlpool up: ready. Open {gateway.url}/ (A1111 API: {gateway.url}/sdapi/v1/txt2img). Ctrl-C stops.")

    policy = policy_from_spec(spec)
    if not any(model.autoscaled for model in policy.models):
        await supervisor.run(processes, all_ready)
        return
    autoscaler = LocalAutoscaler(policy, plan.workers, supervised, supervisor, gateway_url=gateway.url,
                                 backends_file=backends_file, say=say, max_running=plan.max_running)
    scaling = asyncio.create_task(autoscaler.run(gateway_process.ready))
    try:
        await supervisor.run(processes, all_ready)
    finally:
        scaling.cancel()
        await asyncio.gather(scaling, return_exceptions=True)


def _stopper(supervisor: Any) -> Any:
    def stop() -> None:
        if not supervisor.stopping.is_set():
            say("sdxlpool up: stopping ...")
        supervisor.stop()
    return stop


def _check_port(check: Any, host: str, port: int, what: str) -> None:
    try:
        check(host, port)
    except ConfigError as exc:
        raise ConfigError(f"{exc} (needed by {what}; is another `sdxlpool up` running? choose other ports with "
                          "--port / --worker-port)") from None


def _device(choice: str) -> tuple[str, int]:
    """("cpu", 0) or ("cuda", number of GPUs)."""
    if choice == "cpu":
        return "cpu", 0
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if choice == "cuda" and count == 0:
        raise ConfigError("--device cuda: no CUDA GPU is visible here (use --device cpu)")
    return ("cuda", count) if count else ("cpu", 0)


def say(line: str) -> None:
    print(line, flush=True)
