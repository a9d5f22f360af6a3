"""Two real gateway processes sharing their dispatches over UDP (gateway/peers.py), sim-workers
behind them, everything on 127.0.0.1."""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from sdxlpool.api import metric_names as mn
from sdxlpool.testing.ports import free_port, free_udp_port
from sdxlpool.testing.processes import spawn, stop, wait_ready, wait_scraped
from tests.gateway.conftest import body, write_backends
from tests.polling import metrics, wait_for

DEBUG = {"X-SDXL-Debug-Routing": "1"}


@contextmanager
def gateway(backends: Path, log: Path, port: int, peer_port: int, peer: int, *args: str,
            env: dict[str, str] | None = None) -> Iterator[str]:
    """`sdxlpool gateway` on 127.0.0.1:`port`, sharing dispatches with the one at UDP `peer`."""
    process = spawn([sys.executable, "-m", "sdxlpool", "gateway", "--backends", str(backends), "--port", str(port),
                     "--peer-port", str(peer_port), "--peers", f"127.0.0.1:{peer}", *args], log, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, process, timeout=90)
        yield url
    finally:
        stop(process)


def unseen_steps(url: str, worker: str) -> float:
    return next(b["unseenSteps"] for b in httpx.get(url + "/v1/backends", timeout=10).json()["backends"]
                if b["name"] == worker)


def peer_messages(url: str, direction: str, outcome: str) -> float:
    return metrics(url).get(f"{mn.exported(mn.GATEWAY_PEER_MESSAGES)}{{direction={direction},outcome={outcome}}}", 0.0)


@pytest.mark.parametrize("sims", [[("fast", 0.02), ("slow", 0.2)]], indirect=True)
def test_a_dispatch_through_one_replica_steers_the_others_next_decision(sims, tmp_path) -> None:
    """A sends a long job to the only fast worker; B, whose one scrape of the workers is from before
    that (it scrapes once a minute here), learns of it from A's announcement alone, and sends its
    own request to the slow worker, which now finishes it sooner. Without the announcement (or with
    it not applied) B would pick the fast worker, idle as far as its scrape knows."""
    backends = write_backends(tmp_path / "backends.yaml", [s.backend() for s in sims])
    peer_a, peer_b = free_udp_port(), free_udp_port()
    with gateway(backends, tmp_path / "a.log", free_port(), peer_a, peer_b) as a, \
            gateway(backends, tmp_path / "b.log", free_port(), peer_b, peer_a, "--scrape-interval", "60",
                    env={"SDXLPOOL_GATEWAY_STALE_AFTER": "600"}) as b:
        wait_scraped(a, 2, timeout=60)
        wait_scraped(b, 2, timeout=60)  # B's one scrape: both idle
        assert unseen_steps(b, "fast") == 0.0

        # Through A: 150 normalised steps, about 3 s on the fast worker (30 s on the slow one).
        through_a: list[httpx.Response] = []
        sender = threading.Thread(target=lambda: through_a.append(httpx.post(
            a + "/sdapi/v1/txt2img", json=body(steps=150, seed=1), timeout=120)))
        sender.start()

        def b_heard_of_it() -> bool:
            assert not through_a or through_a[0].status_code == 200, through_a[0].text
            return unseen_steps(b, "fast") == 150.0

        try:
            wait_for(b_heard_of_it, timeout=30)  # B's view counts A's dispatch
            # Through B: 10 steps. Fast: (0 scraped + 150 heard + 10) x 0.02 s = 3.2 s; slow: 10 x 0.2 s = 2 s.
            answer = httpx.post(b + "/sdapi/v1/txt2img", json=body(steps=10, seed=2), headers=DEBUG, timeout=120)
        finally:
            sender.join(120)
        assert answer.status_code == 200, answer.text
        (decision,) = json.loads(answer.json()["info"])["sdxlpool"]["routing"]
        assert answer.headers["X-SDXL-Worker"] == decision["picked"] == "slow", decision
        assert decision["expected_seconds"] == pytest.approx(2.0, rel=0.25), decision
        scores = decision["scores"]["completion_time"]
        assert scores["slow"] > scores["fast"], decision
        assert through_a and through_a[0].status_code == 200 and through_a[0].headers["X-SDXL-Worker"] == "fast"

        assert peer_messages(a, "sent", "ok") >= 1 and peer_messages(b, "received", "ok") >= 1
        assert peer_messages(a, "received", "ignored") == peer_messages(b, "received", "ignored") == 0
        assert peer_messages(a, "sent", "error") == peer_messages(b, "sent", "error") == 0

