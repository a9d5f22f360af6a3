"""The operator converges after a restart: whatever changed while it was down is put right.

The operator is the real CLI (`python -m sdxlpool operator --standalone`), a process of its own:
the first one is SIGKILLed in the middle of a sync (inside one of its writes, by the emulator), and
its successor is a new process, so nothing the first kept in memory can help. The resync timer is
at its production value, so the convergence comes from what a new operator does on resuming.
"""

from __future__ import annotations

import copy
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sdxlpool.api import labels as lbl
from sdxlpool.testing.emulator import EmulatorThread, InterceptingEmulator, unavailable
from sdxlpool.testing.operator import OperatorProcess
from tests.operator.conftest import eventually
from tests.operator.test_operator_emulator import NS, POOL, deployments, node

POOL_API = ("sdxlpool.dev/v1alpha1", "SDXLPool")
OLD_IMAGE, NEW_IMAGE = "ghcr.io/example/sdxlpool-worker:1.0", "ghcr.io/example/sdxlpool-worker:1.1"
QUIET = 1.5  # seconds without a write from the operator: it has worked off what it was doing
CONVERGE_WITHIN = 90.0  # a new process: imports, login, list and watch, then the syncs; a loaded machine


class KillingEmulator(InterceptingEmulator):
    """SIGKILLs `victim` inside its `kill_at`-th write to a Deployment, before the write is applied
    (the operator dies with the request in flight; it never hears back)."""

    victim: subprocess.Popen[bytes] | None = None
    kill_at = 0
    writes: tuple[str, ...] = ()

    def on_write(self, request: Any, method: str) -> Any | None:
        if self.victim is None or request.resource.plural != "deployments" or request.subresource is not None:
            return None
        self.writes += (f"{method} {request.name}",)
        if len(self.writes) < self.kill_at:
            return None
        victim, self.victim = self.victim, None
        os.kill(victim.pid, signal.SIGKILL)
        victim.wait(timeout=30)
        return unavailable("killed")


@pytest.fixture
def killing_emulator(tmp_path: Path) -> Iterator[EmulatorThread]:
    with EmulatorThread(tmp_path, emulator_class=KillingEmulator) as server:
        yield server


def worker_images(deployment: dict[str, Any]) -> set[str]:
    return {c["image"] for c in deployment["spec"]["template"]["spec"]["containers"]}


def test_an_operator_killed_mid_sync_is_replaced_by_a_new_process_that_converges(killing_emulator, tmp_path) -> None:
    from sdxlpool._kube import connect

    server = killing_emulator.emulator
    assert isinstance(server, KillingEmulator)
    kube = connect(str(killing_emulator.kubeconfig))
    for name, product in (("gpu-a", "NVIDIA-A100-SXM4-80GB"), ("gpu-b", "NVIDIA-GeForce-RTX-3090"),
                          ("gpu-c", "NVIDIA-L40S")):
        kube.create(node(name, product))
    body = copy.deepcopy(POOL)
    body["spec"]["image"] = OLD_IMAGE
    body["spec"]["gpus"] = [{"model": "A100", "replicas": 1}, {"model": "RTX-3090", "replicas": 1},
                            {"model": "L40S", "replicas": 1}]
    body["spec"]["gateway"] = {"enabled": True, "replicas": 1}
    kube.create(body)
    operator = OperatorProcess(killing_emulator.kubeconfig_as(server.token), tmp_path / "operator.log",
                               resync_seconds=300)
    try:
        operator.start()
        first = operator.process
        assert first is not None
        eventually(lambda: set(deployments(kube)) == {"demo-a100", "demo-rtx-3090", "demo-l40s", "demo-gateway"},
                   timeout=CONVERGE_WITHIN)
        eventually(lambda: kube.get(*POOL_API, "demo", NS).get("status", {}).get("observedGeneration") == 1)
        eventually(lambda: time.monotonic() - server.last_write > QUIET)  # at rest

        # A new image: four Deployments to patch. The operator dies inside the second patch.
        server.writes, server.kill_at, server.victim = (), 2, first
        kube.patch(*POOL_API, "demo", {"spec": {"image": NEW_IMAGE}}, NS)
        eventually(lambda: first.poll() is not None, timeout=CONVERGE_WITHIN)
        assert first.returncode == -signal.SIGKILL
        images = [worker_images(d) for d in deployments(kube).values()]
        assert images.count({NEW_IMAGE}) == 1 and images.count({OLD_IMAGE}) == 3, (images, server.writes)  # half done

        # Down: someone deletes a child, edits another, and the pool's spec changes again.
        kube.delete("apps/v1", "Deployment", "demo-gateway", NS)
        kube.patch("apps/v1", "Deployment", "demo-a100", {"spec": {"replicas": 7}}, NS)
        spec = copy.deepcopy(kube.get(*POOL_API, "demo", NS)["spec"])
        spec["gpus"] = [{"model": "A100", "replicas": 2}, {"model": "RTX-3090", "replicas": 1}]
        kube.patch(*POOL_API, "demo", {"spec": spec}, NS)
        generation = kube.get(*POOL_API, "demo", NS)["metadata"]["generation"]

        # A new process, with nothing of the first one's memory.
        operator.start()
        assert operator.process is not None and operator.process.pid != first.pid
        def converged() -> bool:
            found = {name: (d["spec"]["replicas"], worker_images(d)) for name, d in deployments(kube).items()}
            assert found == {"demo-a100": (2, {NEW_IMAGE}), "demo-rtx-3090": (1, {NEW_IMAGE}),
                             "demo-gateway": (1, {NEW_IMAGE})}, found
            return True

        eventually(converged, timeout=CONVERGE_WITHIN)
        eventually(lambda: kube.get(*POOL_API, "demo", NS)["status"]["observedGeneration"] == generation,
                   timeout=CONVERGE_WITHIN)
        uid = kube.get(*POOL_API, "demo", NS)["metadata"]["uid"]
        # No duplicates: one Deployment per GPU model, each owned once, by the pool; the Services as they should be.
        found = deployments(kube)
        gpus = [d["metadata"]["labels"].get(lbl.GPU) for d in found.values() if lbl.GPU in d["metadata"]["labels"]]
        assert sorted(gpus) == ["a100", "rtx-3090"]
        for deployment in found.values():
            assert [(o["uid"], o.get("controller")) for o in deployment["metadata"]["ownerReferences"]] == [(uid, True)]
        services = {s["metadata"]["name"] for s in kube.list("v1", "Service", NS)}
        assert services == {"demo-workers", "demo-gateway"}
    finally:
        returncode = operator.stop()
        kube.close()
    assert returncode == 0, (tmp_path / "operator.log").read_text()[-3000:]

