"""The gateway's fine-tune catalog: /sdapi/v1/loras, /sd-vae, /prompt-styles, /embeddings answered
from every worker and joined by name; POST /sdapi/v1/refresh-loras sent to every worker, answered
once all have replied, naming each one that did not refresh.

Through real HTTP: sim-workers (the worker's own app and routes, a timing model for an engine) each
with its own LoRA folder, a real gateway in front, and a backend on a closed port for a dead worker.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from safetensors.numpy import save_file

from sdxlpool.api.ports import HEALTH_PATH
from sdxlpool.gateway.catalog import Reply, refresh_outcome, union_by, union_embeddings
from sdxlpool.testing.ports import free_port
from tests.conftest import ServerThread
from tests.gateway.conftest import start_gateway, write_backends

CATALOG = ("/sdapi/v1/loras", "/sdapi/v1/sd-vae", "/sdapi/v1/prompt-styles", "/sdapi/v1/embeddings")


def lora_file(path: Path) -> Path:
    """A kohya-layout LoRA's header and one pair of small tensors (what a worker lists by name)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    down = "lora_unet_down_blocks_0_attentions_0_proj_in"
    save_file({f"{down}.lora_down.weight": np.zeros((4, 8), np.float32),
               f"{down}.lora_up.weight": np.zeros((8, 4), np.float32),
               f"{down}.alpha": np.array(4.0, np.float32)},
              str(path), metadata={"ss_network_module": "networks.lora", "ss_output_name": path.stem})
    return path


class SimWorker:
    def __init__(self, name: str, lora_dir: Path) -> None:
        from sdxlpool.sim import SimSettings, create_sim_app

        self.name, port = name, free_port()
        settings = SimSettings(gpu_model="A100", step_seconds=0, port=port, worker_name=name, lora_dir=lora_dir,
                               warmup=False)
        self.server = ServerThread(create_sim_app(settings), port)
        self.url = self.server.url

    def backend(self) -> dict:
        return {"name": self.name, "url": self.url, "gpu": "A100", "type": "sdxlpool"}


@pytest.fixture(scope="module")
def sims(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[SimWorker]]:
    """Two workers whose LoRA folders share `shared` and each hold one of their own."""
    root = tmp_path_factory.mktemp("loras")
    for folder, names in (("a", ["shared", "only-a"]), ("b", ["only-b", "shared"])):
        for name in names:
            lora_file(root / folder / f"{name}.safetensors")
    workers = [SimWorker("a", root / "a"), SimWorker("b", root / "b")]
    for worker in workers:
        worker.server.__enter__()
    try:
        for worker in workers:
            worker.server.wait_ready()
        yield workers
    finally:
        for worker in workers:
            worker.server.__exit__(None, None, None)


def serving(gateway: ServerThread) -> str:
    """The gateway's URL once it answers (its /readyz waits for a ready worker; some tests have none)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(gateway.url + HEALTH_PATH, timeout=2).status_code == 200:
                return gateway.url
        except httpx.TransportError:
            time.sleep(0.05)
    raise TimeoutError(gateway.url)


def dead_backend() -> dict:
    return {"name": "dead", "url": f"http://127.0.0.1:{free_port()}", "gpu": "A100", "type": "sdxlpool"}


def joined_names(answers: list[list[dict]], key: str) -> list[str]:
    """What one A1111 answer for the pool must list: the first worker's names in its order, then the others'."""
    names: list[str] = []
    for answer in answers:
        names += [item[key] for item in answer if item[key] not in names]
    return names


def test_catalog_routes_join_every_workers_answer_by_name(sims, tmp_path: Path) -> None:
    backends = write_backends(tmp_path / "backends.yaml", [w.backend() for w in sims] + [dead_backend()])
    with start_gateway(backends) as gateway:
        for path, key in (("/sdapi/v1/loras", "name"), ("/sdapi/v1/sd-vae", "model_name"),
                          ("/sdapi/v1/prompt-styles", "name")):
            direct = [httpx.get(w.url + path, timeout=10).json() for w in sims]
            answer = httpx.get(serving(gateway) + path, timeout=10)
            assert answer.status_code == 200, (path, answer.text)  # the dead worker is left out, not an error
            assert [item[key] for item in answer.json()] == joined_names(direct, key), path
        direct_embeddings = [httpx.get(w.url + "/sdapi/v1/embeddings", timeout=10).json() for w in sims]
        embeddings = httpx.get(serving(gateway) + "/sdapi/v1/embeddings", timeout=10).json()
        assert set(embeddings) == {"loaded", "skipped"}
        assert set(embeddings["loaded"]) == {name for d in direct_embeddings for name in d["loaded"]}


def test_catalog_routes_are_503_when_no_worker_answers(tmp_path: Path) -> None:
    with start_gateway(write_backends(tmp_path / "backends.yaml", [dead_backend()])) as gateway:
        for path in CATALOG:
            answer = httpx.get(serving(gateway) + path, timeout=10)
            assert answer.status_code == 503 and answer.json()["error"] == "no_backend", (path, answer.text)


def test_refresh_loras_reaches_every_worker_and_names_the_ones_that_did_not(sims, tmp_path: Path) -> None:
    direct = {w.name: httpx.post(w.url + "/sdapi/v1/refresh-loras", timeout=30).status_code for w in sims}
    backends = write_backends(tmp_path / "backends.yaml", [w.backend() for w in sims] + [dead_backend()])
    with start_gateway(backends) as gateway:
        answer = httpx.post(serving(gateway) + "/sdapi/v1/refresh-loras", timeout=90)
        body = answer.json()
        # Answered once every worker replied: each one is in exactly one of the two lists.
        assert sorted([*body["refreshed"], *body["failed"]]) == ["a", "b", "dead"]
        assert sorted(body["refreshed"]) == sorted(name for name, status in direct.items() if status == 200)
        assert answer.status_code == 502 and body["error"] == "refresh_incomplete"
        assert body["failed"]["dead"].startswith("no answer")
        assert "dead: no answer" in body["detail"] and f"of {3} workers" in body["detail"]

    live = write_backends(tmp_path / "live.yaml", [w.backend() for w in sims])
    with start_gateway(live) as gateway:
        answer = httpx.post(serving(gateway) + "/sdapi/v1/refresh-loras", timeout=90)
        every_worker_refreshes = all(status == 200 for status in direct.values())
        assert (answer.status_code == 200) == every_worker_refreshes, answer.text
        if every_worker_refreshes:
            assert sorted(answer.json()["refreshed"]) == ["a", "b"] and answer.json()["failed"] == {}


def test_refresh_loras_with_no_workers_is_503(tmp_path: Path) -> None:
    with start_gateway(write_backends(tmp_path / "none.yaml", [])) as gateway:
        answer = httpx.post(serving(gateway) + "/sdapi/v1/refresh-loras", timeout=10)
        assert answer.status_code == 503 and answer.json()["error"] == "no_backend", answer.text


# --- the joining rules, on A1111-shaped answers ---------------------------------------------------


def test_union_keeps_the_first_workers_list_and_order_and_adds_what_only_others_have() -> None:
    a = [{"name": "ink", "alias": "ink", "path": "/a/ink.safetensors"},
         {"name": "pixel", "alias": "pixel", "path": "/a/pixel.safetensors"}]
    b = [{"name": "zebra", "alias": "z", "path": "/b/zebra.safetensors"},
         {"name": "ink", "alias": "other", "path": "/b/ink.safetensors"}]
    assert union_by("name")([a, b]) == [*a, b[0]]
    assert union_by("name")([a, a]) == a  # workers that agree: exactly one worker's answer
    # Answers that are not A1111 lists of objects (an error body, junk) add nothing.
    assert union_by("model_name")([{"detail": "x"}, [1, {"model_name": "v.safetensors"}, {"x": 1}]]) == [
        {"model_name": "v.safetensors"}]


def test_embeddings_loaded_anywhere_are_loaded() -> None:
    a = {"loaded": {"cat": {"step": None, "shape": 768}}, "skipped": {"dog": {"step": 1}}}
    b = {"loaded": {"dog": {"step": 2, "shape": 768}}, "skipped": {"cow": {}}}
    assert union_embeddings([a, b]) == {"loaded": {"cat": {"step": None, "shape": 768}, "dog": {"step": 2, "shape": 768}},
                                        "skipped": {"cow": {}}}


def test_refresh_outcome_is_200_only_when_every_worker_refreshed() -> None:
    ok = [Reply("a", 200, None), Reply("b", 200, None)]
    assert refresh_outcome(ok, "LoRAs") == (200, {"refreshed": ["a", "b"], "failed": {}})
    status, body = refresh_outcome([ok[0], Reply("b", 404, {"detail": "Not Found"}, "HTTP 404: Not Found"),
                                    Reply("c", 0, problem="no answer within 60 s")], "LoRAs")
    assert status == 502 and body["refreshed"] == ["a"]
    assert body["failed"] == {"b": "HTTP 404: Not Found", "c": "no answer within 60 s"}
    assert body["detail"] == ("2 of 3 workers did not refresh their LoRAs "
                              "(b: HTTP 404: Not Found; c: no answer within 60 s)")


def test_the_pool_catalog_is_in_the_gateways_api() -> None:
    from sdxlpool.gateway.app import create_app
    from sdxlpool.gateway.settings import GatewaySettings

    paths = create_app(GatewaySettings(backends_file=Path("/nonexistent.yaml"))).openapi()["paths"]
    assert all("get" in paths[path] for path in CATALOG)
    assert "post" in paths["/sdapi/v1/refresh-loras"]


