"""The gateway's one typed configuration. Flags override environment variables (SDXLPOOL_GATEWAY_*)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

from pydantic import AliasChoices, Field, field_validator, model_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from sdxlpool._limits import DEFAULT_BODY_TIMEOUT, DEFAULT_MAX_BODY_BYTES
from sdxlpool._settings import GenerationSettings
from sdxlpool.api.gpu import normalize_gpu_name
from sdxlpool.gateway.peers import PeerAddress, parse_peer_address

__all__ = ["GatewaySettings"]


class GatewaySettings(GenerationSettings):
    """Input limits and request defaults (`max_*`, `default_*`: a pool's spec.limits and spec.defaults,
    whole, as on its workers) come from `GenerationSettings`, checked before any routing."""

    model_config = SettingsConfigDict(env_prefix="SDXLPOOL_GATEWAY_", extra="forbid", populate_by_name=True)

    backends_file: Path | None = None
    kubernetes: bool = False
    namespace: str | None = None
    pool: str | None = None
    # Kubernetes discovery's credentials: in a pod its service account; elsewhere this kubeconfig.
    kubeconfig: str | None = Field(None, validation_alias=AliasChoices("SDXLPOOL_GATEWAY_KUBECONFIG", "KUBECONFIG"))
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)

    scrape_interval: float = Field(0.1, gt=0, description="seconds between two scrapes of a worker's /metrics")
    scrape_timeout: float = Field(1.0, gt=0)
    stale_after: float = Field(2.0, gt=0, description="metrics older than this are 'unknown capacity'")
    reload_interval: float = Field(1.0, gt=0, description="how often the backends file is checked for changes")

    max_attempts: int = Field(3, ge=1, description="workers tried for one request before giving up")
    attempt_timeout: float = Field(600.0, gt=0, description="longest one worker may take for one request")
    connect_timeout: float = Field(2.0, gt=0)
    progress_deadline: float = Field(30.0, gt=0, description="a worker showing no progress this long is hung")
    progress_poll: float = Field(0.25, gt=0, description="how often a streamed request's worker /progress is read")

    # Routing: the default profile (soonest completion, GPU preference), with the cost scorer at
    # `cost_weight` when > 0; or a whole profile from a YAML file (routing/factory.py).
    routing_file: Path | None = None
    cost_weight: float = Field(0.0, ge=0, description="weight of the pricePerHour scorer; 0 = off")

    strict: bool = Field(False, description="refuse (422) a request with anything that would not be applied")

    # Admission: saturation and rate limits (429 with Retry-After).
    backlog_seconds: float = Field(60.0, gt=0, description="a worker whose queued work lasts longer is full")
    queue_size: int = Field(100, ge=0, description="requests that may wait at the gateway when all are full")
    queue_deadline: float = Field(30.0, gt=0, description="longest a request waits at the gateway")
    rate_limit_per_minute: float = Field(0.0, ge=0, description="per client address or API key; 0 = no limit")
    rate_limit_burst: int = Field(10, ge=1)
    api_keys_file: Path | None = Field(None, description="API keys (hashed) with their own rates and priority")

    # Autoscaling (sdxlpool.scaling): the demand it reports at /v1/demand, and scale from zero.
    pool_gpus: list[str] = Field(default_factory=list, description="GPU models of the pool (slugs): a request may "
                                 "wait for one with no worker up, while the autoscaler starts one")
    latency_target: float | None = Field(None, gt=0, description="the pool's p95 target in seconds (exported)")
    cold_start_deadline: float = Field(600.0, gt=0, description="longest a request waits for a worker of a GPU "
                                       "model with none ready")
    demand_window: float = Field(60.0, gt=0, description="seconds the reported demand rates are averaged over")

    # Dispatch sharing between gateway replicas (peers.py): off without a peer port. With Kubernetes
    # discovery the pool's other ready gateway pods are peers too; `pod_ip` leaves this one out.
    peer_port: int | None = Field(None, ge=1, le=65535, description="UDP port to hear the other gateway replicas' "
                                  "dispatches on (and announce this one's from); unset: no sharing")
    # NoDecode: `a:8081,b:8081` in the environment too, not only a JSON list.
    peers: Annotated[list[str], NoDecode] = Field(default_factory=list, description="the other gateway "
                                                  "replicas' host:port, comma-separated (or a JSON list)")
    pod_ip: str | None = Field(None, validation_alias=AliasChoices("SDXLPOOL_GATEWAY_POD_IP", "POD_IP"),
                               description="this pod's IP (the downward API's status.podIP): Kubernetes peer "
                               "discovery leaves this replica out")

    # Hostile clients: request body cap (413) and read timeout (408); also the WebSocket message cap.
    max_body_bytes: int = Field(DEFAULT_MAX_BODY_BYTES, ge=1024, description="larger request bodies get 413")
    body_timeout: float = Field(DEFAULT_BODY_TIMEOUT, gt=0, description="a body stalled this long gets 408")
    # CORS: closed by default (no CORS headers); browser pages from these origins may call the API.
    cors_origins: list[str] = Field(default_factory=list, description='e.g. ["https://app.example"]; "*" = any')

    @field_validator("pool_gpus", mode="before")
    @classmethod
    def _gpu_slugs(cls, value: Any) -> Any:
        """`A100,H100` or a list of names, in any spelling -> canonical slugs, each once."""
        if isinstance(value, str):
            value = value.split(",")
        if not isinstance(value, list):
            return value
        slugs: list[str] = []
        for item in value:
            if not isinstance(item, str):
                raise ValueError(f"GPU model names must be text, got {item!r}")
            if item.strip():
                slug = normalize_gpu_name(item)
                if slug not in slugs:
                    slugs.append(slug)
        return slugs

    @field_validator("peers", mode="before")
    @classmethod
    def _peer_addresses(cls, value: Any) -> Any:
        """`a:8081,b:8081`, a JSON list (as the other list variables take) or a list -> each
        checked, blanks dropped."""
        if isinstance(value, str):
            listed = _json_list(value)
            value = listed if listed is not None else value.split(",")
        if not isinstance(value, list):
            return value
        peers = []
        for item in value:
            if not isinstance(item, str):
                raise ValueError(f"peers are host:port text, got {item!r}")
            if item.strip():
                parse_peer_address(item)
                peers.append(item.strip())
        return peers

    @property
    def peer_addresses(self) -> list[PeerAddress]:
        return [parse_peer_address(peer) for peer in self.peers]

    @model_validator(mode="after")
    def _one_discovery(self) -> GatewaySettings:
        if self.kubernetes and (not self.namespace or not self.pool):
            raise ValueError("Kubernetes discovery needs both --namespace and --pool")
        if self.kubernetes and self.backends_file is not None:
            raise ValueError("choose one discovery: a backends file, or Kubernetes")
        if not self.kubernetes and self.backends_file is None:
            raise ValueError("give a backends file, or Kubernetes discovery with a namespace and pool")
        if self.peers and self.peer_port is None:
            raise ValueError("--peers needs --peer-port, the UDP port this replica hears its peers on")
        if self.routing_file is not None and self.cost_weight > 0:
            raise ValueError("--cost-weight applies to the default routing; with --routing, set the cost"
                             " scorer's weight in that file")
        return self


def _json_list(text: str) -> list[Any] | None:
    """`text` as a JSON list, or None when it is not one (`[::1]:8081,...` is not)."""
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, list) else None
