"""The gateway's A1111 catalog: every list route (/sdapi/v1/loras, /sd-vae, /sd-models, /upscalers,
/scripts, /embeddings, ...) answered from every worker and joined by name, each entry naming the GPU
models that have it; /memory with every worker's; POST /sdapi/v1/refresh-loras, -vae and
-checkpoints sent to every worker, answered once all have replied, naming each one that did not.

Through real HTTP: sim-workers (the worker's own app and routes, a timing model for an engine) with
different GPU models, each with its own LoRA folder, a real gateway in front, and a backend on a
closed port for a dead worker.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from safetensors.numpy import save_file

from sdxlpool.api.gpu import normalize_gpu_name
from sdxlpool.api.ports import HEALTH_PATH
from sdxlpool.gateway.catalog import (
    Reply,
    pool_memory,
    refresh_outcome,
    union_by,
    union_embeddings,
    union_scripts,
)
from sdxlpool.testing.ports import free_port
from tests.conftest import ServerThread
from tests.gateway.conftest import start_gateway, write_backends

# Every list route the gateway joins, with the key(s) its entries are joined by.
LISTS = {"/sdapi/v1/sd-models": ("title",), "/sdapi/v1/loras": ("name",), "/sdapi/v1/sd-vae": ("model_name",),
         "/sdapi/v1/prompt-styles": ("name",), "/sdapi/v1/upscalers": ("name",),
         "/sdapi/v1/latent-upscale-modes": ("name",), "/sdapi/v1/realesrgan-models": ("name",),
         "/sdapi/v1/face-restorers": ("name",), "/sdapi/v1/hypernetworks": ("name",),
         "/sdapi/v1/script-info": ("name", "is_img2img"), "/sdapi/v1/extensions": ("name",)}
CATALOG = (*LISTS, "/sdapi/v1/scripts", "/sdapi/v1/embeddings")
REFRESHES = ("/sdapi/v1/refresh-loras", "/sdapi/v1/refresh-vae", "/sdapi/v1/refresh-checkpoints")


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
    def __init__(self, name: str, lora_dir: Path, gpu: str) -> None:
        from sdxlpool.sim import SimSettings, create_sim_app

        self.name, self.gpu, port = name, gpu, free_port()
        settings = SimSettings(gpu_model=gpu, step_seconds=0, port=port, worker_name=name, lora_dir=lora_dir,
                               warmup=False)
        self.server = ServerThread(create_sim_app(settings), port)
        self.url = self.server.url

    def backend(self) -> dict:
        return {"name": self.name, "url": self.url, "gpu": self.gpu, "type": "sdxlpool"}


@pytest.fixture(scope="module")
def sims(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[SimWorker]]:
    """Three workers on three GPU models whose LoRA folders share `shared`; a and b hold one of their own."""
    root = tmp_path_factory.mktemp("loras")
    for folder, names in (("a", ["shared", "only-a"]), ("b", ["only-b", "shared"]), ("c", ["shared"])):
        for name in names:
            lora_file(root / folder / f"{name}.safetensors")
    workers = [SimWorker("a", root / "a", "A100"), SimWorker("b", root / "b", "RTX-3090"),
               SimWorker("c", root / "c", "H100")]
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


def joined(answers: list[tuple[str, list[dict]]], keys: tuple[str, ...]) -> dict[tuple, list[str]]:
    """What one A1111 answer for the pool must list, from (gpu, answer) pairs: the first worker's
    entries in its order, then the others', each with the GPU models (slugs) of those listing it."""
    gpus: dict[tuple, set[str]] = {}
    for gpu, answer in answers:
        for item in answer:
            gpus.setdefault(tuple(item[key] for key in keys), set()).add(normalize_gpu_name(gpu))
    return {identity: sorted(models) for identity, models in gpus.items()}


def test_every_list_route_joins_the_workers_answers_with_their_gpu_models(sims, tmp_path: Path) -> None:
    backends = write_backends(tmp_path / "backends.yaml", [w.backend() for w in sims] + [dead_backend()])
    with start_gateway(backends) as gateway:
        url = serving(gateway)
        for path, keys in LISTS.items():
            direct = [(w.gpu, httpx.get(w.url + path, timeout=10)) for w in sims]
            answer = httpx.get(url + path, timeout=10)
            listed = [(gpu, reply.json()) for gpu, reply in direct if reply.status_code == 200]
            if not listed:  # a route no worker has (yet): the pool cannot answer it either
                assert answer.status_code == 503, (path, answer.text)
                continue
            assert answer.status_code == 200, (path, answer.text)  # the dead worker is left out, not an error
            expected = joined(listed, keys)
            got = {tuple(item[key] for key in keys): item["sdxlpool"]["gpus"] for item in answer.json()}
            assert list(got) == list(expected) and got == expected, path
            # Apart from the added key, each entry is the first listing worker's, as A1111 writes it.
            first = {tuple(item[key] for key in keys): item for _gpu, items in reversed(listed) for item in items}
            assert all({k: v for k, v in item.items() if k != "sdxlpool"} == first[tuple(item[key] for key in keys)]
                       for item in answer.json()), path

        loras = {item["name"]: item["sdxlpool"]["gpus"] for item in httpx.get(url + "/sdapi/v1/loras").json()}
        assert loras == {"shared": ["a100", "h100", "rtx-3090"], "only-a": ["a100"], "only-b": ["rtx-3090"]}
        models = httpx.get(url + "/sdapi/v1/sd-models").json()
        assert [m["sdxlpool"]["gpus"] for m in models] == [["a100", "h100", "rtx-3090"]]  # the sims' one checkpoint

        scripts = httpx.get(url + "/sdapi/v1/scripts", timeout=10)
        assert scripts.status_code == 200 and scripts.json() == {"txt2img": [], "img2img": []}
        direct_embeddings = [httpx.get(w.url + "/sdapi/v1/embeddings", timeout=10).json() for w in sims]
        embeddings = httpx.get(url + "/sdapi/v1/embeddings", timeout=10).json()
        assert set(embeddings) == {"loaded", "skipped"}
        assert set(embeddings["loaded"]) == {name for d in direct_embeddings for name in d["loaded"]}


def test_memory_is_the_gateways_ram_and_every_workers_answer(sims, tmp_path: Path) -> None:
    backends = write_backends(tmp_path / "backends.yaml", [w.backend() for w in sims] + [dead_backend()])
    with start_gateway(backends) as gateway:
        memory = httpx.get(serving(gateway) + "/sdapi/v1/memory", timeout=10).json()
    assert set(memory) == {"ram", "cuda", "sdxlpool"}
    assert set(memory["ram"]) == {"free", "used", "total"} and memory["ram"]["used"] > 0
    assert memory["cuda"] == {"error": "unavailable"}
    workers = memory["sdxlpool"]["workers"]
    assert set(workers) == {"a", "b", "c", "dead"}
    assert workers["dead"]["error"].startswith("no answer")
    for name in "abc":  # each worker's own A1111 answer (sim-workers have no CUDA device)
        assert set(workers[name]) == {"ram", "cuda"} and workers[name]["cuda"] == {"error": "unavailable"}


def test_cmd_flags_are_the_gateways_own(sims, tmp_path: Path) -> None:
    backends = write_backends(tmp_path / "backends.yaml", [w.backend() for w in sims])
    with start_gateway(backends, max_attempts=2) as gateway:
        flags = httpx.get(serving(gateway) + "/sdapi/v1/cmd-flags", timeout=10).json()
    assert flags["backends_file"] == str(backends) and flags["max_attempts"] == 2
    assert flags["reload_interval"] == 0.2 and "lora_dir" not in flags  # not a worker's flags


def test_the_webuiapi_client_reads_the_pool_lists(sims, tmp_path: Path) -> None:
    """PyPI `webuiapi`, a real A1111 client: the added `sdxlpool` keys do not disturb it."""
    webuiapi = pytest.importorskip("webuiapi")
    backends = write_backends(tmp_path / "backends.yaml", [w.backend() for w in sims])
    with start_gateway(backends) as gateway:
        host, port = serving(gateway).removeprefix("http://").split(":")
        api = webuiapi.WebUIApi(host=host, port=int(port))
        assert api.has_controlnet is False and api.has_adetailer is False  # set only when /scripts parsed
        assert [lora["name"] for lora in api.get_loras()] == ["only-a", "shared", "only-b"]  # a's, then b's own
        assert api.util_get_model_names() == [m["title"] for m in httpx.get(sims[0].url + "/sdapi/v1/sd-models").json()]
        assert api.get_hypernetworks() == [] and api.get_face_restorers() == [] and api.get_realesrgan_models() == []
        assert set(api.get_memory()["sdxlpool"]["workers"]) == {"a", "b", "c"}
        assert api.get_cmd_flags()["backends_file"] == str(backends)
        assert api.refresh_checkpoints()["refreshed"] == ["a", "b", "c"]


def test_catalog_routes_are_503_when_no_worker_answers(tmp_path: Path) -> None:
    with start_gateway(write_backends(tmp_path / "backends.yaml", [dead_backend()])) as gateway:
        for path in CATALOG:
            answer = httpx.get(serving(gateway) + path, timeout=10)
            assert answer.status_code == 503 and answer.json()["error"] == "no_backend", (path, answer.text)


@pytest.mark.parametrize("path", REFRESHES)
def test_refresh_reaches_every_worker_and_names_the_ones_that_did_not(sims, tmp_path: Path, path: str) -> None:
    direct = {w.name: httpx.post(w.url + path, timeout=30).status_code for w in sims}
    backends = write_backends(tmp_path / "backends.yaml", [w.backend() for w in sims] + [dead_backend()])
    with start_gateway(backends) as gateway:
        answer = httpx.post(serving(gateway) + path, timeout=90)
        body = answer.json()
        # Answered once every worker replied: each one is in exactly one of the two lists.
        assert sorted([*body["refreshed"], *body["failed"]]) == ["a", "b", "c", "dead"]
        assert sorted(body["refreshed"]) == sorted(name for name, status in direct.items() if status == 200)
        assert answer.status_code == 502 and body["error"] == "refresh_incomplete"
        assert body["failed"]["dead"].startswith("no answer")
        assert "dead: no answer" in body["detail"] and f"of {4} workers" in body["detail"]

    live = write_backends(tmp_path / "live.yaml", [w.backend() for w in sims])
    with start_gateway(live) as gateway:
        answer = httpx.post(serving(gateway) + path, timeout=90)
        every_worker_refreshes = all(status == 200 for status in direct.values())
        assert every_worker_refreshes, direct  # each worker has the route
        assert answer.status_code == 200, answer.text
        assert sorted(answer.json()["refreshed"]) == ["a", "b", "c"] and answer.json()["failed"] == {}


@pytest.mark.parametrize("path", REFRESHES)
def test_refresh_with_no_workers_is_503(tmp_path: Path, path: str) -> None:
    with start_gateway(write_backends(tmp_path / "none.yaml", [])) as gateway:
        answer = httpx.post(serving(gateway) + path, timeout=10)
        assert answer.status_code == 503 and answer.json()["error"] == "no_backend", answer.text


# --- the joining rules, on A1111-shaped answers ---------------------------------------------------


def test_union_keeps_the_first_workers_list_and_order_and_adds_what_only_others_have() -> None:
    a = [{"name": "ink", "alias": "ink", "path": "/a/ink.safetensors"},
         {"name": "pixel", "alias": "pixel", "path": "/a/pixel.safetensors"}]
    b = [{"name": "zebra", "alias": "z", "path": "/b/zebra.safetensors"},
         {"name": "ink", "alias": "other", "path": "/b/ink.safetensors"}]
    joined = union_by("name")([Reply("w1", 200, a, gpu="rtx-3090"), Reply("w2", 200, b, gpu="a100")])
    assert joined == [{**a[0], "sdxlpool": {"gpus": ["a100", "rtx-3090"]}},
                      {**a[1], "sdxlpool": {"gpus": ["rtx-3090"]}},
                      {**b[0], "sdxlpool": {"gpus": ["a100"]}}]
    assert "sdxlpool" not in a[0]  # the workers' answers are not changed
    # Workers that agree: exactly one worker's answer, each GPU model once.
    assert union_by("name")([Reply("w1", 200, a, gpu="a100"), Reply("w2", 200, a, gpu="a100")]) == [
        {**item, "sdxlpool": {"gpus": ["a100"]}} for item in a]
    # Answers that are not A1111 lists of objects (an error body, junk) add nothing.
    assert union_by("model_name")([Reply("w1", 200, {"detail": "x"}, gpu="a100"),
                                   Reply("w2", 200, [1, {"model_name": "v.safetensors"}, {"x": 1}], gpu="l4")]) == [
        {"model_name": "v.safetensors", "sdxlpool": {"gpus": ["l4"]}}]


def test_union_by_several_keys_keeps_a_script_of_each_tab() -> None:
    txt = {"name": "x/y/z plot", "is_alwayson": False, "is_img2img": False, "args": []}
    img = {**txt, "is_img2img": True}
    joined = union_by("name", "is_img2img")([Reply("w1", 200, [txt], gpu="a100"), Reply("w2", 200, [img, txt],
                                                                                       gpu="h100")])
    assert [(s["is_img2img"], s["sdxlpool"]["gpus"]) for s in joined] == [(False, ["a100", "h100"]), (True, ["h100"])]


def test_scripts_are_joined_per_tab() -> None:
    a = {"txt2img": ["adetailer"], "img2img": []}
    b = {"txt2img": ["controlnet m2m", "adetailer"], "img2img": ["sd upscale"]}
    assert union_scripts([Reply("w1", 200, a), Reply("w2", 200, b), Reply("w3", 200, ["junk"])]) == {
        "txt2img": ["adetailer", "controlnet m2m"], "img2img": ["sd upscale"]}
    assert union_scripts([]) == {"txt2img": [], "img2img": []}  # A1111's shape, even empty


def test_embeddings_loaded_anywhere_are_loaded() -> None:
    a = {"loaded": {"cat": {"step": None, "shape": 768}}, "skipped": {"dog": {"step": 1}}}
    b = {"loaded": {"dog": {"step": 2, "shape": 768}}, "skipped": {"cow": {}}}
    assert union_embeddings([Reply("w1", 200, a, gpu="a100"), Reply("w2", 200, b, gpu="l4")]) == {
        "loaded": {"cat": {"step": None, "shape": 768, "sdxlpool": {"gpus": ["a100"]}},
                   "dog": {"step": 2, "shape": 768, "sdxlpool": {"gpus": ["l4"]}}},
        "skipped": {"cow": {"sdxlpool": {"gpus": ["l4"]}}}}


def test_pool_memory_names_each_worker() -> None:
    report = {"ram": {"free": 1, "used": 2, "total": 3}, "cuda": {"error": "unavailable"}}
    memory = pool_memory({"free": 4, "used": 5, "total": 9}, [
        Reply("w1", 200, report), Reply("w2", 0, problem="no answer within 5 s"), Reply("w3", 200, [])])
    assert memory == {"ram": {"free": 4, "used": 5, "total": 9}, "cuda": {"error": "unavailable"},
                      "sdxlpool": {"workers": {"w1": report, "w2": {"error": "no answer within 5 s"},
                                               "w3": {"error": "answer is not an object"}}}}


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
    assert all("get" in paths[path] for path in (*CATALOG, "/sdapi/v1/memory", "/sdapi/v1/cmd-flags"))
    assert all("post" in paths[path] for path in REFRESHES)
    assert not any(path in paths for path in ("/sdapi/v1/server-kill", "/sdapi/v1/server-restart",
                                              "/sdapi/v1/server-stop"))
