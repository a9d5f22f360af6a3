"""`sdxlpool sdl`: the rendered Akash SDL checked against SDL 2.0's structure, its cross-references,
the pool it came from, and the gateway's own backends-file loader; the command run as a subprocess."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from sdxlpool.akash import AkashError, PriceRule, render_backends, render_sdl
from sdxlpool.akash.sdl import USDC_DENOM, worker_service_name
from sdxlpool.api.spec import pool_from_yaml
from sdxlpool.gateway.discovery.static import load_backends_file

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = [ROOT / "examples" / "pool.yaml", ROOT / "examples" / "local-pool.yaml"]
SCHEMA = json.loads((Path(__file__).with_name("sdl-v2.schema.json")).read_text())
SCRIPT = Path(sys.executable).with_name("sdxlpool")

# The GPU example of the Akash docs (akash.network/docs, "Example GPU SDLs"), to prove the schema
# accepts the real format and not only what sdxlpool writes.
DOCS_GPU_EXAMPLE = """
version: "2.0"
services:
  obtaingpu:
    image: ubuntu:22.04
    command: ["sh", "-c"]
    args: ["uptime; nvidia-smi; sleep infinity"]
    expose:
      - port: 8080
        as: 80
        to:
          - global: true
profiles:
  compute:
    obtaingpu:
      resources:
        cpu: {units: 1.0}
        memory: {size: 1Gi}
        gpu:
          units: 1
          attributes:
            vendor:
              nvidia:
                - model: a100
                  ram: 40Gi
        storage: {size: 1Gi}
  placement:
    akash:
      pricing:
        obtaingpu: {denom: uakt, amount: 100000}
deployment:
  obtaingpu:
    akash: {profile: obtaingpu, count: 1}
"""


def _pool(path: Path):
    return pool_from_yaml(path.read_text())


def check_sdl(sdl: dict[str, Any], pool) -> None:
    """Schema, cross-references, and agreement with the pool."""
    jsonschema.validate(sdl, SCHEMA)
    services, compute, placement = sdl["services"], sdl["profiles"]["compute"], sdl["profiles"]["placement"]
    assert set(sdl["deployment"]) == set(services)
    for name, groups in sdl["deployment"].items():
        for group, spec in groups.items():
            assert group in placement, f"{name}: placement {group} missing"
            assert spec["profile"] in compute, f"{name}: compute profile {spec['profile']} missing"
            assert spec["profile"] in placement[group]["pricing"], f"{name}: no price in {group}"
    for name, service in services.items():
        assert service["image"]
        for expose in service.get("expose", []):
            for to in expose.get("to", []):
                assert to.get("service", name) in services, f"{name} exposed to unknown {to}"
    for entry in pool.spec.gpus:
        name = worker_service_name(entry)
        if entry.replicas == 0:
            assert name not in services
            continue
        assert services[name]["image"] == pool.spec.image
        (deploy,) = sdl["deployment"][name].values()
        assert deploy["count"] == entry.replicas
        gpu = compute[deploy["profile"]]["resources"]["gpu"]
        assert gpu["units"] == entry.gpus_per_replica
        script = services[name]["args"][0]
        worker = shlex.split(script.rsplit(" && ", 1)[1])
        assert worker[:3] == ["exec", "env", "HF_HUB_OFFLINE=1"] and worker[3:5] == ["sdxlpool", "worker"]
        assert worker[worker.index("--gpu-model") + 1] == entry.model
        assert worker[worker.index("--port") + 1] == "7860"
        assert "hf download " + pool.spec.model.hugging_face.repo in script


def test_schema_accepts_the_akash_docs_gpu_example() -> None:
    jsonschema.validate(yaml.safe_load(DOCS_GPU_EXAMPLE), SCHEMA)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
@pytest.mark.parametrize("layout", ["shared", "per-gpu"])
def test_examples_render_valid_sdl(path: Path, layout: str) -> None:
    pool = _pool(path)
    sdl = render_sdl(pool, layout=layout)
    check_sdl(sdl, pool)
    gateway = layout == "shared" and pool.spec.gateway.enabled
    assert ("gateway" in sdl["services"]) == gateway
    placements = sdl["profiles"]["placement"]
    assert len(placements) == (1 if layout == "shared" else len(pool.spec.gpus))
    for entry in pool.spec.gpus:
        expose = sdl["services"][worker_service_name(entry)]["expose"]
        assert expose == ([{"port": 7860, "to": [{"service": "gateway"}]}] if gateway
                          else [{"port": 7860, "as": 80, "to": [{"global": True}]}])


def test_gpu_attributes_use_akash_model_names_and_memory() -> None:
    text = (ROOT / "examples" / "local-pool.yaml").read_text()
    text = text.replace("model: A100", "model: NVIDIA-A100-SXM4-80GB").replace("model: RTX-4090", "model: RTX 4090")
    pool = pool_from_yaml(text)
    compute = render_sdl(pool)["profiles"]["compute"]
    models = {name: p["resources"]["gpu"]["attributes"]["vendor"]["nvidia"] for name, p in compute.items() if "gpu" in p["resources"]}
    assert models["worker-a100-80gb"] == [{"model": "a100", "ram": "80Gi", "interface": "sxm"}]
    assert models["worker-rtx-4090"] == [{"model": "rtx4090"}]
    assert models["worker-rtx-3090"] == [{"model": "rtx3090"}]


def test_resources_come_from_the_entry_else_defaults() -> None:
    compute = render_sdl(_pool(EXAMPLES[0]))["profiles"]["compute"]
    a100 = compute["worker-a100"]["resources"]
    assert a100["cpu"] == {"units": 4} and a100["memory"] == {"size": "32Gi"}  # limits before requests
    assert a100["storage"] == [{"size": "60Gi"}]
    local = render_sdl(_pool(EXAMPLES[1]))["profiles"]["compute"]["worker-rtx-4090"]["resources"]
    assert (local["cpu"], local["memory"]) == ({"units": 4}, {"size": "24Gi"})


@pytest.mark.parametrize(
    ("rule", "usd", "denom", "amount"),
    [
        (PriceRule(), 1.10, USDC_DENOM, 1834),  # 1.1e6 uusdc / 600 blocks = 1833.3
        (PriceRule(), 0.0, USDC_DENOM, 1),
        (PriceRule(denom="uakt", akt_usd=2.0), 1.20, "uakt", 1000),  # 0.6 AKT/h = 600000 uakt / 600
        (PriceRule(blocks_per_hour=590), 0.59, USDC_DENOM, 1000),
    ],
)
def test_price_per_hour_becomes_a_bid_per_block(rule: PriceRule, usd: float, denom: str, amount: int) -> None:
    assert rule.pricing(usd) == {"denom": denom, "amount": amount}


def test_uakt_needs_an_exchange_rate() -> None:
    with pytest.raises(AkashError, match="--akt-usd"):
        PriceRule(denom="uakt")


def test_entries_without_price_bid_the_default() -> None:
    text = (ROOT / "examples" / "local-pool.yaml").read_text().replace("pricePerHour: 0.45", "")
    pricing = render_sdl(pool_from_yaml(text), PriceRule(default_usd_per_hour=0.6))["profiles"]["placement"]
    assert pricing["akash"]["pricing"]["worker-rtx-4090"]["amount"] == 1000


def test_volume_weights_cannot_go_to_akash() -> None:
    text = (ROOT / "examples" / "local-pool.yaml").read_text()
    text = text.replace(
        "huggingFace:\n      repo: stabilityai/stable-diffusion-xl-base-1.0\n"
        "      refinerRepo: stabilityai/stable-diffusion-xl-refiner-1.0",
        "volume: {claimName: weights, basePath: sdxl}")
    with pytest.raises(AkashError, match="huggingFace"):
        render_sdl(pool_from_yaml(text))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_backends_file_loads_with_the_gateway_loader(path: Path, tmp_path: Path) -> None:
    pool = _pool(path)
    shared = render_backends(pool, "shared")
    file = tmp_path / "backends.yaml"
    file.write_text(yaml.safe_dump(shared))
    backends = load_backends_file(file)
    assert [b.name for b in backends] == [worker_service_name(e) for e in pool.spec.gpus]
    if pool.spec.gateway.enabled:
        assert all(b.url == f"http://{b.name}:7860" for b in backends)
        # the in-SDL gateway carries the same list
        env = render_sdl(pool)["services"]["gateway"]["env"]
        baked = next(e for e in env if e.startswith("SDXLPOOL_BACKENDS_JSON=")).split("=", 1)[1]
        assert json.loads(baked) == shared
    per_gpu = render_backends(pool, "per-gpu", {"worker-a100": "abc.provider.example.com"})
    file.write_text(yaml.safe_dump(per_gpu))
    urls = {b.name: b.url for b in load_backends_file(file)}
    assert urls["worker-a100"] == "http://abc.provider.example.com"
    assert urls["worker-rtx-3090"] == "http://worker-rtx-3090.akash.invalid"


def test_uris_for_unknown_services_are_refused() -> None:
    with pytest.raises(AkashError, match="worker-h100"):
        render_backends(_pool(EXAMPLES[1]), "per-gpu", {"worker-h100": "x.example.com"})


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(SCRIPT), "sdl", *args], capture_output=True, text=True, timeout=60)


def test_cli_writes_sdl_and_backends(tmp_path: Path) -> None:
    out, backends = tmp_path / "deploy.yaml", tmp_path / "backends.yaml"
    result = _run(str(EXAMPLES[0]), "-o", str(out), "--backends", str(backends))
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    check_sdl(yaml.safe_load(out.read_text()), _pool(EXAMPLES[0]))
    assert len(load_backends_file(backends)) == 2


def test_cli_per_gpu_with_lease_status_uris(tmp_path: Path) -> None:
    uris = tmp_path / "status.json"
    uris.write_text(json.dumps({"services": {
        "worker-a100": {"name": "worker-a100", "available": 1, "total": 1, "uris": ["a1.ingress.example.net"]},
        "worker-rtx-4090": {"uris": ["b2.ingress.example.net"]},
        "worker-rtx-3090": {"uris": ["c3.ingress.example.net"]},
    }}))
    backends = tmp_path / "backends.yaml"
    result = _run(str(EXAMPLES[1]), "--layout", "per-gpu", "--uris", str(uris), "--backends", str(backends),
                  "--price-denom", "uakt", "--akt-usd", "2.5", "--attribute", "host=akash",
                  "--signed-by", "akash1365yvmc4s7awdyj3n2sav7xfx76adc6dnmlx63")
    assert result.returncode == 0, result.stderr
    sdl = yaml.safe_load(result.stdout)
    check_sdl(sdl, _pool(EXAMPLES[1]))
    for placement in sdl["profiles"]["placement"].values():
        assert placement["attributes"] == {"host": "akash"}
        assert placement["signedBy"] == {"anyOf": ["akash1365yvmc4s7awdyj3n2sav7xfx76adc6dnmlx63"]}
        assert all(p["denom"] == "uakt" for p in placement["pricing"].values())
    assert {b.url for b in load_backends_file(backends)} == {
        "http://a1.ingress.example.net", "http://b2.ingress.example.net", "http://c3.ingress.example.net"}


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["missing.yaml"], "cannot read"),
        (["{bad}"], "invalid GPU name"),
        (["{pool}", "--price-denom", "uakt"], "--akt-usd"),
        (["{pool}", "--blocks-per-hour", "0"], "blocks per hour"),
        (["{pool}", "--uris", "u.yaml"], "--uris"),
        (["{pool}", "--attribute", "host"], "KEY=VALUE"),
        (["{pool}", "--hf-token-env", "SDXLPOOL_TEST_UNSET_TOKEN"], "not set"),
        (["{pool}", "--layout", "nope"], "invalid choice"),
    ],
)
def test_cli_user_errors_exit_2_with_one_line(args: list[str], fragment: str, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(EXAMPLES[1].read_text().replace("model: RTX-4090", "model: banana"))
    args = [a.format(pool=EXAMPLES[1], bad=bad) for a in args]
    result = _run(*args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("sdxlpool sdl: error: ") and fragment in lines[0], result.stderr
    assert "Traceback" not in result.stderr


def test_cli_help() -> None:
    result = _run("--help")
    assert result.returncode == 0
    for word in ("--price-denom", "--blocks-per-hour", "--layout", "--uris", "blocks_per_hour", "hf download"):
        assert word in result.stdout
