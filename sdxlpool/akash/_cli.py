"""`sdxlpool sdl POOL.yaml`: the pool as an Akash SDL (and, with --backends, the gateway's backends file).

Steps:
  1. read and validate the SDXLPool (the same YAML a platform team applies to a cluster)
  2. check the options: pricing denomination and rates, the URIs file, the Hugging Face token
  3. render (`sdl.py`, pure) and write the SDL to -o (else stdout) and the backends file to --backends;
     notes on what the tenant must still do go to stderr
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

__all__ = ["add_parser", "run_sdl"]

_HELP_EPILOG = """\
pricing: Akash leases are priced per block, in micro-units of a token. A GPU entry's pricePerHour
(USD per worker and hour) becomes the most the deployment bids per block:
  amount = ceil(pricePerHour * 1e6 / token_usd / blocks_per_hour)
with token_usd = 1 for usdc (Axelar USDC, denom ibc/170C67...F2F1) or --akt-usd for uakt, and
--blocks-per-hour 600 (~6 s blocks). It is a cap in a reverse auction: the lease costs the winning bid.

layouts: Akash leases every placement group from one provider, and services find each other by name
only inside a group. shared (default): one placement for every service, so one provider must offer
every GPU model; the pool's gateway (spec.gateway.enabled) is deployed too, reaches the workers as
http://worker-<gpu>:7860, and is the only service exposed (port 80). per-gpu: one placement per GPU
entry, each leased separately; workers are exposed on port 80 and the gateway runs elsewhere
(`sdxlpool gateway --backends FILE`) with the URIs from --uris, else placeholders under .akash.invalid.

weights: workers download spec.model.huggingFace with `hf download` when they start (about 14 GB for
SDXL base + refiner, into the lease's storage), then serve offline; model.volume cannot be used.
"""


def add_parser(subcommands: Any) -> argparse.ArgumentParser:
    sdl = subcommands.add_parser(
        "sdl", help="render an Akash SDL (version 2.0) deploying a pool's workers (and gateway)",
        description="Render an Akash SDL for an SDXLPool, for tenants who deploy on Akash without a cluster: "
        "one service, compute profile and deployment per GPU model entry (gpu units = gpusPerReplica, NVIDIA "
        "model as Akash names it, count = replicas, a bid cap from pricePerHour), running the worker container "
        "as the operator runs it. With --backends, also the gateway's backends file for those workers.",
        epilog=_HELP_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    sdl.add_argument("pool", type=Path, metavar="POOL.yaml", help="an SDXLPool manifest, e.g. examples/pool.yaml")
    sdl.add_argument("-o", "--output", type=Path, metavar="FILE", help="write the SDL here (default: stdout)")
    sdl.add_argument("--backends", type=Path, metavar="FILE", help="also write the gateway's backends file here")
    sdl.add_argument("--layout", choices=("shared", "per-gpu"), default="shared",
                     help="shared: one provider, gateway included (default); per-gpu: one placement per GPU model")
    sdl.add_argument("--uris", type=Path, metavar="FILE",
                     help="per-gpu: the workers' URIs once leased, YAML/JSON `service: uri`, or the JSON of "
                          "`provider-services lease-status` (services.<name>.uris)")
    sdl.add_argument("--price-denom", choices=("usdc", "uakt"), default="usdc",
                     help="token the bids are in (default usdc: USD-pegged, no exchange rate needed)")
    sdl.add_argument("--akt-usd", type=float, metavar="USD", help="with --price-denom uakt: the price of one AKT")
    sdl.add_argument("--blocks-per-hour", type=float, default=600.0, metavar="N",
                     help="Akash blocks per hour (default 600, ~6 s a block)")
    sdl.add_argument("--default-price-per-hour", type=float, default=1.0, metavar="USD",
                     help="bid for GPU entries without pricePerHour (default 1.00 USD/hour per worker)")
    sdl.add_argument("--gateway-price-per-hour", type=float, default=0.1, metavar="USD",
                     help="bid for each gateway instance (default 0.10 USD/hour)")
    sdl.add_argument("--hf-token-env", metavar="VAR",
                     help="put the Hugging Face token from this environment variable in the workers' env "
                          "(HF_TOKEN; an SDL has no secrets: the provider can read it)")
    sdl.add_argument("--signed-by", action="append", default=[], metavar="AKASH_ADDRESS",
                     help="only providers whose attributes this auditor signed (repeat: any of them)")
    sdl.add_argument("--attribute", action="append", default=[], metavar="KEY=VALUE",
                     help="a provider attribute every placement requires, e.g. host=akash (repeatable)")
    sdl.set_defaults(handler=run_sdl)
    return sdl


def run_sdl(args: argparse.Namespace) -> int:
    import sys

    import yaml

    from sdxlpool._files import read_text
    from sdxlpool._settings import variable_named
    from sdxlpool.akash.sdl import AkashError, PriceRule, render_backends, render_sdl
    from sdxlpool.api.spec import PoolSpecError, pool_from_yaml
    from sdxlpool.errors import ConfigError

    # 1. The pool.
    try:
        pool = pool_from_yaml(read_text(args.pool))
    except PoolSpecError as exc:
        raise ConfigError(f"{args.pool}: {'; '.join(exc.problems)}") from None

    # 2. The options.
    attributes = {}
    for item in args.attribute:
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise ConfigError(f"--attribute: expected KEY=VALUE, got {item!r}")
        attributes[key.strip()] = value.strip()
    if args.uris is not None and args.layout != "per-gpu":
        raise ConfigError("--uris: only with --layout per-gpu (in the shared layout workers are reached by name)")
    uris = _load_uris(args.uris) if args.uris is not None else None
    token = None
    if args.hf_token_env:
        token = variable_named(args.hf_token_env)  # a name given at run time: no Settings field can hold it
        if token is None:
            raise ConfigError(f"--hf-token-env: environment variable {args.hf_token_env} is not set")
    try:
        price = PriceRule(denom=args.price_denom, blocks_per_hour=args.blocks_per_hour, akt_usd=args.akt_usd,
                          default_usd_per_hour=args.default_price_per_hour,
                          gateway_usd_per_hour=args.gateway_price_per_hour)
        # 3. Render.
        sdl = render_sdl(pool, price, args.layout, hf_token=token, signed_by=tuple(args.signed_by),
                         attributes=attributes)
        backends = render_backends(pool, args.layout, uris) if args.backends is not None else None
    except AkashError as exc:
        raise ConfigError(f"{args.pool}: {exc}") from None

    text = yaml.safe_dump(sdl, sort_keys=False, width=2**31)
    header = f"# Akash SDL for SDXLPool {pool.metadata.get('name', '')}, rendered by `sdxlpool sdl`.\n---\n"
    _write(args.output, header + text) if args.output is not None else sys.stdout.write(header + text)
    notes = []
    spec = pool.spec
    hub = spec.model.hugging_face
    if hub is not None and hub.token_secret is not None and token is None:
        notes.append("spec.model.huggingFace.tokenSecret cannot be read on Akash; pass --hf-token-env VAR "
                     "if the repos are gated")
    if args.layout == "per-gpu" and spec.gateway.enabled:
        notes.append("layout per-gpu: the gateway is not in the SDL; run `sdxlpool gateway --backends FILE` "
                     "elsewhere")
    if backends is not None:
        placeholder = any(".akash.invalid" in b["url"] for b in backends["backends"])
        comment = ("# Gateway backends for the workers of the Akash SDL above (`sdxlpool sdl`).\n"
                   + ("# PLACEHOLDER URLs (*.akash.invalid): replace each with the worker's URI from "
                      "`provider-services lease-status`, or re-run with --uris.\n" if placeholder else ""))
        _write(args.backends, comment + yaml.safe_dump(backends, sort_keys=False))
        if placeholder:
            notes.append(f"{args.backends}: placeholder URLs; fill in the leased URIs (or use --uris)")
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    return 0


def _write(path: Path, text: str) -> None:
    from sdxlpool.errors import ConfigError

    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot write: {exc.strerror or exc}") from None


def _load_uris(path: Path) -> dict[str, str]:
    """``service: uri`` mapping, or lease-status JSON (``{"services": {name: {"uris": [...]}}}``)."""
    import yaml

    from sdxlpool._files import read_text
    from sdxlpool.errors import ConfigError

    try:
        data = yaml.safe_load(read_text(path))
    except yaml.YAMLError as exc:
        raise ConfigError(f"--uris {path}: not valid YAML/JSON: {' '.join(str(exc).split())}") from None
    if isinstance(data, dict) and isinstance(data.get("services"), dict):
        found = {}
        for name, status in data["services"].items():
            uris = status.get("uris") if isinstance(status, dict) else None
            if uris:
                found[str(name)] = str(uris[0])
        return found
    if not isinstance(data, dict) or not all(isinstance(v, str) and v.strip() for v in data.values()):
        raise ConfigError(f"--uris {path}: expected a mapping of service name to URI")
    return {str(k): v for k, v in data.items()}
