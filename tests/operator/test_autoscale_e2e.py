"""End to end: the real operator sizes a pool from the real gateway's demand, cheapest model first.

The actors: the Kubernetes emulator; the operator (kopf, in-process) reading the demand of a
gateway process (`demand_url`); sim-workers as processes behind that gateway. The test plays the
Deployment controller (`ReplicaController`): it follows each worker Deployment's spec.replicas,
starting sim-workers (ready, then a short start-up delay, then into the gateway's backends file)
when they grow and draining them (out of the backends file, the gateway lets go, their work done,
then stopped) when they shrink, and reports readyReplicas back.

The pool: an A100 (fast, dear: 2.0/h, 1..2 replicas) and an RTX 4090 (slower, cheap per step:
0.5/h, 0..3 replicas, starting at 0). A bounded open-loop load more than one A100 takes within the
2 s target: the cheap RTX 4090 is scaled up (through the scale subresource, with its reason in
status and an Event), the A100 not; the load stops: after the demand window and scaleDownDelay
the RTX 4090 goes back to 0. Every request is answered 200.

The gateway gives a worker at most BACKLOG_SECONDS of work (`backlog_seconds`), so a backlog waits
in the gateway's queue, where any model may take it and the autoscaler places it cheapest first;
work queued on a worker can only be cleared by its own model (the policy sizes that model up for
it), which with the default 60 s would make the busy A100 grow first.
"""

from __future__ import annotations

import asyncio
import re
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from sdxlpool.api import labels as lbl
from sdxlpool.api import metric_names as mn
from sdxlpool.api.ports import DEMAND_PATH
from sdxlpool.testing.emulator import EmulatorThread
from sdxlpool.testing.operator import OperatorThread
from sdxlpool.testing.ports import free_port
from sdxlpool.testing.processes import spawn, stop, wait_ready
from tests.operator.conftest import eventually

pytestmark = pytest.mark.slow

NS = "elastic"
NAME = "burst"
TARGET = 2.0  # p95 seconds
DEMAND_WINDOW = 4.0  # the gateway's averaging window: how soon a stopped load reads as none
SCALE_DOWN_DELAY = 3.0
STARTUP_DELAY = 0.5  # after a sim-worker is ready, before the "pod" is ready (in the backends file)
MODELS = {  # slug: (spec model, price per hour, sim seconds per normalised step, min, max, starting replicas)
    "a100": ("A100", 2.0, 0.02, 1, 2, 1),
    "rtx-4090": ("RTX-4090", 0.5, 0.04, 0, 3, 0),
}
RATE = 6.0  # requests per second, 10 normalised steps each: more than one A100 takes within the target
LOAD_SECONDS = 12.0
BACKLOG_SECONDS = 0.1  # the gateway sends a worker work for this long at most, and holds the rest (below)
BODY = {"prompt": "a lighthouse", "steps": 10, "width": 1024, "height": 1024, "sampler_name": "Euler"}

POOL: dict[str, Any] = {
    "apiVersion": "sdxlpool.dev/v1alpha1",
    "kind": "SDXLPool",
    "metadata": {"name": NAME, "namespace": NS},
    "spec": {
        "image": "ghcr.io/example/sdxlpool-worker:1.0",
        "model": {"volume": {"claimName": "sdxl-weights", "basePath": "sd_xl_base_1.0.safetensors"}},
        "placement": {"labelScheme": "nvidia"},
        "gpus": [{"model": model, "replicas": start, "pricePerHour": price,
                  "autoscaling": {"minReplicas": least, "maxReplicas": most}}
                 for model, price, _step, least, most, start in MODELS.values()],
        "gateway": {"enabled": False},  # the test runs the gateway, where it can reach the sims
        "autoscaling": {"enabled": True, "latencyTarget": {"p95Seconds": TARGET}, "scaleUpDelay": 0,
                        "scaleDownDelay": SCALE_DOWN_DELAY},
    },
}
_GAUGE = {name: re.compile(rf"^{name}\s+(\S+)$", re.M) for name in (mn.WORKER_INFLIGHT, mn.WORKER_QUEUE_DEPTH)}


class SimPod:
    """One worker pod of a Deployment: a sim-worker process."""

    def __init__(self, name: str, slug: str, logs: Path) -> None:
        model, price, step, *_ = MODELS[slug]
        self.name, self.slug, self.price, self.port = name, slug, price, free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = spawn([sys.executable, "-m", "sdxlpool", "sim-worker", "--gpu-model", model,
                              "--step-seconds", str(step), "--port", str(self.port), "--worker-name", name,
                              "--seed", "1"], logs / f"{name}.log")

    def backend(self) -> dict[str, Any]:
        return {"name": self.name, "url": self.url, "gpu": MODELS[self.slug][0], "type": "sdxlpool",
                "pricePerHour": self.price}

    def idle(self) -> bool:
        text = httpx.get(self.url + "/metrics", timeout=2).text
        return all(float(m.group(1)) == 0 for m in (p.search(text) for p in _GAUGE.values()) if m)


class ReplicaController:
    """The Deployment controller, for this test: sim-workers follow each worker Deployment's
    spec.replicas. `history` records (time, slug, pods ready) at each change."""

    def __init__(self, kube: Any, backends: Path, gateway_url: str, logs: Path) -> None:
        self.kube, self.backends, self.gateway_url, self.logs = kube, backends, gateway_url, logs
        self.pods: dict[str, list[SimPod]] = {slug: [] for slug in MODELS}
        self.history: list[tuple[float, str, int]] = []
        self.started = 0
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="replica-controller")
        self._write_backends()

    def __enter__(self) -> ReplicaController:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=60)
        for pods in self.pods.values():
            for pod in pods:
                stop(pod.process)

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                for slug in MODELS:
                    deployment = self.kube.get("apps/v1", "Deployment", f"{NAME}-{slug}", NS)
                    if deployment is not None:
                        self._follow(slug, deployment)
                self._stop.wait(0.2)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc

    def _follow(self, slug: str, deployment: dict[str, Any]) -> None:
        want, pods = int(deployment["spec"].get("replicas", 1)), self.pods[slug]
        if want > len(pods):
            new = [SimPod(f"{slug}-{self.started + i}", slug, self.logs) for i in range(want - len(pods))]
            self.started += len(new)
            for pod in new:
                wait_ready(pod.url, pod.process, timeout=90)
            time.sleep(STARTUP_DELAY)
            pods.extend(new)
            self._write_backends()
        elif want < len(pods):
            leaving, self.pods[slug] = pods[want:], pods[:want]
            self._write_backends()  # the gateway lets go of them first: no new request reaches them
            names = {pod.name for pod in leaving}
            eventually(lambda: not names & {b["name"] for b in httpx.get(
                self.gateway_url + "/v1/backends", timeout=2).json()["backends"]}, timeout=30)
            for pod in leaving:  # then each finishes what it holds
                eventually(lambda pod=pod: pod.idle() and (time.sleep(0.3) or pod.idle()), timeout=60)
                stop(pod.process)
        else:
            return
        ready = len(self.pods[slug])
        self.history.append((time.monotonic(), slug, ready))
        self.kube.patch("apps/v1", "Deployment", f"{NAME}-{slug}", {"status": {
            "observedGeneration": deployment["metadata"].get("generation", 1), "replicas": ready,
            "readyReplicas": ready, "availableReplicas": ready, "updatedReplicas": ready}}, NS, status=True)

    def _write_backends(self) -> None:
        backends = [pod.backend() for pods in self.pods.values() for pod in pods]
        temporary = self.backends.with_suffix(".tmp")
        temporary.write_text(yaml.safe_dump({"backends": backends}))
        temporary.replace(self.backends)  # whole or not at all, for the gateway's reload


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    from sdxlpool._kube import connect

    work = tmp_path_factory.mktemp("autoscale-e2e")
    backends = work / "backends.yaml"
    backends.write_text(yaml.safe_dump({"backends": []}))
    port = free_port()
    gateway_url = f"http://127.0.0.1:{port}"
    gateway = spawn([sys.executable, "-m", "sdxlpool", "gateway", "--backends", str(backends), "--port", str(port),
                     "--scrape-interval", "0.1", "--pool-gpus", ",".join(m[0] for m in MODELS.values()),
                     "--latency-target", str(TARGET), "--demand-window", str(DEMAND_WINDOW)],
                    work / "gateway.log", env={"SDXLPOOL_GATEWAY_RELOAD_INTERVAL": "0.2",
                                                "SDXLPOOL_GATEWAY_BACKLOG_SECONDS": str(BACKLOG_SECONDS)})
    try:
        with EmulatorThread(work) as emulator:
            kube = connect(str(emulator.kubeconfig))
            for name, product in (("n-a100", "NVIDIA-A100-SXM4-80GB"), ("n-4090", "NVIDIA-GeForce-RTX-4090")):
                kube.create({"apiVersion": "v1", "kind": "Node",
                             "metadata": {"name": name, "labels": {lbl.NVIDIA_PRODUCT: product}}})
            with ReplicaController(kube, backends, gateway_url, work) as controller, OperatorThread(
                    emulator.kubeconfig, resync_seconds=2, autoscale_seconds=0.5,
                    demand_url=gateway_url + DEMAND_PATH):
                yield {"kube": kube, "emulator": emulator, "controller": controller, "gateway": gateway_url,
                       "gateway_process": gateway}
    finally:
        stop(gateway)


async def _load(url: str, rate: float, seconds: float) -> list[int]:
    """Open loop: one request every 1/rate seconds for `seconds`, each awaited to its end."""
    async with httpx.AsyncClient(timeout=120) as client:
        async def one() -> int:
            try:
                return (await client.post(url + "/sdapi/v1/txt2img", json=BODY)).status_code
            except httpx.HTTPError as exc:
                return -len(type(exc).__name__)  # lost: no answer
        tasks = []
        for _ in range(int(rate * seconds)):
            tasks.append(asyncio.create_task(one()))
            await asyncio.sleep(1 / rate)
        return list(await asyncio.gather(*tasks))


def scaled_events(kube: Any) -> list[str]:
    events = [e for e in kube.list("v1", "Event", NS)
              if e.get("reason") == "Scaled" and (e.get("involvedObject") or {}).get("name") == NAME]
    events.sort(key=lambda e: int(e["metadata"].get("resourceVersion") or 0))
    return [e.get("message", "") for e in events]


def autoscaling(kube: Any) -> dict[str, Any]:
    return kube.get("sdxlpool.dev/v1alpha1", "SDXLPool", NAME, NS)["status"]["autoscaling"]


def replicas(kube: Any, slug: str) -> int:
    return kube.get("apps/v1", "Deployment", f"{NAME}-{slug}", NS)["spec"]["replicas"]


def test_demand_scales_the_cheap_model_up_and_back_down_and_loses_nothing(cluster) -> None:
    kube, emulator, controller = cluster["kube"], cluster["emulator"], cluster["controller"]
    kube.create(POOL)
    # At rest: the A100's one starting replica up, the RTX 4090 at zero, demand read.
    wait_ready(cluster["gateway"], cluster["gateway_process"], timeout=90)  # ready: some backend serves
    eventually(lambda: autoscaling(kube)["demandReadAt"], timeout=60)
    assert (replicas(kube, "a100"), replicas(kube, "rtx-4090")) == (1, 0)

    codes = asyncio.run(_load(cluster["gateway"], RATE, LOAD_SECONDS))
    assert controller.error is None, controller.error
    assert sorted(set(codes)) == [200], {code: codes.count(code) for code in set(codes)}

    # The cheap model was scaled up first (the A100's minReplicas took what it could), through
    # the scale subresource, with its reason in status and as an Event.
    events = scaled_events(kube)
    assert events and events[0].startswith("rtx-4090: 0 -> "), events
    assert any(slug == "rtx-4090" and ready > 0 for _, slug, ready in controller.history)
    assert emulator.emulator is not None
    assert [r for r in list(emulator.emulator) if r.name == f"{NAME}-rtx-4090" and r.subresource == "scale"]
    assert "p95 <= 2 s" in events[0], events[0]

    # Load stopped: after the demand window and scaleDownDelay, back to zero; the A100 stays at its min.
    eventually(lambda: replicas(kube, "rtx-4090") == 0, timeout=60)
    eventually(lambda: any(m.startswith("rtx-4090: ") and " -> 0: " in m for m in scaled_events(kube)))
    eventually(lambda: not controller.pods["rtx-4090"], timeout=60)
    status = autoscaling(kube)
    by_slug = {g["slug"]: g for g in status["gpus"]}
    assert by_slug["rtx-4090"]["desiredReplicas"] == 0 and by_slug["a100"]["desiredReplicas"] >= 1
    assert status["lastScaleTime"] and status["message"] == ""
    assert controller.error is None, controller.error

