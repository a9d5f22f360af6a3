"""A pool's workers and gateway are configured from one place (sdxlpool.api.pool_config), so a pool
behaves the same under the operator, the Akash export and `sdxlpool up`.

The regression this guards: a pool whose limits forbid the gateway's own 1024x1024 default worked
under `up` but 422'd every request without a size behind the operator's and the SDL's gateway,
whose configuration had been written out three times and had drifted. Here the gateway runs with
exactly the arguments and environment that `sdxlpool render` and `sdxlpool sdl` print (only where it
listens and how it finds its worker are changed, to a port and a backends file on 127.0.0.1), in
front of a sim-worker told the rendered worker's limits and defaults.
"""

from __future__ import annotations

import base64
import io
import json
import shlex
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import yaml
from PIL import Image

from sdxlpool.api.pool_config import (
    GENERATION_FLAGS,
    gateway_args,
    generation_args,
    pod_worker_args,
    worker_args,
)
from sdxlpool.api.spec import load_spec
from sdxlpool.testing.ports import free_port, free_udp_port
from sdxlpool.testing.processes import spawn, stop, wait_ready

POOL = """
apiVersion: sdxlpool.dev/v1alpha1
kind: SDXLPool
metadata: {name: small, namespace: sdxl}
spec:
  image: ghcr.io/example/sdxlpool-worker:0.1.0
  model: {huggingFace: {repo: stabilityai/stable-diffusion-xl-base-1.0}}
  gpus: [{model: A100, replicas: 1, provider: {name: Lab, location: Here}}]
  defaults: {width: 512, height: 512, steps: 6, cfgScale: 5.5, refinerSwitchAt: 0.7, sampler: Euler}
  limits: {maxPixels: 262144, maxSteps: 30}
  gateway: {rateLimit: {requestsPerMinute: 600, burst: 20}}
"""


def sdxlpool(*args: str, cwd: Path) -> str:
    done = subprocess.run([sys.executable, "-m", "sdxlpool", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def generation_part(args: list[str]) -> list[str]:
    """The limits/defaults flags (and their values) of a rendered command line, in order."""
    flags = {flag.flag for flag in GENERATION_FLAGS}
    return [arg for i, arg in enumerate(args) if arg in flags or (i and args[i - 1] in flags)]


def rendered_by_operator(pool_file: Path) -> tuple[list[str], dict[str, str], list[str]]:
    """(gateway args, gateway env, worker args) of the Deployments `sdxlpool render` prints."""
    objects = list(yaml.safe_load_all(sdxlpool("render", str(pool_file), cwd=pool_file.parent)))
    deployments = {o["metadata"]["name"]: o["spec"]["template"]["spec"]["containers"][0]
                   for o in objects if o["kind"] == "Deployment"}
    gateway, worker = deployments["small-gateway"], deployments["small-a100"]
    assert gateway["command"] == worker["command"] == ["sdxlpool"]
    # Variables the kubelet fills in (the downward API's POD_IP) have no value here.
    return gateway["args"], {e["name"]: e["value"] for e in gateway.get("env", []) if "value" in e}, worker["args"]


def rendered_for_akash(pool_file: Path) -> tuple[list[str], dict[str, str], list[str]]:
    """(gateway args, gateway env, worker args) of the services `sdxlpool sdl` prints."""
    out = pool_file.parent / "deploy.yaml"
    sdxlpool("sdl", str(pool_file), "-o", str(out), cwd=pool_file.parent)
    services = yaml.safe_load(out.read_text())["services"]

    def exec_args(service: dict) -> list[str]:
        assert service["command"] == ["sh", "-c"]
        last = shlex.split(service["args"][0].split(" && ")[-1])  # `exec [env V=1] sdxlpool ARGS...`
        return last[last.index("sdxlpool") + 1:]

    gateway, worker = services["gateway"], next(s for n, s in services.items() if n != "gateway")
    env = dict(item.split("=", 1) for item in gateway["env"])
    return exec_args(gateway), env, exec_args(worker)


def listening_here(args: list[str], backends: Path, port: int) -> list[str]:
    """`args` with only its discovery and addresses replaced: a backends file, 127.0.0.1:`port`,
    and a free UDP port for its peers when it has one (the operator's 8081 may be taken here)."""
    replaced = {"--namespace", "--pool", "--backends", "--host", "--port", "--peer-port"}
    kept = [a for i, a in enumerate(args)
            if a not in replaced and a != "--kubernetes" and not (i and args[i - 1] in replaced)]
    peers = ["--peer-port", str(free_udp_port())] if "--peer-port" in args else []
    return [*kept, "--backends", str(backends), "--host", "127.0.0.1", "--port", str(port), *peers]


@contextmanager
def process(args: list[str], log: Path, env: dict[str, str] | None = None) -> Iterator[str]:
    """`sdxlpool ARGS` (which must include `--port`) until the block ends; yields its URL once ready."""
    url = f"http://127.0.0.1:{args[args.index('--port') + 1]}"
    child = spawn([sys.executable, "-m", "sdxlpool", *args], log, env)
    try:
        try:
            wait_ready(url, child, timeout=90)
        except (RuntimeError, TimeoutError) as exc:
            raise AssertionError(f"{exc}: {log.read_text()[-3000:]}") from None
        yield url
    finally:
        stop(child)


@pytest.mark.parametrize("render", [rendered_by_operator, rendered_for_akash], ids=["operator", "akash-sdl"])
def test_a_512_pool_serves_requests_without_a_size_behind_the_rendered_gateway(render, tmp_path: Path) -> None:
    pool_file = tmp_path / "pool.yaml"
    pool_file.write_text(POOL)
    gateway_rendered, gateway_env, worker_rendered = render(pool_file)
    # The gateway is told what every worker is told.
    assert generation_part(gateway_rendered) == generation_part(worker_rendered) != []

    sim = ["sim-worker", "--gpu-model", "A100", "--step-seconds", "0", "--port", str(free_port()),
           *generation_part(worker_rendered)]
    with process(sim, tmp_path / "sim.log") as sim_url:
        backends = tmp_path / "backends.yaml"
        backends.write_text(yaml.safe_dump({"backends": [{"name": "a100-1", "url": sim_url, "gpu": "A100"}]}))
        gateway = listening_here(gateway_rendered, backends, free_port())
        with process(gateway, tmp_path / "gateway.log", gateway_env) as url:
            answer = httpx.post(url + "/sdapi/v1/txt2img", json={"prompt": "a lighthouse"}, timeout=60)
            assert answer.status_code == 200, answer.text
            image = Image.open(io.BytesIO(base64.b64decode(answer.json()["images"][0])))
            assert image.size == (512, 512)
            info = json.loads(answer.json()["info"])
            assert (info["width"], info["height"], info["steps"], info["cfg_scale"]) == (512, 512, 6, 5.5)
            too_big = httpx.post(url + "/sdapi/v1/txt2img", json={"prompt": "x", "width": 1024, "height": 1024},
                                 timeout=60)
            assert too_big.status_code == 422 and "262144" in too_big.json()["detail"], too_big.text


def test_the_generation_flags_are_exactly_the_shared_settings() -> None:
    """The flag table (what a pool hands its processes) and GenerationSettings (what they validate)
    name the same fields, and every process that serves requests has them all."""
    from sdxlpool._settings import GenerationSettings
    from sdxlpool.gateway.settings import GatewaySettings
    from sdxlpool.sim import SimSettings
    from sdxlpool.worker.settings import WorkerSettings

    assert [f.field for f in GENERATION_FLAGS] == list(GenerationSettings.model_fields)
    for flag in GENERATION_FLAGS:
        assert GenerationSettings.model_fields[flag.field].annotation is flag.kind, flag.field
    for settings in (WorkerSettings, SimSettings, GatewaySettings):
        assert issubclass(settings, GenerationSettings), settings.__name__


def test_workers_and_gateway_get_the_same_limits_and_defaults_everywhere() -> None:
    spec = load_spec(yaml.safe_load(POOL)["spec"])
    expected = generation_args(spec.limits, spec.defaults)
    assert expected[expected.index("--default-width") + 1] == "512"
    assert expected[expected.index("--default-cfg-scale") + 1] == "5.5"
    worker = worker_args(spec, spec.gpus[0], base="/m/base", refiner=None, host="127.0.0.1", port=1, device="cpu")
    gateway = gateway_args(spec, discovery=["--backends", "b.yaml"], host="127.0.0.1", port=2)
    assert generation_part(worker) == generation_part(gateway) == expected
    assert gateway[gateway.index("--rate-limit") + 1] == "600"
    assert gateway[gateway.index("--rate-limit-burst") + 1] == "20"
    assert (worker[worker.index("--provider") + 1], worker[worker.index("--location") + 1]) == ("Lab", "Here")



def test_the_gateway_is_told_the_pools_gpu_models_and_its_latency_target_when_autoscaling() -> None:
    """--pool-gpus: every entry's slug (a request may wait for one at zero workers);
    --latency-target: only when spec.autoscaling is enabled. The gateway's settings take both."""
    from sdxlpool.gateway.settings import GatewaySettings

    pool = yaml.safe_load(POOL)["spec"]
    pool["gpus"].append({"model": "NVIDIA H100 80GB HBM3", "replicas": 0, "provider": {"name": "Lab"}})
    fixed = gateway_args(load_spec(pool), discovery=["--backends", "b.yaml"], host="127.0.0.1", port=2)
    assert fixed[fixed.index("--pool-gpus") + 1] == "a100,h100-80gb" and "--latency-target" not in fixed
    pool["autoscaling"] = {"enabled": True, "latencyTarget": {"p95Seconds": 12.5}}
    scaled = gateway_args(load_spec(pool), discovery=["--backends", "b.yaml"], host="127.0.0.1", port=2)
    assert scaled[scaled.index("--latency-target") + 1] == "12.5"
    settings = GatewaySettings(backends_file="b.yaml", pool_gpus=scaled[scaled.index("--pool-gpus") + 1],
                               latency_target=scaled[scaled.index("--latency-target") + 1])
    assert (settings.pool_gpus, settings.latency_target) == (["a100", "h100-80gb"], 12.5)


FINE_TUNES = """
  loras:
    - huggingFace: {repo: nerijs/pixel-art-xl, file: pixel-art-xl.safetensors}
    - huggingFace: {repo: org/styles, file: sub/ink.safetensors, revision: v2}
  vaes:
    - huggingFace: {repo: madebyollin/sdxl-vae-fp16-fix, file: sdxl.vae.safetensors}
  styles: {huggingFace: {repo: org/styles, file: a1111/styles.csv}}
"""
FINE_TUNE_FLAGS = ("--lora-dir", "--embeddings-dir", "--vae-dir")  # folders; --styles names a file


def downloads_by_folder(commands: list[list[str]], worker: list[str]) -> dict[str, list[str]]:
    """Each `hf download REPO FILE --local-dir DIR` as the path it writes, under the worker flag whose
    folder holds it."""
    found: dict[str, list[str]] = {}
    for command in commands:
        written = f"{command[command.index('--local-dir') + 1]}/{command[3]}"
        if written == worker[worker.index("--styles") + 1]:
            found.setdefault("--styles", []).append(written)
            continue
        (flag,) = [f for f in FINE_TUNE_FLAGS if f in worker and written.startswith(worker[worker.index(f) + 1] + "/")]
        found.setdefault(flag, []).append(written)
    return found


def test_fine_tunes_reach_the_workers_the_same_way_under_the_operator_and_akash(tmp_path: Path) -> None:
    pool_file = tmp_path / "pool.yaml"
    pool_file.write_text(POOL + FINE_TUNES)
    objects = list(yaml.safe_load_all(sdxlpool("render", str(pool_file), cwd=tmp_path)))
    (pod,) = [o["spec"]["template"]["spec"] for o in objects if o["kind"] == "Deployment"
              and o["metadata"]["name"] == "small-a100"]
    operator_worker = pod["containers"][0]["args"]
    operator_downloads = [c["command"] for c in pod["initContainers"] if c["name"] != "download-base"]

    sdxlpool("sdl", str(pool_file), "-o", str(tmp_path / "deploy.yaml"), cwd=tmp_path)
    services = yaml.safe_load((tmp_path / "deploy.yaml").read_text())["services"]
    script = services["worker-a100"]["args"][0].split(" && ")
    akash_downloads = [shlex.split(step) for step in script if step.startswith("hf download") and "--include" not in step]
    last = shlex.split(script[-1])
    akash_worker = last[last.index("sdxlpool") + 1:]

    for worker, downloads in ((operator_worker, operator_downloads), (akash_worker, akash_downloads)):
        assert [f for f in FINE_TUNE_FLAGS if f in worker] == ["--lora-dir", "--vae-dir"]  # listed kinds only
        by_folder = downloads_by_folder(downloads, worker)
        assert [path.rsplit("/", 1)[-1] for path in by_folder["--lora-dir"]] == ["pixel-art-xl.safetensors",
                                                                                  "ink.safetensors"]
        assert [path.rsplit("/", 1)[-1] for path in by_folder["--vae-dir"]] == ["sdxl.vae.safetensors"]
        assert [path.rsplit("/", 1)[-1] for path in by_folder["--styles"]] == ["styles.csv"]  # the file it downloads
        assert downloads[1][-2:] == ["--revision", "v2"]
    # The same layout under each one's own root, and the same flags otherwise.
    assert operator_worker[operator_worker.index("--lora-dir") + 1] == "/fine-tunes/loras"
    assert akash_worker[akash_worker.index("--lora-dir") + 1] == "/tmp/fine-tunes/loras"
    assert generation_part(operator_worker) == generation_part(akash_worker)


def test_a_pool_without_fine_tunes_passes_no_fine_tune_flag() -> None:
    spec = load_spec(yaml.safe_load(POOL)["spec"])
    args = pod_worker_args(spec, spec.gpus[0], port=7860)
    assert not [f for f in (*FINE_TUNE_FLAGS, "--styles") if f in args]
