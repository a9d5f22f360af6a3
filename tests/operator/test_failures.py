"""How the operator tells kopf about failures, and what it keeps per pool.

The real operator (kopf, in-process) against the emulator, which refuses some writes the way an
API server does: a 503 for a while (temporary: kopf retries it, with backoff, and the child
appears once the server recovers, without any edit and long before the resync timer), or a 422
for good (permanent: no retries; the pool's status says why). A deleted pool leaves nothing in
the operator's memo.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Iterator
from typing import Any

import pytest
from kmock._internal import enums

from sdxlpool._kube import KubeError
from sdxlpool.api import labels as lbl
from sdxlpool.operator.settings import OperatorSettings
from sdxlpool.testing.emulator import EmulatorThread, GapFillingEmulator
from tests.operator.conftest import OperatorThread, eventually
from tests.operator.test_operator_emulator import NS, POOL, condition, deployments, get_pool, node

FLAKY_SECONDS = 1.5  # the flaky pool's Deployments are refused (503) this long after the first try
REJECTED_MESSAGE = 'Deployment.apps "rejected-a100" is invalid: spec.template: Invalid value'


class RefusingEmulator(GapFillingEmulator):
    """Refuses to create the Deployments of two pools: "flaky" with 503 for a while, "rejected" with 422."""

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self.attempts: dict[str, int] = {}  # pool -> Deployment creations tried
        self.flaky_until: float | None = None

    async def _handle(self, request: Any) -> Any:
        pool = self._refused_pool(request)
        if pool is None:
            return await super()._handle(request)
        self.attempts[pool] = self.attempts.get(pool, 0) + 1
        if pool == "flaky":
            self.flaky_until = self.flaky_until or time.monotonic() + FLAKY_SECONDS
            if time.monotonic() >= self.flaky_until:
                return await super()._handle(request)
            return _status(503, "ServiceUnavailable", "the API server is overloaded")
        return _status(422, "Invalid", REJECTED_MESSAGE)

    @staticmethod
    def _refused_pool(request: Any) -> str | None:
        if request.action != enums.action.CREATE or request.resource is None or not isinstance(request.data, dict):
            return None
        if request.resource.plural != "deployments":
            return None
        pool = request.data.get("metadata", {}).get("labels", {}).get(lbl.POOL)
        return pool if pool in ("flaky", "rejected") else None


def _status(code: int, reason: str, message: str) -> Any:
    import aiohttp.web

    return aiohttp.web.json_response({"apiVersion": "v1", "kind": "Status", "status": "Failure", "reason": reason,
                                      "code": code, "message": message}, status=code)


class RefusingEmulatorThread(EmulatorThread):
    emulator: RefusingEmulator | None
    emulator_class = RefusingEmulator


@pytest.fixture(scope="module")
def refusing(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RefusingEmulatorThread]:
    with RefusingEmulatorThread(tmp_path_factory.mktemp("kube-refusing")) as server:
        yield server


@pytest.fixture(scope="module")
def refusing_kube(refusing: RefusingEmulatorThread):
    from sdxlpool._kube import connect

    kube = connect(str(refusing.kubeconfig))
    kube.create(node("gpu-a", "NVIDIA-A100-SXM4-80GB"))
    return kube


@pytest.fixture(scope="module")
def slow_timer_operator(refusing: RefusingEmulatorThread, refusing_kube) -> Iterator[OperatorThread]:
    # The safety-net timer far away: whatever happens within a test is kopf's retrying, or nothing.
    with OperatorThread(refusing.kubeconfig, resync_seconds=300, retry_seconds=0.2) as running:
        yield running


def _pool(name: str) -> dict[str, Any]:
    body = copy.deepcopy(POOL)
    body["metadata"]["name"] = name
    body["spec"]["gpus"] = [{"model": "A100", "replicas": 1}]
    body["spec"]["gateway"] = {"enabled": False}
    return body


def test_a_temporary_error_is_retried_until_the_api_server_recovers(refusing, refusing_kube,
                                                                      slow_timer_operator) -> None:
    refusing_kube.create(_pool("flaky"))
    started = time.monotonic()
    eventually(lambda: set(deployments(refusing_kube, "flaky")) == {"flaky-a100"}, timeout=30)
    assert time.monotonic() - started >= FLAKY_SECONDS  # created only once the server recovered
    assert refusing.emulator.attempts["flaky"] >= 2  # refused, then retried by kopf with no edit and no resync
    assert slow_timer_operator.alive


def test_a_permanent_error_is_not_retried_and_the_status_says_why(refusing, refusing_kube,
                                                                   slow_timer_operator) -> None:
    refusing_kube.create(_pool("rejected"))
    degraded = eventually(lambda: condition(get_pool(refusing_kube, "rejected"), "Degraded")["status"] == "True"
                          and condition(get_pool(refusing_kube, "rejected"), "Degraded"), timeout=30)
    assert degraded["reason"] == "Rejected"
    assert "422" in degraded["message"] and REJECTED_MESSAGE in degraded["message"]
    # Each child's own watch event syncs the pool once more, and fails the same way; once those
    # are over, kopf was told it is permanent: no retry comes, though a temporary error's backoff
    # (0.2 s, 0.4 s, 0.8 s, 1.6 s, ...) would have brought one within the window.
    attempts = _attempts_once_quiet(refusing.emulator, "rejected", quiet=1.0)
    time.sleep(3)
    assert refusing.emulator.attempts["rejected"] == attempts
    assert deployments(refusing_kube, "rejected") == {}


def _attempts_once_quiet(emulator: RefusingEmulator, pool: str, quiet: float) -> int:
    """The pool's attempts so far, once none came for `quiet` seconds (at most 20 s)."""
    last, since, deadline = emulator.attempts[pool], time.monotonic(), time.monotonic() + 20
    while time.monotonic() - since < quiet and time.monotonic() < deadline:
        time.sleep(0.05)
        if emulator.attempts[pool] != last:
            last, since = emulator.attempts[pool], time.monotonic()
    return last


@pytest.mark.parametrize("valid", [True, False], ids=["with-children", "invalid-no-children"])
def test_a_deleted_pool_leaves_no_state_behind(refusing, refusing_kube, slow_timer_operator, valid: bool) -> None:
    """An invalid pool has no children whose deletion events could sync it once more: only the
    pool's own DELETED event can drop its state."""
    pools = slow_timer_operator.memo.pools
    name = "passing" if valid else "invalid"
    body = _pool(name)
    if not valid:
        body["spec"]["gpus"] = [{"model": "NoSuchGPU", "replicas": 1}]
    refusing_kube.create(body)
    eventually(lambda: get_pool(refusing_kube, name).get("status", {}).get("observedGeneration"))
    assert (NS, name) in pools

    refusing_kube.delete("sdxlpool.dev/v1alpha1", "SDXLPool", name, NS)
    eventually(lambda: (NS, name) not in pools and deployments(refusing_kube, name) == {})
    time.sleep(0.5)  # the garbage-collected children's events must not bring the pool's state back
    assert (NS, name) not in pools


@pytest.mark.parametrize(("status", "retryable"), [
    (0, True), (409, True), (429, True), (500, True), (503, True),
    (400, False), (403, False), (404, False), (422, False),
])
def test_which_api_errors_may_pass(status: int, retryable: bool) -> None:
    assert KubeError(status, "x").retryable is retryable


def test_retry_delays_double_up_to_a_ceiling() -> None:
    settings = OperatorSettings(retry_seconds=2, retry_max_seconds=30)
    assert [settings.retry_delay(retry) for retry in range(6)] == [2, 4, 8, 16, 30, 30]
    assert settings.retry_delay(10_000) == 30


def test_settings_keep_every_documented_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    """README and the Helm chart set SDXLPOOL_OPERATOR_RESYNC_SECONDS and _WORKERS; SDXLPOOL_KUBECONFIG
    and KUBECONFIG name a kubeconfig; flags (keyword arguments) win."""
    monkeypatch.setenv("SDXLPOOL_OPERATOR_RESYNC_SECONDS", "120")
    monkeypatch.setenv("SDXLPOOL_OPERATOR_WORKERS", "3")
    monkeypatch.setenv("KUBECONFIG", "/from/kubeconfig")
    settings = OperatorSettings()
    assert (settings.resync_seconds, settings.workers, settings.kubeconfig) == (120, 3, "/from/kubeconfig")
    monkeypatch.setenv("SDXLPOOL_KUBECONFIG", "/from/sdxlpool")
    assert OperatorSettings().kubeconfig == "/from/sdxlpool"
    assert OperatorSettings(kubeconfig="/from/flag", resync_seconds=5).kubeconfig == "/from/flag"
    assert OperatorSettings(resync_seconds=5).resync_seconds == 5


def test_each_operator_gets_the_timer_intervals_of_its_settings() -> None:
    """Not read at import time: two operators in one process may differ (these tests' own do)."""
    from sdxlpool.operator.handlers import build_registry

    def timer_intervals(settings: OperatorSettings) -> dict[str, float]:
        spawning = build_registry(settings)._spawning  # kopf keeps timers and daemons here
        return {handler.id: handler.interval for handler in spawning.get_all_handlers()
                if getattr(handler, "interval", None)}

    assert timer_intervals(OperatorSettings(resync_seconds=2)) == {"pool_resync": 2, "pool_autoscale": 15}
    assert timer_intervals(OperatorSettings(resync_seconds=300, autoscale_seconds=1)) == {
        "pool_resync": 300, "pool_autoscale": 1}


def test_a_rejection_keeps_what_was_reported_and_says_why() -> None:
    from sdxlpool.operator.status import rejected_status

    before = {"observedGeneration": 1, "summary": "1/2", "gpus": [{"model": "A100", "ready": 1}], "conditions": [
        {"type": "Ready", "status": "False", "reason": "RollingOut", "message": "", "lastTransitionTime": "t0",
         "observedGeneration": 1},
        {"type": "Degraded", "status": "False", "reason": "AsExpected", "message": "", "lastTransitionTime": "t0",
         "observedGeneration": 1}]}
    status = rejected_status(generation=2, message="the Kubernetes API refused a change: 403: forbidden",
                             previous=before, now="t1")
    assert status["summary"] == "1/2" and status["gpus"] == before["gpus"] and status["observedGeneration"] == 2
    degraded = condition({"status": status}, "Degraded")
    assert (degraded["status"], degraded["reason"], degraded["lastTransitionTime"]) == ("True", "Rejected", "t1")
    assert "403: forbidden" in degraded["message"]
    assert condition({"status": status}, "Ready") == before["conditions"][0]
    # Reported again, unchanged: the same status, so nothing is written.
    assert rejected_status(generation=2, message=degraded["message"], previous=status, now="t2") == status
