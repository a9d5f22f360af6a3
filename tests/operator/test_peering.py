"""Two `sdxlpool operator` processes (the real CLI) never fight: kopf peering lets one work.

The one with the higher priority handles pools; the other pauses, and takes over once the first
is gone.
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.operator.conftest import eventually
from tests.operator.test_operator_emulator import POOL, deployments

PEERING = {"apiVersion": "kopf.dev/v1", "kind": "ClusterKopfPeering", "metadata": {"name": "sdxlpool"}, "status": {}}


def start(kubeconfig: Path, priority: int, log: Path) -> subprocess.Popen:
    env = {**os.environ, "SDXLPOOL_OPERATOR_RESYNC_SECONDS": "300"}
    return subprocess.Popen(
        [sys.executable, "-m", "sdxlpool", "operator", "--kubeconfig", str(kubeconfig), "--priority", str(priority)],
        stdout=log.open("w"), stderr=subprocess.STDOUT, env=env,
    )


def watching(emulator, plural: str) -> bool:
    """Whether a watch on `plural` has been opened on the emulator."""
    from kmock._internal import enums

    return any(request.action == enums.action.WATCH and request.resource is not None
               and request.resource.plural == plural for request in list(emulator.emulator))


@pytest.fixture
def pool_named():
    def make(name: str) -> dict:
        body = copy.deepcopy(POOL)
        body["metadata"]["name"] = name
        body["spec"]["gpus"] = [{"model": "A100", "replicas": 1}]
        body["spec"]["gateway"] = {"enabled": False}
        return body
    return make


def test_only_the_highest_priority_operator_works(emulator, kube, tmp_path, pool_named) -> None:
    kube.create(PEERING)
    low_log, high_log = tmp_path / "low.log", tmp_path / "high.log"
    low = start(emulator.kubeconfig, 10, low_log)
    high = None
    try:
        # The second replica starts once the first is watching pools and peerings (the only
        # watches in this emulator are the operator's), so the first sees it arrive and pauses.
        eventually(lambda: "Initial authentication has finished" in low_log.read_text(), timeout=30)
        eventually(lambda: watching(emulator, "sdxlpools") and watching(emulator, "clusterkopfpeerings"), timeout=30)
        high = start(emulator.kubeconfig, 20, high_log)
        eventually(lambda: "Pausing operations in favour of" in low_log.read_text(), timeout=30)
        kube.create(pool_named("peered"))
        eventually(lambda: set(deployments(kube, "peered")) == {"peered-a100"}, timeout=30)
        eventually(lambda: "Handler 'pool_changed' succeeded" in high_log.read_text(), timeout=30)
        # The behaviour under test is that nothing happens in the paused replica: give it a second
        # in which it would have logged handling the pool if it were not paused.
        time.sleep(1)
        assert "pool_changed" not in low_log.read_text()

        # The working replica goes away: the other one takes over.
        high.terminate()
        high.wait(timeout=20)
        kube.create(pool_named("after-failover"))
        eventually(lambda: set(deployments(kube, "after-failover")) == {"after-failover-a100"}, timeout=60)
        assert "Resuming operations after the pause" in low_log.read_text()
    finally:
        for process in (low, high):
            if process is not None and process.poll() is None:
                process.terminate()
                process.wait(timeout=20)
    assert low.returncode == 0, low_log.read_text()[-2000:]
