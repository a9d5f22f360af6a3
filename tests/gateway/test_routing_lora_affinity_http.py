"""lora_affinity end to end: two tiny-model workers, a gateway, and the LoRA one of them holds."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import yaml

from tests.conftest import TinyModel, start_worker
from tests.gateway.conftest import start_gateway, write_backends
from tests.polling import wait_for

BODY = {"steps": 3, "width": 64, "height": 64, "seed": 3, "sampler_name": "Euler"}
# Only the LoRA decides: the workers' measured speeds on a loaded CI machine may differ a lot.
PROFILE = {"routing": {"filters": ["available"], "scorers": [
    {"type": "completion_time", "weight": 0.1}, {"type": "lora_affinity", "weight": 1.0, "maxSlowdown": 100}]}}


def test_the_gateway_sends_a_lora_request_to_the_worker_that_holds_it(tiny_model: TinyModel, tmp_path: Path) -> None:
    lora_dir = tiny_model.base.parent / "loras"
    routing = tmp_path / "routing.yaml"
    routing.write_text(yaml.safe_dump(PROFILE))
    # One after the other: diffusers' loading is not thread-safe (two in one process at once fail).
    with start_worker(tiny_model, lora_dir=lora_dir, worker_name="cold") as cold:
        cold.wait_ready()
        with start_worker(tiny_model, lora_dir=lora_dir, worker_name="warm") as warm:
            warm.wait_ready()
            _check(cold.url, warm.url, tmp_path, routing)


def _check(cold: str, warm: str, tmp_path: Path, routing: Path) -> None:
    # The warm worker loads tiny_all for a request of its own.
    answer = httpx.post(warm + "/sdapi/v1/txt2img", json={"prompt": "x <lora:tiny_all:1>", **BODY}, timeout=120)
    assert answer.status_code == 200, answer.text
    backends = write_backends(tmp_path / "backends.yaml", [
        {"name": name, "url": url, "gpu": "A100", "type": "sdxlpool"} for name, url in (("cold", cold), ("warm", warm))])
    with start_gateway(backends, routing_file=routing) as gateway:
        gateway.wait_ready()

        def loaded() -> dict[str, list[str] | None]:
            return {b["name"]: b["lorasLoaded"]
                    for b in httpx.get(gateway.url + "/v1/backends", timeout=5).json()["backends"]}

        view = wait_for(lambda: (v := loaded()) and None not in v.values() and v["warm"] and v)
        assert view == {"cold": [], "warm": ["tinyAllV2", "tiny_all"]}  # by name and alias
        for prompt in ("a fox <lora:tinyAllV2:0.8>", "a fox <lora:tiny_all:1>"):
            answer = httpx.post(gateway.url + "/sdapi/v1/txt2img", json={"prompt": prompt, **BODY},
                                headers={"X-SDXL-Debug-Routing": "1"}, timeout=120)
            assert answer.status_code == 200, answer.text
            (decision,) = json.loads(answer.json()["info"])["sdxlpool"]["routing"]
            assert decision["scores"]["lora_affinity"] == {"cold": 0.0, "warm": 1.0}
            assert answer.headers["X-SDXL-Worker"] == "warm"
