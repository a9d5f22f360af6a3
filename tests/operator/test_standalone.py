"""`sdxlpool operator --standalone` (the real CLI, one replica, no peering objects) does its work.

With kopf's peering name set, kopf requires the peering objects; a standalone operator never
watches them, so it used to pause forever without a word, handling no pool at all.
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys

from tests.operator.conftest import eventually
from tests.operator.test_operator_emulator import POOL, deployments


def test_a_standalone_operator_handles_pools(emulator, kube, tmp_path) -> None:
    body = copy.deepcopy(POOL)
    body["metadata"]["name"] = "alone"
    body["spec"]["gpus"] = [{"model": "A100", "replicas": 1}]
    body["spec"]["gateway"] = {"enabled": False}
    kube.create(body)
    log = tmp_path / "operator.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "sdxlpool", "operator", "--kubeconfig", str(emulator.kubeconfig), "--standalone"],
        stdout=log.open("w"), stderr=subprocess.STDOUT, env={**os.environ, "SDXLPOOL_OPERATOR_RESYNC_SECONDS": "300"},
    )
    try:
        eventually(lambda: set(deployments(kube, "alone")) == {"alone-a100"}, timeout=60)
    finally:
        process.terminate()
        process.wait(timeout=20)
    assert process.returncode == 0, log.read_text()[-2000:]
