"""The `sdxlpool` command line.

Each sub-command is a small function taking parsed arguments. User errors (bad flags, missing
files, a busy port) print one line `sdxlpool <command>: error: ...` and exit 2, never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sdxlpool import __version__
from sdxlpool._args import (
    FAST_MODE_KEYS,
    Parser,
    add_fast_mode_flags,
    add_generation_flags,
    generation_given,
    run_handler,
)
from sdxlpool._files import read_text
from sdxlpool.api.pool_config import WORKER_DRAIN_SECONDS
from sdxlpool.errors import ConfigError

if TYPE_CHECKING:
    from sdxlpool.gateway.settings import GatewaySettings

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    parser = _build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    return run_handler(args, f"sdxlpool {args.command}")


def _build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="sdxlpool", description="Serve SDXL from a pool of mixed NVIDIA GPUs.")
    parser.add_argument("--version", action="version", version=f"sdxlpool {__version__}")
    commands = parser.add_subparsers(dest="command", parser_class=Parser, metavar="COMMAND")

    worker = commands.add_parser("worker", help="run an AUTOMATIC1111-compatible SDXL worker",
                                 description="Serve the A1111 REST API on diffusers SDXL, with Prometheus metrics. "
                                 "Flags override SDXLPOOL_* environment variables.")
    worker.add_argument("--model", action="append", type=Path, metavar="PATH",
                        help="SDXL base: a diffusers folder or a single .safetensors file (repeat to load several; "
                             "the first is current)")
    worker.add_argument("--refiner", type=Path, metavar="PATH", help="SDXL refiner checkpoint")
    worker.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    worker.add_argument("--port", type=int, help="port (default 7860)")
    worker.add_argument("--device", help="auto | cpu | cuda | cuda:N (default auto)")
    worker.add_argument("--dtype", choices=["auto", "fp16", "bf16", "fp32"], help="weights dtype (auto: fp16 on CUDA)")
    worker.add_argument("--gpu-model", help="GPU model label (default: the CUDA device's name, or cpu)")
    worker.add_argument("--provider", help="provider name shown to users")
    worker.add_argument("--location", help="location shown to users")
    worker.add_argument("--worker-name", help="this worker's name (default host:port)")
    worker.add_argument("--max-queue", type=int, help="requests that may wait behind the running one; more get 503")
    worker.add_argument("--batch-max", type=int, metavar="N",
                        help="run up to N queued same-shape txt2img requests as one model batch, each with its own "
                             "seeds and prompts (default 1: off)")
    worker.add_argument("--batch-wait-ms", type=float, metavar="MS",
                        help="with --batch-max: how long the oldest request may wait for partners when fewer are "
                             "queued (default 0: batch only what is already waiting)")
    worker.add_argument("--max-body-bytes", type=int,
                        help="largest request body accepted; larger get 413 (default 1048576)")
    add_generation_flags(worker)
    worker.add_argument("--lora-dir", type=Path, metavar="DIR",
                        help="LoRA .safetensors files (kohya/A1111 format) usable as <lora:name:weight> in prompts")
    worker.add_argument("--lora-cache-mb", type=int, metavar="MB",
                        help="memory the loaded LoRAs may hold; the least recently used are unloaded (default 2048)")
    worker.add_argument("--embeddings-dir", type=Path, metavar="DIR",
                        help="SDXL textual-inversion embeddings, used when their name appears in a prompt")
    worker.add_argument("--vae-dir", type=Path, metavar="DIR", help="VAE files selectable by the sd_vae option")
    worker.add_argument("--upscaler-dir", type=Path, metavar="DIR",
                        help="upscaler models (ESRGAN, Real-ESRGAN, SwinIR, ... .pth/.safetensors) for hires fix and "
                             "extras, loaded with spandrel (pip install 'sdxlpool[upscalers]')")
    worker.add_argument("--styles", type=Path, metavar="FILE", help="A1111 styles.csv applied by a request's styles")
    worker.add_argument("--strict", action="store_const", const=True,
                        help="refuse (422) a request with fields or prompt constructs that would not be applied, "
                             "instead of listing them in info.sdxlpool.ignored (per request: X-SDXL-Strict: 1 or 0)")
    worker.add_argument("--no-warmup", dest="warmup", action="store_const", const=False,
                        help="skip the short start-up job that measures step time")
    fast = worker.add_argument_group("the exact fast path (default: on with CUDA, off on the CPU)")
    fast.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                      help="channels_last, fused QKV, the fastest attention and torch.compile of the UNets and VAE "
                           "decode at the compiled shapes; other shapes run eager")
    fast.add_argument("--compile-mode", choices=["auto", "default", "reduce-overhead", "max-autotune",
                                                 "max-autotune-no-cudagraphs"],
                      help="torch.compile mode (auto: max-autotune on CUDA, default on the CPU)")
    fast.add_argument("--compile-backend", choices=["inductor", "aot_eager", "eager"],
                      help="torch.compile backend (default inductor; the others make no kernels: tests, debugging)")
    fast.add_argument("--compile-shapes", metavar="WxH,...",
                      help="sizes compiled at start-up, the first before ready (auto: the default size; on CUDA also "
                           "1024x1024,1152x896,896x1152,1216x832,832x1216,1344x768,768x1344)")
    fast.add_argument("--compile-batch-sizes", metavar="N,...", help="batch sizes compiled at each size (default 1)")
    fast.add_argument("--compile-cache-dir", type=Path, metavar="DIR",
                      help="compiled kernels kept between starts (default $SDXLPOOL_CACHE/compile)")
    fast.add_argument("--vae-dtype", choices=["fp32", "bf16"], help="VAE dtype: fp32 (exact, default) or bf16")
    add_fast_mode_flags(worker)
    worker.add_argument("--drain-seconds", type=float, metavar="S",
                        help="on SIGTERM: refuse new connections, finish the running and queued jobs for up to S "
                             f"seconds, then exit (default {WORKER_DRAIN_SECONDS:g})")
    worker.add_argument("--log-prompts", action="store_const", const=True,
                        help="log each job's prompts at INFO (default: prompts are never logged)")
    worker.set_defaults(handler=_worker)

    gateway = commands.add_parser(
        "gateway", help="run the gateway: one A1111 endpoint routing to the pool's workers",
        description="Route each txt2img to the worker that will finish it soonest among the allowed GPU models, "
        "on live /metrics; fail over on errors. Flags override SDXLPOOL_GATEWAY_* environment variables.")
    gateway.add_argument("--backends", type=Path, metavar="FILE", help="static backends file (YAML), reloaded on change")
    gateway.add_argument("--kubernetes", action="store_true", default=None,
                         help="discover the pool's ready worker pods (with --namespace and --pool)")
    gateway.add_argument("--namespace", help="the SDXLPool's namespace (Kubernetes discovery)")
    gateway.add_argument("--pool", help="the SDXLPool's name (Kubernetes discovery)")
    gateway.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    gateway.add_argument("--port", type=int, help="port (default 8080)")
    gateway.add_argument("--scrape-interval", type=float, metavar="S", help="seconds between metric scrapes (0.1)")
    gateway.add_argument("--peer-port", type=int, metavar="PORT",
                         help="share dispatches with the other gateway replicas: the UDP port to listen on "
                              "(default: not shared)")
    gateway.add_argument("--peers", metavar="HOST:PORT,...",
                         help="the other gateway replicas' --peer-port addresses, comma-separated (with "
                              "--kubernetes, the pool's other ready gateway pods are added)")
    gateway.add_argument("--max-attempts", type=int, metavar="N", help="workers tried per request (3)")
    gateway.add_argument("--progress-deadline", type=float, metavar="S",
                         help="a worker with no progress this long is hung: fail over (30)")
    gateway.add_argument("--routing", type=Path, metavar="FILE",
                         help="routing profile (YAML: filters, scorers, picker); default: soonest completion")
    gateway.add_argument("--cost-weight", type=float, metavar="W",
                         help="prefer cheaper GPUs (backends' pricePerHour) with this weight; 0 = off (default)")
    gateway.add_argument("--rate-limit", type=float, metavar="N",
                         help="requests per minute per client address or API key (default 0: no limit)")
    gateway.add_argument("--rate-limit-burst", type=int, metavar="N",
                         help="requests a client may send at once before --rate-limit applies (default 10)")
    gateway.add_argument("--api-keys", type=Path, metavar="FILE",
                         help="require API keys: YAML of hashed keys with their rates and priority "
                              "(see `sdxlpool api-key`), re-read on change")
    gateway.add_argument("--max-body-bytes", type=int, metavar="N",
                         help="largest request body (and WebSocket message) accepted; larger get 413 (default 1048576)")
    gateway.add_argument("--cors-origin", action="append", dest="cors_origins", metavar="ORIGIN",
                         help="let browser pages from this origin call the API (repeat for several; default: none, "
                              "CORS closed)")
    gateway.add_argument("--strict", action="store_const", const=True,
                         help="refuse (422) a request with fields or prompt constructs that would not be applied "
                              "(per request: X-SDXL-Strict: 1 or 0; passed on to the worker)")
    gateway.add_argument("--pool-gpus", metavar="GPUS",
                         help="the pool's GPU models, e.g. A100,H100: a request allowing one with no worker ready "
                              "waits (up to --cold-start-deadline) while the autoscaler starts one")
    gateway.add_argument("--latency-target", type=float, metavar="S",
                         help="the pool's p95 latency target in seconds, exported as a metric (default: none)")
    gateway.add_argument("--cold-start-deadline", type=float, metavar="S",
                         help="longest a request waits for a worker of a GPU model with none ready (600)")
    gateway.add_argument("--demand-window", type=float, metavar="S",
                         help="seconds GET /v1/demand averages arrival rates over (60)")
    add_generation_flags(gateway)
    gateway.set_defaults(handler=_gateway)

    api_key = commands.add_parser(
        "api-key", help="print a new gateway API key and its entry for the --api-keys file",
        description="Print a new random API key (give it to the client, once) and, on stdout, the YAML "
        "entry for the gateway's --api-keys file. Only the key's SHA-256 goes in the file.")
    api_key.add_argument("name", help="who the key is for (rate limits and metrics use this name)")
    api_key.add_argument("--rate-per-minute", type=float, metavar="N", help="this key's own rate limit")
    api_key.add_argument("--burst", type=int, metavar="N", help="this key's burst (with --rate-per-minute)")
    api_key.add_argument("--priority", type=int, metavar="N",
                         help="higher goes first in the gateway queue when the pool is saturated (default 0)")
    api_key.set_defaults(handler=_api_key)

    from sdxlpool.sim import add_parser as add_sim_worker

    add_sim_worker(commands)

    from sdxlpool.local import add_parser as add_up

    add_up(commands)

    from sdxlpool.akash import add_parser as add_sdl

    add_sdl(commands)

    from sdxlpool.client import add_parser as add_generate

    add_generate(commands)

    operator = commands.add_parser(
        "operator", help="run the kopf operator that turns SDXLPools into GPU worker Deployments",
        description="Reconcile SDXLPool objects (sdxlpool.dev/v1alpha1) into one Deployment per GPU model, "
        "a worker Service and the pool's gateway. Uses in-cluster credentials, else the kubeconfig.")
    operator.add_argument("--namespace", action="append", metavar="NS",
                          help="watch only this namespace (repeat for several; default: all namespaces)")
    operator.add_argument("--kubeconfig", type=Path,
                          help="kubeconfig file (default: $SDXLPOOL_KUBECONFIG, $KUBECONFIG, else in-cluster)")
    operator.add_argument("--peering", metavar="NAME",
                          help="kopf peering object shared by the operator's replicas (default sdxlpool)")
    operator.add_argument("--priority", type=int, metavar="N",
                          help="peering priority: the highest live replica works, others stand by "
                               "(default: random, so replicas never tie)")
    operator.add_argument("--standalone", action="store_true", default=None, help="no peering: for a single replica")
    operator.add_argument("--liveness", metavar="URL", help="serve kopf's liveness probe, e.g. http://0.0.0.0:8080/healthz")
    operator.set_defaults(handler=_operator)

    render = commands.add_parser(
        "render", help="print the objects the operator would create for a pool",
        description="Print, as a YAML stream, the Kubernetes objects the operator creates for an SDXLPool "
        "(owner references aside). Placement uses the GPU labels of the nodes in NODES.yaml; without it no "
        "node matches and each GPU model gets its canonical labels.")
    render.add_argument("pool", type=Path, metavar="POOL.yaml", help="an SDXLPool manifest")
    render.add_argument("--nodes", type=Path, metavar="NODES.yaml",
                        help="a v1 NodeList (or List, as `kubectl get nodes -o yaml` prints), or a list of Nodes")
    render.set_defaults(handler=_render)

    tiny = commands.add_parser("tiny-model", help="write a tiny random-weight SDXL base and refiner",
                               description="Write DIR/base and DIR/refiner: tiny random-weight SDXL pipelines "
                               "in diffusers layout for tests and demos (no network).")
    tiny.add_argument("dir", type=Path, metavar="DIR")
    tiny.add_argument("--single-file", action="store_true",
                      help="also write DIR/base.safetensors and DIR/refiner.safetensors (A1111 single-file layout)")
    tiny.set_defaults(handler=_tiny_model)
    return parser


def _worker(args: argparse.Namespace) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # weights are local; a worker never calls a hub
    from pydantic import ValidationError
    from pydantic_settings import SettingsError

    from sdxlpool._settings import settings_error
    from sdxlpool.worker.settings import WorkerSettings

    keys = ("host", "port", "device", "dtype", "gpu_model", "provider", "location", "worker_name", "max_queue",
            "batch_max", "batch_wait_ms",
            "max_body_bytes", "warmup", "refiner", "log_prompts", "lora_dir", "lora_cache_mb", "embeddings_dir",
            "vae_dir", "upscaler_dir", "styles", "strict", "drain_seconds", "compile", "compile_mode",
            "compile_backend", "compile_shapes", "compile_batch_sizes", "compile_cache_dir", "vae_dtype",
            *FAST_MODE_KEYS)
    given = {k: getattr(args, k) for k in keys if getattr(args, k) is not None} | generation_given(args)
    if args.model:
        given["models"] = args.model
    try:
        settings = WorkerSettings(**given)
    except ValidationError as exc:
        if exc.errors()[0]["type"] == "missing":
            raise ConfigError("--model: is required (an SDXL base: diffusers folder or .safetensors file)") from None
        raise settings_error(exc, {"models": "--model"}) from None
    except SettingsError as exc:  # an SDXLPOOL_* variable that does not parse
        raise settings_error(exc) from None
    _check_model_paths(settings)

    from sdxlpool._serving import serve
    from sdxlpool.worker.app import create_app

    return serve("worker", lambda on_fatal: create_app(settings, on_fatal=on_fatal),
                 host=settings.host, port=settings.port, max_message_bytes=settings.max_body_bytes,
                 drain_seconds=settings.drain_seconds)


def _check_model_paths(settings: object) -> None:
    """Fail fast, before the server starts, on paths that cannot be an SDXL checkpoint."""
    from sdxlpool.worker.checkpoints import probe_kind

    def kind_of(flag: str, path: Path) -> str:
        try:
            return probe_kind(path)
        except ConfigError as exc:
            raise ConfigError(f"{flag}: {exc}") from None

    for path in settings.models:  # type: ignore[attr-defined]
        if kind_of("--model", path) != "base":
            raise ConfigError(f"--model {path}: this is an SDXL refiner; pass it with --refiner")
    refiner = settings.refiner  # type: ignore[attr-defined]
    if refiner is not None and kind_of("--refiner", refiner) != "refiner":
        raise ConfigError(f"--refiner {refiner}: this is an SDXL base; pass it with --model")


def _gateway(args: argparse.Namespace) -> int:
    from pydantic import ValidationError
    from pydantic_settings import SettingsError

    from sdxlpool._memory import keep_large_buffers
    from sdxlpool._serving import check_port_free, serve
    from sdxlpool._settings import settings_error
    from sdxlpool.gateway.api_keys import load_api_keys
    from sdxlpool.gateway.discovery.static import load_backends_file
    from sdxlpool.gateway.routing_file import load_routing_file
    from sdxlpool.gateway.settings import GatewaySettings

    given = {key: value for key, value in {
        "backends_file": args.backends, "kubernetes": args.kubernetes, "namespace": args.namespace,
        "pool": args.pool, "host": args.host, "port": args.port,
        "scrape_interval": args.scrape_interval, "peer_port": args.peer_port, "peers": args.peers,
        "max_attempts": args.max_attempts,
        "progress_deadline": args.progress_deadline, "routing_file": args.routing, "cost_weight": args.cost_weight,
        "rate_limit_per_minute": args.rate_limit, "rate_limit_burst": args.rate_limit_burst,
        "api_keys_file": args.api_keys, "max_body_bytes": args.max_body_bytes, "cors_origins": args.cors_origins,
        "strict": args.strict, "pool_gpus": args.pool_gpus, "latency_target": args.latency_target,
        "cold_start_deadline": args.cold_start_deadline, "demand_window": args.demand_window,
    }.items() if value is not None} | generation_given(args)
    try:
        settings = GatewaySettings(**given)
    except (ValidationError, SettingsError) as exc:  # SettingsError: an SDXLPOOL_GATEWAY_* that does not parse
        raise settings_error(exc, {"backends_file": "--backends", "routing_file": "--routing",
                                    "api_keys_file": "--api-keys", "rate_limit_per_minute": "--rate-limit"}) from None
    # httpx logs every request at INFO: a line per scrape (10 a second per worker) buries the rest.
    logging.getLogger("httpx").setLevel(max(logging.WARNING, logging.getLogger().getEffectiveLevel()))
    if settings.backends_file is not None:
        load_backends_file(settings.backends_file)  # a bad file is a one-line error now, not at the first request
    if settings.routing_file is not None:
        load_routing_file(settings.routing_file)
    if settings.api_keys_file is not None:
        load_api_keys(settings.api_keys_file)
    if settings.peer_port is not None:  # a busy one is a one-line error now, not a failed start-up
        check_port_free(settings.host, settings.peer_port, udp=True)
    keep_large_buffers()  # every answer passed on is megabytes: keep them off fresh mmaps (_memory.py)
    return serve("gateway", lambda _on_fatal: _gateway_app(settings), host=settings.host, port=settings.port,
                 max_message_bytes=settings.max_body_bytes)


def _gateway_app(settings: GatewaySettings) -> Any:
    """The gateway's app, imported only once the flags, files and port are checked (FastAPI, aiohttp and
    the routing take about a second to import: a user error above is answered in a third of the time)."""
    from sdxlpool.gateway.app import create_app

    return create_app(settings)


def _api_key(args: argparse.Namespace) -> int:
    import yaml

    from sdxlpool.gateway.api_keys import hash_key, new_key

    if not args.name.strip():
        raise ConfigError("NAME: must not be empty")
    for flag, value, low in (("--rate-per-minute", args.rate_per_minute, 0), ("--burst", args.burst, 1)):
        if value is not None and value < low:
            raise ConfigError(f"{flag}: must be at least {low}, got {value}")
    key = new_key()
    entry: dict[str, object] = {"name": args.name.strip(), "sha256": hash_key(key)}
    for field, value in (("ratePerMinute", args.rate_per_minute), ("burst", args.burst), ("priority", args.priority)):
        if value is not None:
            entry[field] = value
    print(f"# API key for {entry['name']} (shown once; the file keeps only its SHA-256):", file=sys.stderr)
    print(f"#   {key}", file=sys.stderr)
    print(yaml.safe_dump([entry], sort_keys=False), end="")
    return 0


def _operator(args: argparse.Namespace) -> int:
    import asyncio

    import kubernetes
    from pydantic import ValidationError
    from pydantic_settings import SettingsError

    from sdxlpool._kube import connect
    from sdxlpool._settings import settings_error
    from sdxlpool.operator.handlers import run_operator
    from sdxlpool.operator.settings import OperatorSettings

    if args.kubeconfig is not None and not args.kubeconfig.is_file():
        raise ConfigError(f"--kubeconfig {args.kubeconfig}: no such file")
    given = {key: value for key, value in {
        "namespaces": args.namespace, "kubeconfig": str(args.kubeconfig) if args.kubeconfig else None,
        "peering": args.peering, "priority": args.priority, "standalone": args.standalone or None,
        "liveness": args.liveness,
    }.items() if value is not None}
    try:
        settings = OperatorSettings(**given)
    except (ValidationError, SettingsError) as exc:  # SettingsError: an SDXLPOOL_OPERATOR_* that does not parse
        raise settings_error(exc, {"namespaces": "--namespace", **{
            field: f"$SDXLPOOL_OPERATOR_{field.upper()}"
            for field in ("resync_seconds", "workers", "retry_seconds", "retry_max_seconds", "autoscale_seconds",
                          "demand_url", "demand_timeout_seconds")}}) from None
    try:
        connect(settings.kubeconfig)
    except (kubernetes.config.ConfigException, OSError) as exc:
        raise ConfigError(f"no Kubernetes credentials: not in a pod, and no usable kubeconfig ({exc})") from None
    asyncio.run(run_operator(settings))
    return 0


def _render(args: argparse.Namespace) -> int:
    import yaml

    from sdxlpool.api.spec import PoolSpecError, pool_from_yaml
    from sdxlpool.operator.desired import desired_state

    try:
        pool = pool_from_yaml(read_text(args.pool))
        nodes = _load_nodes(args.nodes) if args.nodes is not None else []
        state = desired_state(pool, nodes)
    except PoolSpecError as exc:
        raise ConfigError(f"{args.pool}: {'; '.join(exc.problems)}") from None

    class Dumper(yaml.SafeDumper):
        def ignore_aliases(self, data: object) -> bool:
            return True

    placements = {p.deployment: p for p in state.placements.values()}
    for child in state.children:
        placement = placements.get(child["metadata"]["name"]) if child["kind"] == "Deployment" else None
        if placement is not None:
            print(f"# {placement.model}: {placement.reason}: {placement.message}")
        print(yaml.dump(child, Dumper=Dumper, sort_keys=False, explicit_start=True, width=110), end="")
    return 0


def _load_nodes(path: Path) -> list[dict]:
    """Nodes from a NodeList/List, a YAML list of Nodes, or a stream of Node documents."""
    import yaml

    try:
        documents = [doc for doc in yaml.safe_load_all(read_text(path)) if doc is not None]
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: YAML: {' '.join(str(exc).split())}") from None
    if len(documents) == 1 and isinstance(documents[0], dict) and documents[0].get("kind") in ("NodeList", "List"):
        items, where = documents[0].get("items") or [], "items"
    elif len(documents) == 1 and isinstance(documents[0], list):
        items, where = documents[0], ""
    else:
        items, where = documents, "document "
    for index, node in enumerate(items):
        place = f"{where}[{index}]" if where != "document " else f"document {index + 1}"
        if not isinstance(node, dict) or node.get("kind", "Node") != "Node":
            got = node.get("kind") if isinstance(node, dict) else type(node).__name__
            raise ConfigError(f"{path}: {place}: expected a v1 Node, got {got}")
        if not isinstance(node.get("metadata"), dict) or not node["metadata"].get("name"):
            raise ConfigError(f"{path}: {place}: a Node needs metadata.name")
        if not isinstance(node["metadata"].get("labels") or {}, dict):
            raise ConfigError(f"{path}: {place}: metadata.labels must be a mapping")
    return items


def _tiny_model(args: argparse.Namespace) -> int:
    from sdxlpool.worker.checkpoints import quiet_library_noise
    from sdxlpool.worker.tiny import write_tiny_model

    quiet_library_noise()
    base, refiner = write_tiny_model(args.dir)
    print(f"base:    {base}")
    print(f"refiner: {refiner}")
    if args.single_file:
        from sdxlpool.worker.single_file import write_single_file

        for folder in (base, refiner):
            print(f"single file: {write_single_file(folder, folder.with_suffix('.safetensors'))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
