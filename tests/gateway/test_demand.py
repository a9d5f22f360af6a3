"""`DemandTracker` on a hand-driven clock: window rates per class, waiting requests, the observed
p95, pruning, the class cap, and the GPU models' states from the pool (`model_states`)."""

from __future__ import annotations

import pytest

from sdxlpool.gateway.backends import Backend, BackendState
from sdxlpool.gateway.demand import DemandTracker, class_label, model_states
from sdxlpool.gateway.worker_metrics import WorkerMetrics
from sdxlpool.scaling import DemandReport


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def worker(name: str, gpu: str, *, ready: bool = True, step_seconds: float = 0.0, pending: float = 0.0,
           price: float | None = None, scraped: bool = True) -> BackendState:
    state = BackendState(Backend(name=name, url=f"http://{name}", gpu=gpu, price_per_hour=price))
    if scraped:
        state.metrics = WorkerMetrics(queue_depth=0, inflight=0, pending_steps=pending, step_seconds=step_seconds,
                                      ready=ready)
        state.scraped_at = 999.0
    return state


def test_rates_are_per_class_over_the_window_and_old_arrivals_leave_it() -> None:
    clock = Clock()
    demand = DemandTracker(10.0, clock=clock)
    for _ in range(5):
        demand.arrived(("h100", "a100"), 20.0)  # preference order does not make another class
        clock.now += 1
    demand.arrived(("a100", "h100"), 20.0)
    demand.arrived((), 4.0)
    report = demand.report([])
    assert [c.allowed for c in report.classes] == [(), ("a100", "h100")]
    restricted = report.classes[1]
    assert restricted.arrivals_per_second == pytest.approx(0.6) and restricted.steps_per_second == pytest.approx(12)
    assert report.classes[0].steps_per_second == pytest.approx(0.4)
    clock.now += 8.5  # 1013.5: the arrivals at 1000..1003 are over 10 s old, those at 1004, 1005 not
    restricted = demand.report([]).classes[1]
    assert restricted.arrivals_per_second == pytest.approx(0.2)
    clock.now += 10  # every arrival gone: so are the classes
    assert demand.report([]).classes == ()
    assert demand._arrivals == {}


def test_waiting_requests_count_by_class_until_they_leave_the_queue() -> None:
    clock = Clock()
    demand = DemandTracker(60.0, clock=clock)
    first = demand.wait(("h100",), 30.0)
    clock.now += 4
    second = demand.wait(("h100",), 10.0)
    other = demand.wait((), 5.0)
    clock.now += 1
    report = demand.report([])
    h100 = next(c for c in report.classes if c.allowed == ("h100",))
    assert (h100.waiting, h100.waiting_steps, h100.oldest_wait_seconds) == (2, 40.0, 5.0)
    assert h100.arrivals_per_second == 0  # waiting is not arriving: `arrived` counts that
    assert demand.waiting_steps() == {("h100",): 40.0, (): 5.0}
    demand.done_waiting(first)
    demand.done_waiting(first)  # twice is harmless
    h100 = next(c for c in demand.report([]).classes if c.allowed == ("h100",))
    assert (h100.waiting, h100.oldest_wait_seconds) == (1, 1.0)
    demand.done_waiting(second)
    demand.done_waiting(other)
    assert demand.report([]).classes == () and demand.waiting_count == 0


def test_p95_is_the_nearest_rank_of_the_windows_finished_requests() -> None:
    clock = Clock()
    demand = DemandTracker(30.0, clock=clock)
    assert demand.report([]).p95_seconds is None
    for seconds in range(1, 101):  # 1..100 s
        demand.finished(float(seconds))
    assert demand.report([]).p95_seconds == 95.0
    clock.now += 20
    demand.finished(1000.0)
    assert demand.report([]).p95_seconds == 96.0  # 101 values: rank ceil(95.95) = 96
    clock.now += 15  # the first hundred left the window
    assert demand.report([]).p95_seconds == 1000.0
    clock.now += 30
    assert demand.report([]).p95_seconds is None


def test_classes_beyond_the_cap_count_as_any_model() -> None:
    demand = DemandTracker(60.0, max_classes=3, clock=Clock())
    assert demand.arrived(("a100",), 1) == ("a100",)
    assert demand.arrived(("h100",), 1) == ("h100",)
    assert demand.arrived(("l40s",), 1) == ()  # () is always known: the cap is reached
    assert demand.arrived(("a100",), 1) == ("a100",)  # a known class stays itself
    report = demand.report([])
    assert {c.allowed: c.arrivals_per_second * 60 for c in report.classes} == {
        (): 1, ("a100",): 2, ("h100",): 1}
    assert class_label(()) == "any" and class_label(("a100", "h100")) == "a100,h100"


def test_models_are_the_pools_workers_and_the_pool_gpus_even_without_a_worker() -> None:
    clock = Clock()
    demand = DemandTracker(60.0, pool_gpus=("h100", "a100"), clock=clock)
    down = worker("a100-down", "a100", step_seconds=0.9, pending=7)
    down.record_failure(clock.now)  # circuit open: not ready, its work still pending
    states = [
        worker("a100-1", "a100", step_seconds=0.2, pending=10, price=1.5),
        worker("a100-2", "a100", step_seconds=0.4, price=1.2),
        worker("a100-3", "a100", step_seconds=0.3),
        worker("a100-loading", "a100", ready=False, step_seconds=5.0),
        worker("a100-cold", "a100", step_seconds=0.0),  # ready, not measured yet: no speed
        down,
        worker("rtx-new", "rtx-3090", scraped=False),
    ]
    states[0].dispatch(3.0, clock.now)  # sent after its last scrape: unseen, counted on top
    report = demand.report(states)
    assert [m.gpu for m in report.models] == ["a100", "h100", "rtx-3090"]
    a100, h100, rtx = report.models
    assert (a100.workers, a100.ready) == (6, 4)
    assert a100.seconds_per_step == pytest.approx(0.3)  # median of the ready, measured ones
    assert a100.pending_steps == pytest.approx(10 + 3 + 7)
    assert a100.price_per_hour == 1.2
    assert (h100.workers, h100.ready, h100.seconds_per_step, h100.price_per_hour) == (0, 0, None, None)
    assert (rtx.workers, rtx.ready) == (1, 0)
    assert model_states(states, clock.now) == tuple(m for m in report.models if m.gpu != "h100")


def test_the_report_is_the_json_contract_the_operator_reads() -> None:
    clock = Clock()
    demand = DemandTracker(60.0, pool_gpus=("h100",), clock=clock)
    demand.arrived(("h100",), 30.0)
    token = demand.wait(("h100",), 30.0)
    body = demand.report([]).model_dump(mode="json")
    assert body["classes"] == [{"allowed": ["h100"], "arrivals_per_second": pytest.approx(1 / 60),
                                "steps_per_second": 0.5,
                                "waiting": 1, "waiting_steps": 30.0, "oldest_wait_seconds": 0.0,
                                "steps_cv2": None}]
    assert DemandReport.model_validate(body).model("h100").ready == 0  # type: ignore[union-attr]
    demand.done_waiting(token)


def test_a_window_must_be_positive() -> None:
    with pytest.raises(ValueError, match="window"):
        DemandTracker(0)


def test_the_spread_of_request_sizes_is_reported_per_class() -> None:
    # What the autoscaler's Allen-Cunneen sizing reads: variance / mean^2 of the window's sizes.
    clock = Clock()
    demand = DemandTracker(60.0, clock=clock)
    demand.arrived((), 25.0)
    assert demand.report([]).classes[0].steps_cv2 is None  # one request says nothing of the spread
    for size in (25.0, 25.0, 25.0):
        demand.arrived((), size)
    assert demand.report([]).classes[0].steps_cv2 == pytest.approx(0.0)  # equal jobs: regular
    demand.arrived(("h100",), 10.0)
    demand.arrived(("h100",), 30.0)
    h100 = demand.report([]).classes[1]
    assert h100.steps_cv2 == pytest.approx(100 / 400)  # mean 20, variance 100
