"""An SDXLPool as an Akash SDL (version "2.0") and the gateway backends file that goes with it.

Pure: nothing here reads a file, the clock or the network. What each pool field becomes:

    spec.gpus[i]              -> service ``worker-<gpu>`` + compute profile ``worker-<gpu>``
        .model                -> gpu.attributes.vendor.nvidia[0].model (``akash_model_name``: a100,
                                 rtx3090, ...), ``ram`` when the name states memory (80gb -> 80Gi),
                                 ``interface`` when it states PCIe or SXM
        .gpusPerReplica       -> gpu.units
        .replicas             -> deployment count (entries with 0 replicas are left out)
        .resources            -> cpu.units / memory.size / storage[0].size (limits, else requests,
                                 else 4 CPUs, 24Gi, 60Gi)
        .pricePerHour         -> placement pricing: the most the tenant bids per block (see `PriceRule`)
    spec.image, defaults,     -> the worker container run as the operator runs it (the same flags,
    limits, model                from sdxlpool.api.pool_config), preceded by ``hf download`` of the
                                 weights (Akash has no init containers or PVCs, so the service's
                                 command downloads first, then ``exec``s the worker offline)
    spec.loras, .embeddings,  -> ``hf download REPO FILE`` of each into ``/tmp/fine-tunes/<kind>`` before
      .vaes, .styles             the worker starts, which gets ``--lora-dir`` etc. as in a pod (files on
                                 a volume cannot be had on a lease: an error naming the entry)
    spec.gateway              -> service ``gateway`` (layout ``shared`` only), exposed globally on 80,
                                 run with the same flags as the operator's gateway; workers are then
                                 exposed only to it, as ``http://worker-<gpu>:7860``

Layouts (Akash leases each placement group from one provider, and service names resolve only
inside a group, i.e. inside one provider's lease):

- ``shared``: one placement ``akash`` for every service, so one provider must offer every GPU model
  of the pool. The gateway (when ``spec.gateway.enabled``) reaches workers by service name, so the
  backends file is fully known before deploying and is baked into the gateway service.
- ``per-gpu``: one placement per GPU entry, each leased from whichever provider bids best; workers
  are exposed globally and the gateway runs elsewhere (``sdxlpool gateway --backends FILE``). Their
  URIs are known only after the leases exist: pass them (``service: uri`` from ``provider-services
  lease-status``) or get placeholders under the reserved ``.invalid`` domain to replace.
"""

from __future__ import annotations

import json
import math
import posixpath
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from sdxlpool.api.gpu import akash_model_name
from sdxlpool.api.pool_config import (
    FINE_TUNE_KINDS,
    backend_entry,
    fine_tune_label,
    gateway_args,
    hf_download_command,
    hf_file_download_command,
    pod_worker_args,
)
from sdxlpool.api.ports import GATEWAY_PORT, WORKER_PORT
from sdxlpool.api.spec import GpuEntry, ResourceAmounts, SDXLPool, SDXLPoolSpec
from sdxlpool.errors import ConfigError

__all__ = [
    "DENOMS",
    "GATEWAY_SERVICE",
    "PLACEHOLDER_DOMAIN",
    "AkashError",
    "Layout",
    "PriceRule",
    "render_backends",
    "render_sdl",
    "worker_service_name",
]

GATEWAY_SERVICE = "gateway"
PLACEHOLDER_DOMAIN = "akash.invalid"
SHARED_PLACEMENT = "akash"
USDC_DENOM = "ibc/170C677610AC31DF0904FFE09CD3B5C657492170E7E52372E48756B71E56F2F1"
DENOMS = {"usdc": USDC_DENOM, "uakt": "uakt"}
"""Pricing denominations by short name: Axelar USDC (its IBC denom) and micro-AKT."""

# What a worker gets when its entry sets no resources: SDXL base + refiner load comfortably in 24Gi
# of RAM; 60Gi of disk holds both downloads (about 14 GB) with room for the image layers.
DEFAULT_CPU = "4"
DEFAULT_MEMORY = "24Gi"
DEFAULT_STORAGE = "60Gi"
GATEWAY_CPU, GATEWAY_MEMORY, GATEWAY_STORAGE = "1", "2Gi", "2Gi"

MODELS_DIR = "/tmp/models"  # the container's own (ephemeral) disk: no volumes on a plain lease
FINE_TUNES_DIR = "/tmp/fine-tunes"
BACKENDS_PATH = "/tmp/sdxlpool/backends.yaml"
Layout = Literal["shared", "per-gpu"]


class AkashError(ConfigError, ValueError):
    """A pool (or option) that cannot be expressed as an Akash deployment; the message says why."""


@dataclass(frozen=True)
class PriceRule:
    """USD per hour -> the bid cap Akash wants: an amount of ``denom`` per block.

    ``amount = ceil(usd_per_hour * 1e6 / token_usd / blocks_per_hour)``: micro-units (uusdc,
    uakt) of the token, spread over the blocks of an hour (about 600 at ~6 s a block). USDC is
    worth one dollar; AKT needs ``akt_usd``. Entries without ``pricePerHour`` bid
    ``default_usd_per_hour``; the gateway bids ``gateway_usd_per_hour``. Amounts are caps in a
    reverse auction: the lease costs the winning bid, at most this.
    """

    denom: str = "usdc"
    blocks_per_hour: float = 600.0
    akt_usd: float | None = None
    default_usd_per_hour: float = 1.0
    gateway_usd_per_hour: float = 0.1

    def __post_init__(self) -> None:
        if self.denom not in DENOMS:
            raise AkashError(f"denom must be one of {', '.join(DENOMS)}, got {self.denom!r}")
        if not (self.blocks_per_hour > 0 and math.isfinite(self.blocks_per_hour)):
            raise AkashError(f"blocks per hour must be a positive number, got {self.blocks_per_hour}")
        if self.denom == "uakt" and not (self.akt_usd and self.akt_usd > 0 and math.isfinite(self.akt_usd)):
            raise AkashError("pricing in uakt needs the AKT price in USD (--akt-usd), e.g. --akt-usd 2.5")
        for name in ("default_usd_per_hour", "gateway_usd_per_hour"):
            value = getattr(self, name)
            if not (value >= 0 and math.isfinite(value)):
                raise AkashError(f"{name.replace('_', ' ')} must be a number >= 0, got {value}")

    def amount(self, usd_per_hour: float) -> int:
        """Bid cap per block, in micro-units of the denom; at least 1."""
        token_usd = 1.0 if self.denom == "usdc" else float(self.akt_usd or 1.0)
        return max(1, math.ceil(usd_per_hour * 1_000_000 / token_usd / self.blocks_per_hour - 1e-9))

    def pricing(self, usd_per_hour: float) -> dict[str, Any]:
        return {"denom": DENOMS[self.denom], "amount": self.amount(usd_per_hour)}


def worker_service_name(entry: GpuEntry) -> str:
    """``worker-<gpu slug>`` as a DNS label: ``a100-80gb`` -> ``worker-a100-80gb``."""
    slug = "".join(c if c.isalnum() else "-" for c in entry.slug.lower()).strip("-")
    return f"worker-{slug}"


def _quantity(amounts: tuple[ResourceAmounts, ResourceAmounts], field: str, default: str) -> str:
    limits, requests = amounts
    return getattr(limits, field) or getattr(requests, field) or default


def _cpu_units(text: str) -> float | int:
    """Kubernetes CPU ("4", "500m", "1.5") as the number SDL's ``cpu.units`` takes."""
    value = float(text[:-1]) / 1000 if text.endswith("m") else float(text)
    return int(value) if value.is_integer() else value


def _gpu_attributes(entry: GpuEntry) -> dict[str, Any]:
    gpu = entry.gpu
    if gpu.mig:
        raise AkashError(f"{entry.model}: Akash providers do not offer MIG slices ({gpu.mig})")
    model: dict[str, str] = {"model": akash_model_name(entry.model)}
    if gpu.memory_gb is not None:
        model["ram"] = f"{gpu.memory_gb}Gi"
    if gpu.form_factor == "pcie":
        model["interface"] = "pcie"
    elif gpu.form_factor and gpu.form_factor.startswith("sxm"):
        model["interface"] = "sxm"
    return {"vendor": {"nvidia": [model]}}


def _worker_script(spec: SDXLPoolSpec, entry: GpuEntry) -> str:
    """``hf download`` base (and refiner), then ``exec sdxlpool worker`` with the operator's flags."""
    hub = spec.model.hugging_face
    if hub is None:
        raise AkashError(
            "spec.model.volume: an Akash lease has no PersistentVolumeClaims to read weights from; "
            "use model.huggingFace (the workers download the weights when they start)"
        )
    steps = [shlex.join(hf_download_command(repo, hub.revision, MODELS_DIR))
             for repo in (hub.repo, hub.refiner_repo) if repo is not None]
    for kind in FINE_TUNE_KINDS:
        for index, source in enumerate(spec.fine_tunes(kind.field)):
            if source.volume is not None:
                raise AkashError(f"spec.{fine_tune_label(kind, index)}.volume: an Akash lease has no PersistentVolumeClaims; "
                                 "use huggingFace (the workers download the file when they start)")
            steps.append(shlex.join(hf_file_download_command(kind, source, FINE_TUNES_DIR)))
    worker = ["exec", "env", "HF_HUB_OFFLINE=1", "sdxlpool", *pod_worker_args(spec, entry, port=WORKER_PORT,
                                                                             models_dir=MODELS_DIR,
                                                                             fine_tunes_dir=FINE_TUNES_DIR)]
    steps.append(shlex.join(worker))
    return " && ".join(steps)


def _worker_service(spec: SDXLPoolSpec, entry: GpuEntry, *, to_gateway: bool, hf_token: str | None) -> dict[str, Any]:
    env = [
        "HOME=/tmp",
        "XDG_CACHE_HOME=/tmp/.cache",
        "HF_HOME=/tmp/huggingface",
        "HF_HUB_DISABLE_TELEMETRY=1",
        "SDXLPOOL_CACHE=/tmp/sdxlpool",
    ]
    if hf_token:
        env.append(f"HF_TOKEN={hf_token}")
    expose: dict[str, Any] = {"port": WORKER_PORT}
    if to_gateway:
        expose["to"] = [{"service": GATEWAY_SERVICE}]
    else:
        expose.update({"as": 80, "to": [{"global": True}]})
    return {
        "image": spec.image,
        "command": ["sh", "-c"],
        "args": [_worker_script(spec, entry)],
        "env": env,
        "expose": [expose],
    }


def _worker_compute(entry: GpuEntry) -> dict[str, Any]:
    amounts = (entry.resources.limits, entry.resources.requests)
    return {
        "resources": {
            "cpu": {"units": _cpu_units(_quantity(amounts, "cpu", DEFAULT_CPU))},
            "memory": {"size": _quantity(amounts, "memory", DEFAULT_MEMORY)},
            "storage": [{"size": _quantity(amounts, "ephemeral_storage", DEFAULT_STORAGE)}],
            "gpu": {"units": entry.gpus_per_replica, "attributes": _gpu_attributes(entry)},
        }
    }


def _entries(spec: SDXLPoolSpec) -> list[GpuEntry]:
    entries = [entry for entry in spec.gpus if entry.replicas > 0]
    if not entries:
        raise AkashError("every spec.gpus entry has 0 replicas: nothing to deploy")
    return entries


def _has_gateway(spec: SDXLPoolSpec, layout: Layout) -> bool:
    return layout == "shared" and spec.gateway.enabled and spec.gateway.replicas > 0


def render_backends(
    pool: SDXLPool, layout: Layout = "shared", uris: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """The gateway's backends file: one backend per GPU entry, named after its SDL service.

    With the in-SDL gateway (layout ``shared``) a worker is ``http://<service>:7860``, the name the
    provider's cluster DNS gives it inside the lease. Otherwise it is the URI the provider assigned
    (``uris[service]``, with or without a scheme) or ``http://<service>.akash.invalid`` to replace.
    """
    uris = dict(uris or {})
    spec = pool.spec
    internal = _has_gateway(spec, layout)
    backends = []
    for entry in _entries(spec):
        service = worker_service_name(entry)
        if internal:
            url = f"http://{service}:{WORKER_PORT}"
        elif service in uris:
            uri = str(uris.pop(service)).strip().rstrip("/")
            url = uri if "://" in uri else f"http://{uri}"
        else:
            url = f"http://{service}.{PLACEHOLDER_DOMAIN}"
        backends.append(backend_entry(entry, service, url))
    if uris and not internal:
        raise AkashError(f"URIs given for services this pool has no worker for: {', '.join(sorted(uris))}")
    return {"backends": backends}


def _gateway_service(pool: SDXLPool) -> dict[str, Any]:
    spec = pool.spec
    backends = json.dumps(render_backends(pool, "shared"), separators=(",", ":"))
    gateway = ["exec", "sdxlpool", *gateway_args(spec, discovery=["--backends", BACKENDS_PATH], host="0.0.0.0",
                                                 port=GATEWAY_PORT)]
    script = (
        f"mkdir -p {posixpath.dirname(BACKENDS_PATH)} && "
        f'printf "%s" "$SDXLPOOL_BACKENDS_JSON" > {BACKENDS_PATH} && {shlex.join(gateway)}'
    )
    env = ["HOME=/tmp", "XDG_CACHE_HOME=/tmp/.cache", f"SDXLPOOL_BACKENDS_JSON={backends}"]
    return {
        "image": spec.gateway.image or spec.image,
        "command": ["sh", "-c"],
        "args": [script],
        "env": env,
        "expose": [{"port": GATEWAY_PORT, "as": 80, "to": [{"global": True}]}],
    }


def render_sdl(
    pool: SDXLPool,
    price: PriceRule | None = None,
    layout: Layout = "shared",
    *,
    hf_token: str | None = None,
    signed_by: tuple[str, ...] = (),
    attributes: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The SDL (a dict ready for YAML) deploying ``pool`` on Akash; ``AkashError`` if it cannot.

    ``hf_token`` goes into the workers' environment as ``HF_TOKEN`` (the provider can read it: an
    SDL has no secrets); ``signed_by`` asks for providers audited by any of these accounts;
    ``attributes`` are provider attributes every placement requires (e.g. ``{"host": "akash"}``).
    """
    if layout not in ("shared", "per-gpu"):
        raise AkashError(f"layout must be shared or per-gpu, got {layout!r}")
    price = price or PriceRule()
    spec = pool.spec
    entries = _entries(spec)
    gateway = _has_gateway(spec, layout)

    def placement() -> dict[str, Any]:
        profile: dict[str, Any] = {}
        if attributes:
            profile["attributes"] = dict(attributes)
        if signed_by:
            profile["signedBy"] = {"anyOf": list(signed_by)}
        profile["pricing"] = {}
        return profile

    services: dict[str, Any] = {}
    compute: dict[str, Any] = {}
    placements: dict[str, Any] = {}
    deployment: dict[str, Any] = {}
    if gateway:
        services[GATEWAY_SERVICE] = _gateway_service(pool)
        compute[GATEWAY_SERVICE] = {"resources": {
            "cpu": {"units": _cpu_units(_quantity((spec.gateway.resources.limits, spec.gateway.resources.requests),
                                                  "cpu", GATEWAY_CPU))},
            "memory": {"size": _quantity((spec.gateway.resources.limits, spec.gateway.resources.requests),
                                         "memory", GATEWAY_MEMORY)},
            "storage": [{"size": GATEWAY_STORAGE}],
        }}  # fmt: skip
        placements[SHARED_PLACEMENT] = placement()
        placements[SHARED_PLACEMENT]["pricing"][GATEWAY_SERVICE] = price.pricing(price.gateway_usd_per_hour)
        deployment[GATEWAY_SERVICE] = {SHARED_PLACEMENT: {"profile": GATEWAY_SERVICE, "count": spec.gateway.replicas}}
    for entry in entries:
        name = worker_service_name(entry)
        where = SHARED_PLACEMENT if layout == "shared" else name
        services[name] = _worker_service(spec, entry, to_gateway=gateway, hf_token=hf_token)
        compute[name] = _worker_compute(entry)
        usd = entry.price_per_hour if entry.price_per_hour is not None else price.default_usd_per_hour
        placements.setdefault(where, placement())["pricing"][name] = price.pricing(usd)
        deployment[name] = {where: {"profile": name, "count": entry.replicas}}
    return {
        "version": "2.0",
        "services": services,
        "profiles": {"compute": compute, "placement": placements},
        "deployment": deployment,
    }
