"""Kubernetes discovery: the pool's ready worker pods become backends (against the emulator)."""

from __future__ import annotations

import subprocess
import sys

import httpx
import pytest

from sdxlpool.api import labels as lbl
from sdxlpool.gateway.discovery.kubernetes import backends_from_pods, peers_from_pods
from sdxlpool.testing.ports import free_port, free_udp_port
from tests.conftest import ServerThread
from tests.operator.conftest import eventually

NS = "sdxl"


def pod(name: str, *, pool: str = "demo", component: str = "worker", ready: bool = True, ip: str = "10.0.0.7",
        phase: str = "Running", deleting: bool = False, gpu_model: str = "A100") -> dict:
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": NS,
                     "labels": {lbl.POOL: pool, lbl.COMPONENT: component,
                                lbl.GPU: "a100"},
                     "annotations": {lbl.ANNOTATION_GPU_MODEL: gpu_model, lbl.ANNOTATION_PROVIDER: "Foundry",
                                     lbl.ANNOTATION_LOCATION: "US-East", lbl.ANNOTATION_PRICE: "1.1"},
                     **({"deletionTimestamp": "2026-01-01T00:00:00Z"} if deleting else {})},
        "status": {"phase": phase, "podIP": ip,
                   "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]},
    }


@pytest.mark.parametrize(
    ("pods", "expected"),
    [
        pytest.param([pod("w1")], ["w1"], id="ready-worker"),
        pytest.param([pod("w1", ready=False)], [], id="not-ready"),
        pytest.param([pod("w1", pool="other")], [], id="other-pool"),
        pytest.param([pod("g1", component="gateway")], [], id="gateway-pod"),
        pytest.param([pod("w1", phase="Pending")], [], id="pending"),
        pytest.param([pod("w1", deleting=True)], [], id="terminating"),
        pytest.param([pod("w1", ip="")], [], id="no-ip-yet"),
        pytest.param([pod("w2"), pod("w1")], ["w1", "w2"], id="sorted"),
        pytest.param([pod("w1", gpu_model="banana")], [], id="bad-gpu-skipped"),
    ],
)
def test_backends_from_pods(pods, expected) -> None:
    backends = backends_from_pods(pods, "demo")
    assert [b.name for b in backends] == expected
    for backend in backends:
        assert backend.url == "http://10.0.0.7:7860" and backend.gpu == "a100"
        assert (backend.provider, backend.location, backend.price_per_hour) == ("Foundry", "US-East", 1.1)


@pytest.mark.parametrize(
    ("pods", "expected"),
    [
        pytest.param([pod("g1", component="gateway", ip="10.0.0.1")], [("10.0.0.1", 8081)], id="ready-gateway"),
        pytest.param([pod("g1", component="gateway", ip="10.0.0.9")], [], id="this-pod-left-out"),
        pytest.param([pod("w1", ip="10.0.0.1")], [], id="worker-pod"),
        pytest.param([pod("g1", component="gateway", pool="other", ip="10.0.0.1")], [], id="other-pool"),
        pytest.param([pod("g1", component="gateway", ready=False, ip="10.0.0.1")], [], id="not-ready"),
        pytest.param([pod("g1", component="gateway", deleting=True, ip="10.0.0.1")], [], id="terminating"),
        pytest.param([pod("g1", component="gateway", phase="Pending", ip="10.0.0.1")], [], id="pending"),
        pytest.param([pod("g1", component="gateway", ip="")], [], id="no-ip-yet"),
        pytest.param([pod("g2", component="gateway", ip="10.0.0.2"), pod("g1", component="gateway", ip="10.0.0.1"),
                      pod("g3", component="gateway", ip="10.0.0.9")],
                     [("10.0.0.1", 8081), ("10.0.0.2", 8081)], id="the-others-sorted"),
    ],
)
def test_peers_from_pods(pods, expected) -> None:
    assert peers_from_pods(pods, "demo", 8081, own_ip="10.0.0.9") == expected


def test_peers_from_pods_without_an_own_ip_leaves_nothing_out() -> None:
    assert peers_from_pods([pod("g1", component="gateway", ip="10.0.0.9")], "demo", 8081, own_ip=None) == [
        ("10.0.0.9", 8081)]


def _ready(url: str) -> bool:
    try:
        return httpx.get(url + "/readyz", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


def test_the_gateway_follows_the_pools_pods(emulator, kube, monkeypatch) -> None:
    """A sim-worker on 127.0.0.2:7860 plays a pod's container; the pod comes and goes."""
    from sdxlpool.gateway.app import create_app
    from sdxlpool.gateway.settings import GatewaySettings

    sim = subprocess.Popen([sys.executable, "-m", "sdxlpool", "sim-worker", "--gpu-model", "A100",
                            "--step-seconds", "0.01", "--host", "127.0.0.2", "--port", "7860"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    monkeypatch.setenv("KUBECONFIG", str(emulator.kubeconfig))
    port = free_port()
    settings = GatewaySettings(kubernetes=True, namespace=NS, pool="demo", port=port)
    try:
        eventually(lambda: _ready("http://127.0.0.2:7860"), timeout=60)
        kube.create(pod("demo-a100-abc", ip="127.0.0.2"))
        kube.create(pod("other-pool-pod", pool="other", ip="127.0.0.3"))
        with ServerThread(create_app(settings), port) as gateway:
            gateway.wait_ready(timeout=30)
            view = httpx.get(gateway.url + "/v1/backends").json()["backends"]
            assert [b["name"] for b in view] == ["demo-a100-abc"]
            response = httpx.post(gateway.url + "/sdapi/v1/txt2img", timeout=30,
                                  json={"prompt": "x", "steps": 2, "width": 128, "height": 128})
            assert response.status_code == 200 and response.headers["X-SDXL-Worker"] == "demo-a100-abc"
            assert response.headers["X-SDXL-Provider"] == "Foundry"
            kube.delete("v1", "Pod", "demo-a100-abc", NS)
            eventually(lambda: httpx.get(gateway.url + "/v1/backends").json()["backends"] == [], timeout=20)
            assert httpx.post(gateway.url + "/sdapi/v1/txt2img", json={"prompt": "x"}, timeout=10).status_code == 503
    finally:
        sim.terminate()
        sim.wait(timeout=15)


def test_a_pod_that_turns_unready_or_starts_terminating_leaves_the_gateways_pool(emulator, kube, monkeypatch) -> None:
    """Scale-down drains: the pod chosen for removal is terminating (deletionTimestamp set, the pod
    still there while it finishes its work) or unready before it is gone, and the gateway drops it
    from the set it routes to at once."""
    from sdxlpool.gateway.app import create_app
    from sdxlpool.gateway.settings import GatewaySettings

    monkeypatch.setenv("KUBECONFIG", str(emulator.kubeconfig))
    port = free_port()
    settings = GatewaySettings(kubernetes=True, namespace=NS, pool="demo", port=port)

    def names(gateway) -> list[str] | None:
        try:
            return [b["name"] for b in httpx.get(gateway.url + "/v1/backends").json()["backends"]]
        except httpx.TransportError:  # not listening yet
            return None

    kube.create(pod("demo-a100-1", ip="127.0.0.9"))
    held = pod("demo-a100-2", ip="127.0.0.10")
    held["metadata"]["finalizers"] = ["example.com/hold"]  # deleted, it stays (terminating) until released
    kube.create(held)
    with ServerThread(create_app(settings), port) as gateway:
        eventually(lambda: names(gateway) == ["demo-a100-1", "demo-a100-2"], timeout=20)
        kube.patch("v1", "Pod", "demo-a100-1", {"status": {"conditions": [{"type": "Ready", "status": "False"}]}},
                   NS, status=True)
        eventually(lambda: names(gateway) == ["demo-a100-2"], timeout=20)
        kube.delete("v1", "Pod", "demo-a100-2", NS)
        terminating = kube.get("v1", "Pod", "demo-a100-2", NS)
        assert terminating is not None and terminating["metadata"].get("deletionTimestamp")  # still there, draining
        eventually(lambda: names(gateway) == [], timeout=20)
        kube.patch("v1", "Pod", "demo-a100-2", {"metadata": {"finalizers": None}}, NS)


def test_the_gateway_finds_its_peers_among_the_pools_gateway_pods(emulator, kube, monkeypatch) -> None:
    """The other ready gateway pods of the pool become the gateway's peers, itself (POD_IP) left out."""
    from sdxlpool.gateway.app import create_app
    from sdxlpool.gateway.settings import GatewaySettings

    monkeypatch.setenv("KUBECONFIG", str(emulator.kubeconfig))
    monkeypatch.setenv("POD_IP", "127.0.0.5")  # as the downward API sets it
    port, peer_port = free_port(), free_udp_port()
    settings = GatewaySettings(kubernetes=True, namespace=NS, pool="demo", port=port, peer_port=peer_port)
    app = create_app(settings)

    def peers() -> list[tuple[str, int]] | None:
        service = getattr(app.state, "gateway", None)
        return list(service.peers.peers) if service is not None and service.peers is not None else None

    kube.create(pod("demo-gateway-self", component="gateway", ip="127.0.0.5"))
    kube.create(pod("demo-gateway-other", component="gateway", ip="127.0.0.6"))
    kube.create(pod("other-gateway", component="gateway", pool="other", ip="127.0.0.7"))
    with ServerThread(app, port):
        eventually(lambda: peers() == [("127.0.0.6", peer_port)], timeout=20)
        kube.create(pod("demo-gateway-new", component="gateway", ip="127.0.0.8"))
        eventually(lambda: peers() == [("127.0.0.6", peer_port), ("127.0.0.8", peer_port)], timeout=20)
        kube.patch("v1", "Pod", "demo-gateway-other",
                   {"status": {"conditions": [{"type": "Ready", "status": "False"}]}}, NS, status=True)
        eventually(lambda: peers() == [("127.0.0.8", peer_port)], timeout=20)
