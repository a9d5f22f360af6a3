"""Drift repair, each of the operator's two paths on its own.

* The event path: a child edited or deleted by hand is put back because the operator watches its
  children. The operator here runs with the resync timer at its production value (300 s), and
  every repair is awaited for a small fraction of that, so the timer cannot be what repairs.
* The timer: a drift that no event will ever repair, because the sync the event caused failed
  (an event handler's error is not retried by kopf) and nothing changes afterwards. Only the
  resync timer, short here, puts it back.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sdxlpool.operator.settings import OperatorSettings
from sdxlpool.testing.emulator import EmulatorThread, InterceptingEmulator, unavailable
from sdxlpool.testing.operator import OperatorThread
from tests.operator.conftest import eventually
from tests.operator.test_operator_emulator import NS, POOL, deployments, node

PRODUCTION_RESYNC = OperatorSettings.model_fields["resync_seconds"].default
REPAIR_WITHIN = 30.0  # seconds: generous for a loaded 2-core machine, a tenth of the production timer
SHORT_RESYNC = 3.0
QUIET = 1.5  # seconds without a write from the operator: it has worked off what it was doing


def small_pool(name: str) -> dict[str, Any]:
    body = copy.deepcopy(POOL)
    body["metadata"]["name"] = name
    body["spec"]["gpus"] = [{"model": "A100", "replicas": 1}, {"model": "RTX-3090", "replicas": 2}]
    body["spec"]["gateway"] = {"enabled": True, "replicas": 1}
    return body


# -- the event path, with the timer at its production value -----------------------------------------

@pytest.fixture(scope="module")
def production_operator(emulator: EmulatorThread) -> Iterator[tuple[OperatorThread, float]]:
    assert PRODUCTION_RESYNC >= 300
    with OperatorThread(emulator.kubeconfig, resync_seconds=PRODUCTION_RESYNC) as running:
        yield running, time.monotonic()


@pytest.fixture(scope="module")
def events_pool(production_operator, kube) -> dict[str, Any]:
    kube.create(node("gpu-a", "NVIDIA-A100-SXM4-80GB"))
    kube.create(small_pool("events"))
    eventually(lambda: set(deployments(kube, "events")) == {"events-a100", "events-rtx-3090", "events-gateway"})
    return production_operator[0]


def repaired(kube, check, production_operator) -> None:
    eventually(check, timeout=REPAIR_WITHIN)
    _operator, started = production_operator
    # The timer's first run is `resync_seconds` after the pool was seen: it has not run yet.
    assert time.monotonic() - started < PRODUCTION_RESYNC


def test_an_edited_deployment_is_put_back_by_its_event(events_pool, production_operator, kube) -> None:
    kube.patch("apps/v1", "Deployment", "events-a100", {"spec": {"replicas": 9}}, NS)
    repaired(kube, lambda: deployments(kube, "events")["events-a100"]["spec"]["replicas"] == 1, production_operator)
    kube.patch("apps/v1", "Deployment", "events-rtx-3090", {"spec": {"template": {"spec": {"containers": [
        {"name": "worker", "image": "evil/miner:latest"}]}}}}, NS)
    repaired(kube, lambda: {c["image"] for c in deployments(kube, "events")["events-rtx-3090"]["spec"]["template"][
        "spec"]["containers"]} == {POOL["spec"]["image"]}, production_operator)


def test_a_deleted_deployment_is_recreated_by_its_event(events_pool, production_operator, kube) -> None:
    kube.delete("apps/v1", "Deployment", "events-rtx-3090", NS)
    eventually(lambda: "events-rtx-3090" not in deployments(kube, "events"))
    repaired(kube, lambda: deployments(kube, "events")["events-rtx-3090"]["spec"]["replicas"] == 2,
             production_operator)


def test_a_deleted_service_is_recreated_by_its_event(events_pool, production_operator, kube) -> None:
    kube.delete("v1", "Service", "events-workers", NS)
    repaired(kube, lambda: kube.get("v1", "Service", "events-workers", NS) is not None, production_operator)


# -- the timer on its own -----------------------------------------------------------------------------

class RefusingEmulator(InterceptingEmulator):
    """While `refusing`, answers the operator's writes to Deployments with 503 (and counts them)."""

    refusing = False
    refused = 0

    def on_write(self, request: Any, method: str) -> Any | None:
        if self.refusing and request.resource.plural == "deployments":
            self.refused += 1
            return unavailable("refused by the test")
        return None


@pytest.fixture
def refusing_emulator(tmp_path: Path) -> Iterator[EmulatorThread]:
    with EmulatorThread(tmp_path, emulator_class=RefusingEmulator) as server:
        yield server


def test_the_resync_timer_repairs_what_no_event_will(refusing_emulator) -> None:
    from sdxlpool._kube import connect

    server = refusing_emulator.emulator
    assert isinstance(server, RefusingEmulator)
    kube = connect(str(refusing_emulator.kubeconfig))
    kube.create(node("gpu-a", "NVIDIA-A100-SXM4-80GB"))
    with OperatorThread(refusing_emulator.kubeconfig_as(server.token), resync_seconds=SHORT_RESYNC):
        kube.create(small_pool("timed"))
        eventually(lambda: deployments(kube, "timed")["timed-a100"]["spec"]["replicas"] == 1)
        # At rest: the creation handler done (kopf retries *it*, and its retry would repair too).
        eventually(lambda: time.monotonic() - server.last_write > QUIET)

        # The hand edit's event makes the operator sync, and its patch is refused: kopf does not
        # retry an event handler, and no further event comes.
        server.refusing = True
        kube.patch("apps/v1", "Deployment", "timed-a100", {"spec": {"replicas": 9}}, NS)
        eventually(lambda: server.refused >= 1, timeout=REPAIR_WITHIN)
        server.refusing = False
        assert deployments(kube, "timed")["timed-a100"]["spec"]["replicas"] == 9

        # Only the timer syncs the pool again.
        eventually(lambda: deployments(kube, "timed")["timed-a100"]["spec"]["replicas"] == 1,
                   timeout=SHORT_RESYNC * 2 + REPAIR_WITHIN)
    kube.close()
