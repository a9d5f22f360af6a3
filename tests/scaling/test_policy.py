"""`recommend`: demand, speeds, prices and restrictions in, replicas per GPU model out (pure tables).

Speeds without a measurement are the estimates of sdxlpool.scaling.speeds: 0.085 s per normalised
step on an H100, 0.17 on an RTX 4090 and 0.283 on an RTX 3090. Prices per step: H100 2.49 $/h x
0.085 = 0.212, RTX 4090 0.69 x 0.17 = 0.117, RTX 3090 0.43 x 0.283 = 0.122 ($/h x s/step).
"""

from __future__ import annotations

import pytest

from sdxlpool.scaling import (
    DemandClass,
    DemandReport,
    ModelPolicy,
    ModelState,
    ScalingPolicy,
    arrivals_within_target,
    recommend,
    servers_for_target,
)

PRICES = {"h100": 2.49, "rtx-4090": 0.69, "rtx-3090": 0.43}
SPS = {"h100": 0.085, "rtx-4090": 0.17, "rtx-3090": 0.085 / 0.3}
STEPS = 25.0  # every request below is 25 normalised steps


def model(gpu: str, *, low: int = 0, high: int = 10, replicas: int | None = None) -> ModelPolicy:
    return ModelPolicy(gpu=gpu, replicas=low if replicas is None else replicas, min_replicas=low, max_replicas=high,
                       price_per_hour=PRICES[gpu])


def demand(steps_per_second: float, allowed: tuple[str, ...] = (), *models: ModelState,
           more: tuple[DemandClass, ...] = ()) -> DemandReport:
    first = DemandClass(allowed=allowed, arrivals_per_second=steps_per_second / STEPS,
                        steps_per_second=steps_per_second)
    return DemandReport(classes=(first, *more), models=models)


def replicas(policy: ScalingPolicy, report: DemandReport) -> dict[str, int]:
    return {gpu: r.replicas for gpu, r in recommend(policy, report).items()}


def sized(steps_per_second: float, gpu: str, target: float = 30.0, headroom: float = 0.15) -> int:
    """What the M/M/c sizing asks for `steps_per_second` (with the policy's headroom) on `gpu` alone."""
    needed = servers_for_target(steps_per_second * (1 + headroom) / STEPS, STEPS * SPS[gpu], target, most=50)
    assert needed is not None
    return needed


@pytest.mark.parametrize(("models", "report", "expected"), [
    pytest.param((model("h100"), model("rtx-4090")), demand(20.0), {"h100": 0, "rtx-4090": sized(20.0, "rtx-4090")},
                 id="the cheapest per step takes the demand"),
    pytest.param((model("rtx-3090"), model("rtx-4090")), demand(20.0), {"rtx-3090": 0, "rtx-4090": sized(20.0, "rtx-4090")},
                 id="price per step, not per hour: the 3090 is cheaper per hour, dearer per step"),
    pytest.param((model("h100"), model("rtx-4090")), demand(5.0, ("h100",)), {"h100": sized(5.0, "h100"), "rtx-4090": 0},
                 id="a class that allows only the H100 goes to the H100"),
    pytest.param((model("h100", low=1), model("rtx-4090")), demand(1.0), {"h100": 1, "rtx-4090": 0},
                 id="minReplicas' capacity, paid anyway, is used first"),
    pytest.param((model("h100"), model("rtx-4090"), model("rtx-3090")), demand(0.0), {"h100": 0, "rtx-4090": 0, "rtx-3090": 0},
                 id="no demand, minReplicas 0: scaled to zero"),
    pytest.param((model("h100", low=2), model("rtx-4090", high=3)), demand(0.0), {"h100": 2, "rtx-4090": 0},
                 id="no demand: held at minReplicas"),
    pytest.param((model("rtx-4090", high=2), model("rtx-3090", high=20)), demand(40.0),
                 {"rtx-4090": 2, "rtx-3090": sized(46.0 - 25 * arrivals_within_target(
                     2, 25 * 0.17, 30.0), "rtx-3090", headroom=0.0)},
                 id="past maxReplicas the next cheapest takes the rest"),
    pytest.param((model("rtx-4090", high=3),), demand(400.0), {"rtx-4090": 3},
                 id="more than maxReplicas can take: held at maxReplicas"),
])
def test_replicas_for_demand(models: tuple[ModelPolicy, ...], report: DemandReport, expected: dict[str, int]) -> None:
    assert replicas(ScalingPolicy(models=models), report) == expected


def test_a_model_too_slow_for_the_target_is_skipped_unless_nothing_faster_is_allowed() -> None:
    """Target 5 s: a 25-step request takes 7.1 s on an RTX 3090 (too slow), 4.25 s on an RTX 4090."""
    policy = ScalingPolicy(models=(model("rtx-3090"), model("rtx-4090")), p95_target=5.0)
    assert replicas(policy, demand(2.0)) == {"rtx-3090": 0, "rtx-4090": sized(2.0, "rtx-4090", target=5.0)}
    only_slow = recommend(policy, demand(2.0, ("rtx-3090",)))
    assert only_slow["rtx-3090"].replicas == 10 and "over the 5 s target" in only_slow["rtx-3090"].reason


def test_a_measured_speed_wins_over_the_estimate() -> None:
    """An RTX 4090 measured at 0.5 s per step costs 0.345 per step: the H100 (0.212) is cheaper now."""
    policy = ScalingPolicy(models=(model("h100"), model("rtx-4090")))
    measured = (ModelState(gpu="h100", ready=1, seconds_per_step=0.085),
                ModelState(gpu="rtx-4090", ready=1, seconds_per_step=0.5))
    assert replicas(policy, demand(5.0, (), *measured)) == {"h100": sized(5.0, "h100"), "rtx-4090": 0}


def test_the_restricted_class_is_placed_before_the_open_one() -> None:
    """The H100-only class fills the H100's minReplicas first; the open class then goes elsewhere."""
    policy = ScalingPolicy(models=(model("h100", low=1, high=1), model("rtx-4090")))
    report = demand(8.0, ("h100",), more=(DemandClass(arrivals_per_second=0.4, steps_per_second=10.0),))
    load = {gpu: r.load_steps_per_second for gpu, r in recommend(policy, report).items()}
    assert load["h100"] >= 8.0 * 1.15 and replicas(policy, report)["rtx-4090"] >= 1


def test_jobs_running_at_the_sizings_pace_are_not_a_backlog() -> None:
    """One 25-step job in flight on the one RTX 4090 a light demand needs: still one worker."""
    policy = ScalingPolicy(models=(model("rtx-4090"),))
    busy = ModelState(gpu="rtx-4090", workers=1, ready=1, pending_steps=25.0)
    assert replicas(policy, demand(2.0, (), busy)) == {"rtx-4090": 1}


def test_work_queued_on_a_models_workers_adds_no_replica_of_it() -> None:
    """2000 steps queued on two RTX 4090s and nothing arriving: that work stays where it was sent, a
    new RTX 4090 could not take any of it, so the model is sized for arrivals only (its minimum).
    This is what keeps a busy dear model from growing ahead of a cheaper one that new work can use."""
    policy = ScalingPolicy(models=(model("rtx-4090", high=20),))
    backlog = ModelState(gpu="rtx-4090", workers=2, ready=2, pending_steps=2000.0)
    rec = recommend(policy, demand(0.0, (), backlog))["rtx-4090"]
    assert rec.replicas == policy.models[0].min_replicas and rec.reason.startswith("no demand")


def test_waiting_requests_are_cleared_within_the_target() -> None:
    """A gateway backlog counts as steps per second over the target: 3000 waiting steps = +100 steps/s."""
    policy = ScalingPolicy(models=(model("rtx-4090", high=50),))
    waiting = DemandClass(waiting=120, waiting_steps=3000.0)
    assert replicas(policy, DemandReport(classes=(waiting,))) == {"rtx-4090": sized(100.0, "rtx-4090", headroom=0.0)}
    assert sized(100.0, "rtx-4090", headroom=0.0) > 17  # 17 erlangs: 100 steps/s at 0.17 s per step


def test_an_entry_without_autoscaling_bounds_keeps_its_replicas() -> None:
    fixed = ModelPolicy(gpu="rtx-4090", replicas=3, min_replicas=3, max_replicas=3, price_per_hour=0.69,
                        autoscaled=False)
    rec = recommend(ScalingPolicy(models=(fixed,)), demand(100.0))["rtx-4090"]
    assert rec.replicas == 3 and rec.reason.startswith("fixed")


def test_what_the_fast_models_cannot_take_at_their_max_goes_to_the_too_slow_ones() -> None:
    """Target 5 s (budget 3.5 s): a 25-step request takes 2.1 s on an H100, 4.25 s on an RTX 4090
    (too slow). Two H100s at most: a burst past what they take within the target would wait in the
    gateway's queue; the rest goes to the RTX 4090s, each at most 80 % busy (SPILL_BUSY)."""
    policy = ScalingPolicy(models=(model("h100", high=2), model("rtx-4090", high=10)), p95_target=5.0)
    h100_takes = STEPS * arrivals_within_target(2, STEPS * 0.085, 5.0)  # steps/s within the target
    quiet = recommend(policy, demand(0.5 * h100_takes / 1.15))
    assert quiet["rtx-4090"].replicas == 0 and quiet["rtx-4090"].load_steps_per_second == 0  # fits: nothing spills
    burst = recommend(policy, demand(h100_takes / 1.15 + 20.0))  # 20 steps/s more than two H100s take
    assert burst["h100"].replicas == 2
    assert burst["rtx-4090"].load_steps_per_second == pytest.approx(20.0 * 1.15)
    assert burst["rtx-4090"].replicas > 0 and burst["rtx-4090"].too_slow
    flood = recommend(policy, demand(h100_takes / 1.15 + 500.0))  # past the 4090s' 80 %: the rest stays on the H100
    assert flood["rtx-4090"].load_steps_per_second == pytest.approx(0.8 * 10 / 0.17)
    assert flood["rtx-4090"].replicas == 10 and flood["h100"].replicas == 2
