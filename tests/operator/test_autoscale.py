"""The operator's autoscaler: its pure parts (the replicas a sync renders, the scale writes a
decision asks for, status.autoscaling), one step against the emulator (scale subresource, the
gateway pods it reads), and the real operator with a demand server the test controls (the test
plays the gateway; tests/e2e/test_autoscaling.py puts the real gateway and sim-workers there)."""

from __future__ import annotations

import copy
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jsonschema
import pytest

from sdxlpool.api import labels as lbl
from sdxlpool.api.spec import load_pool
from sdxlpool.operator.autoscale import (
    autoscale_step,
    autoscaling_status,
    demand_urls,
    replicas_to_run,
    scale_actions,
    unread_status,
)
from sdxlpool.operator.crd import status_schema
from sdxlpool.operator.desired import desired_state
from sdxlpool.scaling import (
    Autoscaler,
    DemandClass,
    DemandReport,
    ModelDecision,
    ModelState,
    ScalingDecision,
    policy_from_spec,
)
from sdxlpool.testing.emulator import EmulatorThread
from sdxlpool.testing.operator import OperatorThread
from tests.operator.conftest import eventually
from tests.operator.test_crd import as_json_schema

NS = "scaling"
POOL: dict[str, Any] = {
    "apiVersion": "sdxlpool.dev/v1alpha1",
    "kind": "SDXLPool",
    "metadata": {"name": "elastic", "namespace": NS},
    "spec": {
        "image": "ghcr.io/example/sdxlpool-worker:1.0",
        "model": {"volume": {"claimName": "sdxl-weights", "basePath": "sd_xl_base_1.0.safetensors"}},
        "gpus": [
            {"model": "A100", "replicas": 1, "pricePerHour": 2.0, "autoscaling": {"minReplicas": 1, "maxReplicas": 3}},
            {"model": "RTX-4090", "replicas": 0, "pricePerHour": 0.5,
             "autoscaling": {"minReplicas": 0, "maxReplicas": 4}},
            {"model": "L40S", "replicas": 2},  # no bounds: keeps its replicas
        ],
        "gateway": {"enabled": False},
        "placement": {"labelScheme": "nvidia"},
        "autoscaling": {"enabled": True, "latencyTarget": {"p95Seconds": 3}, "scaleUpDelay": 0, "scaleDownDelay": 1},
    },
}


def pool_named(name: str = "elastic", **spec: Any) -> dict[str, Any]:
    body = copy.deepcopy(POOL)
    body["metadata"]["name"] = name
    body["spec"].update(spec)
    return body


def demand(steps_per_second: float) -> DemandReport:
    """A100 measured at 0.1 s/step (the RTX 4090 estimated from it); 4 steps a request."""
    return DemandReport(window_seconds=10, classes=(
        DemandClass(arrivals_per_second=steps_per_second / 4, steps_per_second=steps_per_second),),
        models=(ModelState(gpu="a100", workers=1, ready=1, seconds_per_step=0.1, price_per_hour=2.0),))


# -- pure ------------------------------------------------------------------------------------------

def test_replicas_to_run_remembered_then_reported_then_the_spec_within_bounds() -> None:
    spec = load_pool(pool_named()).spec
    assert replicas_to_run(spec, None, None) == {"a100": 1, "rtx-4090": 0}  # the starting size; l40s not sized
    reported = {"gpus": [{"slug": "a100", "desiredReplicas": 2}, {"slug": "rtx-4090", "desiredReplicas": 9}]}
    assert replicas_to_run(spec, None, reported) == {"a100": 2, "rtx-4090": 4}  # a restart: clamped to max
    assert replicas_to_run(spec, {"a100": 3, "rtx-4090": 1}, reported) == {"a100": 3, "rtx-4090": 1}
    off = load_pool(pool_named(autoscaling={"enabled": False})).spec
    assert replicas_to_run(off, {"a100": 3}, reported) == {}


def test_desired_state_renders_the_autoscalers_replicas_and_render_the_specs() -> None:
    pool = load_pool(pool_named())
    replicas = {d["metadata"]["name"]: d["spec"]["replicas"] for d in desired_state(pool).of_kind("Deployment")}
    assert replicas == {"elastic-a100": 1, "elastic-rtx-4090": 0, "elastic-l40s": 2}
    scaled = desired_state(pool, (), {"a100": 3, "rtx-4090": 2})
    replicas = {d["metadata"]["name"]: d["spec"]["replicas"] for d in scaled.of_kind("Deployment")}
    assert replicas == {"elastic-a100": 3, "elastic-rtx-4090": 2, "elastic-l40s": 2}
    # Nothing else moves: the same manifests but for the replicas.
    for before, after in zip(desired_state(pool).children, scaled.children, strict=True):
        if before["kind"] == "Deployment":
            before, after = copy.deepcopy(before), copy.deepcopy(after)
            before["spec"].pop("replicas"), after["spec"].pop("replicas")
        assert before == after


def test_scale_actions_only_for_sized_models_that_change() -> None:
    spec = load_pool(pool_named()).spec
    decision = ScalingDecision((
        ModelDecision("a100", current=1, desired=1, recommended=1, reason="enough"),
        ModelDecision("rtx-4090", current=0, desired=3, recommended=3, reason="16.9 steps/s needs 3"),
        ModelDecision("l40s", current=5, desired=2, recommended=2, reason="fixed: no autoscaling bounds"),
    ))
    (action,) = scale_actions(spec, "elastic", decision, {"a100": 1, "rtx-4090": 0, "l40s": 5})
    assert (action.deployment, action.current, action.desired) == ("elastic-rtx-4090", 0, 3)
    assert action.message == "rtx-4090: 0 -> 3: 16.9 steps/s needs 3"
    assert scale_actions(spec, "elastic", decision, {"a100": 1}) == []  # no Deployment yet: the sync creates it


def test_autoscaling_status_shape_validates_against_the_crd() -> None:
    spec = load_pool(pool_named()).spec
    decision = Autoscaler(policy_from_spec(spec), started_at=0).step(demand(30), {"a100": 1, "rtx-4090": 0}, now=1)
    status = autoscaling_status(spec, decision, previous=None, now="2026-12-07T07:00:00Z", scaled=True)
    by_slug = {g["slug"]: g for g in status["gpus"]}
    assert by_slug["rtx-4090"] == {"model": "RTX-4090", "slug": "rtx-4090", "desiredReplicas": 3,
                                   "recommendedReplicas": 3, "reason": by_slug["rtx-4090"]["reason"],
                                   "predictedP95Seconds": by_slug["rtx-4090"]["predictedP95Seconds"]}
    assert "needs 3 for p95 <= 3 s" in by_slug["rtx-4090"]["reason"]
    assert 0 < by_slug["rtx-4090"]["predictedP95Seconds"] <= 3
    assert by_slug["l40s"]["reason"].startswith("fixed")
    assert (status["lastScaleTime"], status["demandReadAt"], status["message"]) == (
        "2026-12-07T07:00:00Z", "2026-12-07T07:00:00Z", "")
    later = autoscaling_status(spec, decision, previous=status, now="2026-12-07T07:01:00Z", scaled=False)
    assert later["lastScaleTime"] == "2026-12-07T07:00:00Z" and later["demandReadAt"] == "2026-12-07T07:01:00Z"
    unread = unread_status(spec, {"a100": 1}, previous=later, message="demand not read: refused")
    assert unread["gpus"] == later["gpus"] and unread["message"] == "demand not read: refused"
    assert unread_status(spec, {"a100": 1}, previous=None, message="x")["gpus"][0]["desiredReplicas"] == 1
    validator = jsonschema.Draft4Validator(as_json_schema(status_schema()))
    for shown in (status, later, unread):
        validator.validate({"autoscaling": shown})
    assert not validator.is_valid({"autoscaling": {**status, "gpus": [{**status["gpus"][0], "desiredReplicas": -1}]}})


# -- one step against the emulator, with a demand server the test controls --------------------------

class DemandServer:
    """`GET /v1/demand` answering `report` (None: 503), on 127.0.0.1: the gateway, as the operator sees it."""

    def __init__(self) -> None:
        self.report: DemandReport | None = demand(0)
        self.reads = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                outer.reads += 1
                report = outer.report
                body = b"{}" if report is None else report.model_dump_json().encode()
                self.send_response(503 if report is None else 200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1/demand"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> DemandServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def demand_server() -> Iterator[DemandServer]:
    with DemandServer() as server:
        yield server


@pytest.fixture(scope="module")
def own_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorThread]:
    with EmulatorThread(tmp_path_factory.mktemp("kube")) as server:
        yield server


@pytest.fixture(scope="module")
def kube(own_emulator: EmulatorThread):
    from sdxlpool._kube import connect

    return connect(str(own_emulator.kubeconfig))


def scale_writes(emulator: EmulatorThread, deployment: str) -> list[Any]:
    assert emulator.emulator is not None
    return [r for r in list(emulator.emulator) if r.name == deployment and r.subresource == "scale"
            and str(getattr(r.method, "value", r.method)).upper() == "PATCH"]


def replica_patches(emulator: EmulatorThread, deployment: str) -> list[int]:
    """spec.replicas of every plain PATCH (not through scale) of a Deployment: drift repair's writes."""
    assert emulator.emulator is not None
    return [r.data["spec"]["replicas"] for r in list(emulator.emulator)
            if r.name == deployment and r.subresource is None and isinstance(r.data, dict)
            and str(getattr(r.method, "value", r.method)).upper() == "PATCH"
            and "replicas" in (r.data.get("spec") or {})]


def test_a_step_reads_demand_and_scales_through_the_scale_subresource(own_emulator, kube, demand_server) -> None:
    pool = load_pool(pool_named("step"))
    for child in desired_state(pool).of_kind("Deployment"):
        kube.create(child)
    deployments = {d["metadata"]["name"]: d for d in kube.list("apps/v1", "Deployment", NS)}
    autoscaler = Autoscaler(policy_from_spec(pool.spec), started_at=0)
    demand_server.report = demand(30)
    result = autoscale_step(kube, pool, autoscaler, deployments, remembered=None, previous=None,
                            demand_url=demand_server.url, timeout=5, now=1, stamp="2026-12-07T07:00:00Z")
    assert result.error is None
    assert [a.message.split(":")[0] for a in result.scaled] == ["rtx-4090"]
    assert dict(result.autoscaled.replicas) == {"a100": 1, "rtx-4090": 3}
    scaled = kube.get("apps/v1", "Deployment", "step-rtx-4090", NS)
    assert scaled["spec"]["replicas"] == 3 and scaled["metadata"]["generation"] == 2
    assert len(scale_writes(own_emulator, "step-rtx-4090")) == 1
    assert replica_patches(own_emulator, "step-rtx-4090") == []
    assert result.autoscaled.status["lastScaleTime"] == "2026-12-07T07:00:00Z"

    # The gateway cannot be read: the pool keeps its size, and says why.
    demand_server.report = None
    deployments = {d["metadata"]["name"]: d for d in kube.list("apps/v1", "Deployment", NS)}
    result = autoscale_step(kube, pool, autoscaler, deployments, remembered=result.autoscaled.replicas,
                            previous=result.autoscaled.status, demand_url=demand_server.url, timeout=5, now=30,
                            stamp="2026-12-07T07:00:30Z")
    assert result.scaled == [] and dict(result.autoscaled.replicas) == {"a100": 1, "rtx-4090": 3}
    assert "demand not read" in result.autoscaled.status["message"] and "503" in result.autoscaled.status["message"]
    assert result.autoscaled.status["demandReadAt"] == "2026-12-07T07:00:00Z"
    assert len(scale_writes(own_emulator, "step-rtx-4090")) == 1


def gateway_pod(name: str, pool: str, ip: str, ready: bool) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": NS, "labels": lbl.child_labels(pool, "gateway")},
            "spec": {"containers": [{"name": "gateway", "image": "x"}]},
            "status": {"podIP": ip, "conditions": [{"type": "Ready", "status": str(ready)}]}}


def test_demand_is_read_from_each_ready_gateway_pod_of_the_pool(kube) -> None:
    kube.create(gateway_pod("pods-gateway-1", "pods", "10.0.0.1", True))
    kube.create(gateway_pod("pods-gateway-2", "pods", "10.0.0.2", True))
    kube.create(gateway_pod("pods-gateway-3", "pods", "10.0.0.3", False))  # not ready: not asked
    kube.create(gateway_pod("other-gateway-1", "other", "10.0.0.4", True))  # another pool's
    worker = gateway_pod("pods-a100-1", "pods", "10.0.0.5", True)
    worker["metadata"]["labels"] = lbl.child_labels("pods", "worker", "a100")
    kube.create(worker)
    assert demand_urls(kube, NS, "pods", None) == ["http://10.0.0.1:8080/v1/demand", "http://10.0.0.2:8080/v1/demand"]
    assert demand_urls(kube, NS, "pods", "http://gw.{namespace}.svc/{name}/v1/demand") == [
        f"http://gw.{NS}.svc/pods/v1/demand"]


# -- the real operator, the test playing the gateway ---------------------------------------------

@pytest.fixture(scope="module")
def scaling_operator(own_emulator, demand_server) -> Iterator[OperatorThread]:
    with OperatorThread(own_emulator.kubeconfig, resync_seconds=1, autoscale_seconds=0.3,
                        demand_url=demand_server.url) as running:
        yield running


def get_pool(kube, name: str) -> dict[str, Any]:
    return kube.get("sdxlpool.dev/v1alpha1", "SDXLPool", name, NS)


def replicas_of(kube, name: str) -> int:
    return kube.get("apps/v1", "Deployment", name, NS)["spec"]["replicas"]


def scaled_events(kube, pool: str) -> list[str]:
    return [e.get("message", "") for e in kube.list("v1", "Event", NS)
            if e.get("reason") == "Scaled" and (e.get("involvedObject") or {}).get("name") == pool]


def test_the_operator_scales_reports_and_keeps_what_it_scaled(own_emulator, kube, demand_server,
                                                               scaling_operator) -> None:
    demand_server.report = demand(0)
    for name, product in (("n1", "NVIDIA-A100-SXM4-80GB"), ("n2", "NVIDIA-GeForce-RTX-4090"), ("n3", "NVIDIA-L40S")):
        kube.create({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": {
            lbl.NVIDIA_PRODUCT: product}}})
    kube.create(pool_named("live"))
    eventually(lambda: get_pool(kube, "live")["status"]["autoscaling"]["demandReadAt"])
    assert replicas_of(kube, "live-rtx-4090") == 0

    # Demand: the cheap model scales up, through its scale subresource; status and an Event say why.
    demand_server.report = demand(30)
    eventually(lambda: replicas_of(kube, "live-rtx-4090") == 3)
    assert scale_writes(own_emulator, "live-rtx-4090")
    status = eventually(lambda: {g["slug"]: g for g in get_pool(kube, "live")["status"]["autoscaling"]["gpus"]}
                        ["rtx-4090"]["desiredReplicas"] == 3 and get_pool(kube, "live")["status"])
    by_slug = {g["slug"]: g for g in status["autoscaling"]["gpus"]}
    assert "needs 3 for p95 <= 3 s" in by_slug["rtx-4090"]["reason"]
    assert status["autoscaling"]["lastScaleTime"] and status["autoscaling"]["message"] == ""
    assert eventually(lambda: {g["slug"]: g for g in get_pool(kube, "live")["status"]["gpus"]}
                      ["rtx-4090"]["desired"] == 3)  # the per-GPU status counts the autoscaled replicas
    eventually(lambda: any(m.startswith("rtx-4090: 0 -> 3: ") for m in scaled_events(kube, "live")))

    # Drift repair keeps the autoscaled size: resyncs (every second) never put the spec's 0 back.
    writes = len(scale_writes(own_emulator, "live-rtx-4090"))
    spec_edit = copy.deepcopy(get_pool(kube, "live")["spec"])
    spec_edit["image"] = "ghcr.io/example/sdxlpool-worker:1.1"  # a sync that must patch the Deployment
    kube.patch("sdxlpool.dev/v1alpha1", "SDXLPool", "live", {"spec": spec_edit}, NS)
    eventually(lambda: kube.get("apps/v1", "Deployment", "live-rtx-4090", NS)["spec"]["template"]["spec"][
        "containers"][0]["image"].endswith(":1.1"))
    eventually(lambda: get_pool(kube, "live")["status"]["observedGeneration"] == get_pool(kube, "live")[
        "metadata"]["generation"])
    assert replicas_of(kube, "live-rtx-4090") == 3
    assert 0 not in replica_patches(own_emulator, "live-rtx-4090")
    assert len(scale_writes(own_emulator, "live-rtx-4090")) == writes  # nothing to undo, nothing redone

    # Demand gone: down after scaleDownDelay, to minReplicas.
    demand_server.report = demand(0)
    eventually(lambda: replicas_of(kube, "live-rtx-4090") == 0, timeout=30)
    eventually(lambda: any(m.startswith("rtx-4090: 3 -> 0: no demand") for m in scaled_events(kube, "live")))
    assert replicas_of(kube, "live-a100") == 1 and replicas_of(kube, "live-l40s") == 2

    # The gateway cannot be read: not Degraded, the pool keeps its size and says why.
    demand_server.report = demand(30)
    eventually(lambda: replicas_of(kube, "live-rtx-4090") == 3)
    demand_server.report = None
    message = eventually(lambda: get_pool(kube, "live")["status"]["autoscaling"]["message"])
    assert "demand not read" in message
    degraded = next(c for c in get_pool(kube, "live")["status"]["conditions"] if c["type"] == "Degraded")
    assert degraded["status"] == "False"
    assert replicas_of(kube, "live-rtx-4090") == 3


def test_replicas_outside_the_bounds_are_an_invalid_spec(own_emulator, kube, scaling_operator) -> None:
    bad = pool_named("bounds")
    bad["spec"]["gpus"][0]["replicas"] = 5  # maxReplicas 3
    bad["spec"]["gpus"][1]["autoscaling"] = {"minReplicas": 3, "maxReplicas": 2}
    kube.create(bad)
    degraded = eventually(lambda: next(c for c in get_pool(kube, "bounds")["status"]["conditions"]
                                       if c["type"] == "Degraded"))
    assert degraded["status"] == "True" and degraded["reason"] == "InvalidSpec"
    assert "gpus[0] (A100).replicas (5) must lie within autoscaling minReplicas..maxReplicas (1..3)" in degraded[
        "message"]
    assert "gpus[1] (RTX-4090).autoscaling: minReplicas (3) exceeds maxReplicas (2)" in degraded["message"]
    assert kube.get("apps/v1", "Deployment", "bounds-a100", NS) is None


def test_an_operator_restart_keeps_the_autoscaled_size(own_emulator, kube, demand_server, scaling_operator) -> None:
    """A new operator knows no history: until it reads demand, status.autoscaling says what runs."""
    eventually(lambda: replicas_of(kube, "live-rtx-4090") == 3)
    scaling_operator.__exit__(None, None, None)
    demand_server.report = None
    before = len(replica_patches(own_emulator, "live-rtx-4090"))
    with OperatorThread(own_emulator.kubeconfig, resync_seconds=0.5, autoscale_seconds=0.3,
                        demand_url=demand_server.url):
        reads = demand_server.reads
        eventually(lambda: demand_server.reads > reads + 3)  # resumed, synced, stepped a few times
        assert replicas_of(kube, "live-rtx-4090") == 3
        assert replica_patches(own_emulator, "live-rtx-4090")[before:] in ([], [3])
