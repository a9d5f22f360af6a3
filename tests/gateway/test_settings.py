"""Gateway settings: the pool's limits and defaults, whole, from SDXLPOOL_GATEWAY_* or flags; refused
when a request that leaves a field out would be refused for it."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from sdxlpool.api.a1111 import Txt2ImgRequest
from sdxlpool.api.generation import GenerationDefaults, RequestLimits, resolve_request
from sdxlpool.gateway.settings import GatewaySettings

BACKENDS = Path("backends.yaml")  # never read: settings only hold the path

POOL_ENVIRONMENT = {  # a 512x512 pool, as the operator, `up` and the SDL export hand it to the gateway
    "SDXLPOOL_GATEWAY_MAX_STEPS": "40",
    "SDXLPOOL_GATEWAY_MAX_PIXELS": "262144",
    "SDXLPOOL_GATEWAY_MAX_BATCH": "2",
    "SDXLPOOL_GATEWAY_MAX_PROMPT_CHARS": "300",
    "SDXLPOOL_GATEWAY_DEFAULT_SAMPLER": "Euler a",
    "SDXLPOOL_GATEWAY_DEFAULT_STEPS": "20",
    "SDXLPOOL_GATEWAY_DEFAULT_CFG_SCALE": "5.5",
    "SDXLPOOL_GATEWAY_DEFAULT_WIDTH": "512",
    "SDXLPOOL_GATEWAY_DEFAULT_HEIGHT": "512",
    "SDXLPOOL_GATEWAY_DEFAULT_REFINER_SWITCH_AT": "0.6",
}


def test_a_pools_limits_and_defaults_come_whole_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in POOL_ENVIRONMENT.items():
        monkeypatch.setenv(name, value)
    settings = GatewaySettings(backends_file=BACKENDS)
    assert settings.limits == RequestLimits(max_steps=40, max_pixels=262144, max_batch=2, max_prompt_chars=300)
    assert settings.defaults == GenerationDefaults(sampler="Euler a", steps=20, cfg_scale=5.5, width=512, height=512,
                                                   refiner_switch_at=0.6)
    # A request that gives no size is served at the pool's size, not refused over the gateway's own.
    params = resolve_request(Txt2ImgRequest(prompt="a cat"), settings.defaults, settings.limits)
    assert (params.width, params.height, params.sampler_name, params.steps) == (512, 512, "Euler a", 20)


def test_flags_win_over_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SDXLPOOL_GATEWAY_DEFAULT_STEPS", "12")
    monkeypatch.setenv("SDXLPOOL_GATEWAY_MAX_STEPS", "12")
    settings = GatewaySettings(backends_file=BACKENDS, default_steps=30, max_steps=60)
    assert (settings.defaults.steps, settings.limits.max_steps) == (30, 60)


def test_worker_variables_do_not_configure_the_gateway(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SDXLPOOL_DEFAULT_WIDTH", "512")  # a worker's name, without the GATEWAY_ prefix
    assert GatewaySettings(backends_file=BACKENDS).defaults.width == 1024


@pytest.mark.parametrize(
    ("environment", "message"),
    [
        ({"SDXLPOOL_GATEWAY_MAX_PIXELS": "262144"},
         "default_width x default_height (1024x1024 = 1048576) is over max_pixels 262144"),
        ({"SDXLPOOL_GATEWAY_MAX_STEPS": "10"}, "default_steps 25 is over max_steps 10"),
        ({"SDXLPOOL_GATEWAY_DEFAULT_WIDTH": "2048", "SDXLPOOL_GATEWAY_MAX_PIXELS": "2000000"},
         "default_width x default_height (2048x1024 = 2097152) is over max_pixels 2000000"),
        ({"SDXLPOOL_GATEWAY_DEFAULT_REFINER_SWITCH_AT": "1.5"}, "default_refiner_switch_at"),
    ],
)
def test_defaults_outside_limits_are_refused_naming_the_field(monkeypatch: pytest.MonkeyPatch,
                                                              environment: dict[str, str], message: str) -> None:
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError) as caught:
        GatewaySettings(backends_file=BACKENDS)
    assert message in str(caught.value)


def test_kubernetes_discovery_reads_its_kubeconfig_from_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Handed to the discovery's client, not read from the environment at connect time."""
    monkeypatch.setenv("KUBECONFIG", "/from/kubeconfig")
    discovery = {"kubernetes": True, "namespace": "ns", "pool": "demo"}
    assert GatewaySettings(**discovery).kubeconfig == "/from/kubeconfig"
    monkeypatch.setenv("SDXLPOOL_GATEWAY_KUBECONFIG", "/from/gateway")
    assert GatewaySettings(**discovery).kubeconfig == "/from/gateway"
    assert GatewaySettings(**discovery, kubeconfig="/from/argument").kubeconfig == "/from/argument"


# -- dispatch sharing between replicas (gateway/peers.py) -------------------------------------------


@pytest.mark.parametrize(
    ("environment", "peer_port", "peers"),
    [
        pytest.param({}, None, [], id="off-by-default"),
        pytest.param({"SDXLPOOL_GATEWAY_PEER_PORT": "8081", "SDXLPOOL_GATEWAY_PEERS": "10.0.0.7:8081, gw-b:8081,"},
                     8081, [("10.0.0.7", 8081), ("gw-b", 8081)], id="comma-separated"),
        pytest.param({"SDXLPOOL_GATEWAY_PEER_PORT": "8081", "SDXLPOOL_GATEWAY_PEERS": '["[::1]:8081"]'},
                     8081, [("::1", 8081)], id="json-list"),
        pytest.param({"SDXLPOOL_GATEWAY_PEER_PORT": "8081", "SDXLPOOL_GATEWAY_PEERS": "[]"}, 8081, [],
                     id="port-alone"),
    ],
)
def test_peers_from_the_environment(monkeypatch: pytest.MonkeyPatch, environment: dict[str, str],
                                    peer_port: int | None, peers: list[tuple[str, int]]) -> None:
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    settings = GatewaySettings(backends_file=BACKENDS)
    assert (settings.peer_port, settings.peer_addresses) == (peer_port, peers)


def test_pod_ip_comes_from_the_downward_apis_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POD_IP", "10.0.0.9")
    assert GatewaySettings(backends_file=BACKENDS).pod_ip == "10.0.0.9"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"peer_port": 8081, "peers": "10.0.0.7"}, "must be host:port"),
        ({"peer_port": 8081, "peers": ["10.0.0.7:8081", 8081]}, "host:port text"),
        ({"peers": "10.0.0.7:8081"}, "--peers needs --peer-port"),
        ({"peer_port": 70000}, "less than or equal to 65535"),
    ],
)
def test_bad_peers_are_refused(fields: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        GatewaySettings(backends_file=BACKENDS, **fields)
