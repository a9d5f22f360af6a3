"""Sizing for regular image jobs and for the gateway's routing budget.

- Allen-Cunneen: a G/G/c queue waits about M/M/c x (Ca^2 + Cs^2) / 2; with Poisson arrivals and
  the job times spread like the request sizes (`DemandClass.steps_cv2`), image jobs wait about
  half what M/M/c predicts, so the autoscaler runs fewer workers for the same target.
- `WITHIN_SHARE`: a model is too slow when an average request alone takes over that share of the
  target, the budget within which the gateway routes by price.
"""

from __future__ import annotations

import math

import pytest

from sdxlpool.scaling import (
    DemandClass,
    DemandReport,
    ModelPolicy,
    ScalingPolicy,
    allen_cunneen,
    arrivals_within_target,
    merge_reports,
    predicted_p95,
    recommend,
    servers_for_target,
)
from sdxlpool.scaling.policy import TOO_SLOW_BAND, WITHIN_SHARE, is_too_slow

# The benchmark's mix: 20, 25, 30, 40 and 56.25 normalised steps, 25/40/15/10/10 %.
MIX = ((20.0, 0.25), (25.0, 0.40), (30.0, 0.15), (40.0, 0.10), (56.25, 0.10))
MEAN = sum(s * w for s, w in MIX)
CV2 = sum(s * s * w for s, w in MIX) / MEAN ** 2 - 1  # 0.133


@pytest.mark.parametrize(("service_cv2", "arrivals_cv2", "factor"), [
    pytest.param(1.0, 1.0, 1.0, id="M/M/c"),
    pytest.param(0.0, 1.0, 0.5, id="M/D/c: half"),
    pytest.param(CV2, 1.0, (1 + CV2) / 2, id="the benchmark's mix: 0.57"),
    pytest.param(0.0, 0.0, 0.0, id="D/D/c: no wait"),
])
def test_allen_cunneen_factor(service_cv2: float, arrivals_cv2: float, factor: float) -> None:
    assert allen_cunneen(service_cv2, arrivals_cv2) == pytest.approx(factor)


@pytest.mark.parametrize("bad", [-0.1, math.nan, math.inf])
def test_allen_cunneen_refuses_nonsense(bad: float) -> None:
    with pytest.raises(ValueError, match="coefficients of variation"):
        allen_cunneen(bad)


def test_the_factor_scales_the_wait_not_the_job() -> None:
    """M/M/1 at 50% busy, 1 s jobs: wait p95 2 ln 10 s; M/D/1 by Allen-Cunneen: half of it."""
    assert predicted_p95(1, 0.5, 1.0, variability=0.5) == pytest.approx(1.0 + math.log(10))
    assert predicted_p95(1, 0.5, 1.0, variability=1.0) == predicted_p95(1, 0.5, 1.0)
    assert predicted_p95(1, 0.04, 1.0, variability=0.5) == 1.0  # no wait to scale


def test_regular_jobs_need_fewer_workers_and_take_more_per_worker() -> None:
    mm = servers_for_target(3.0, 5.0, 9.0, most=100)
    gg = servers_for_target(3.0, 5.0, 9.0, most=100, variability=allen_cunneen(CV2))
    assert mm is not None and gg is not None and gg < mm
    assert predicted_p95(gg, 3.0, 5.0, variability=allen_cunneen(CV2)) <= 9.0
    rate = arrivals_within_target(4, 5.0, 9.0, variability=0.5)
    assert rate > arrivals_within_target(4, 5.0, 9.0)
    assert predicted_p95(4, rate, 5.0, variability=0.5) == pytest.approx(9.0, rel=1e-6)


def _class(allowed: tuple[str, ...], steps: float, rate: float, cv2: float | None) -> DemandClass:
    return DemandClass(allowed=allowed, arrivals_per_second=rate, steps_per_second=rate * steps, steps_cv2=cv2)


def test_the_pools_spread_pools_the_classes_second_moments() -> None:
    """1 req/s of 20 steps and 1 req/s of 40 steps, each regular: mean 30, E[x^2] 1000, CV^2 1/9."""
    report = DemandReport(classes=(_class((), 20.0, 1.0, 0.0), _class(("h100",), 40.0, 1.0, 0.0)))
    assert report.request_steps_cv2 == pytest.approx(1 / 9)
    spread = DemandReport(classes=(_class((), 20.0, 1.0, 0.5),))
    assert spread.request_steps_cv2 == pytest.approx(0.5)
    assert DemandReport(classes=(_class((), 20.0, 1.0, 0.0), _class(("h100",), 40.0, 1.0, None))
                        ).request_steps_cv2 is None  # a class that does not say: unknown
    assert DemandReport(classes=(_class((), 20.0, 0.0, None),)).request_steps_cv2 is None  # no arrivals
    assert DemandClass().steps_cv2 is None  # a gateway that does not report it: today's M/M/c


def test_merged_replicas_keep_the_spread() -> None:
    one, two = (DemandReport(classes=(_class((), steps, 1.0, 0.0),)) for steps in (20.0, 40.0))
    assert merge_reports([one, two]).classes[0].steps_cv2 == pytest.approx(1 / 9)
    unknown = DemandReport(classes=(_class((), 40.0, 1.0, None),))
    assert merge_reports([one, unknown]).classes[0].steps_cv2 is None


def _policy(*gpus: str, target: float, share: float = WITHIN_SHARE) -> ScalingPolicy:
    prices = {"h100": 2.49, "rtx-4090": 0.69, "rtx-3090": 0.43}
    return ScalingPolicy(models=tuple(ModelPolicy(gpu=g, replicas=0, min_replicas=0, max_replicas=20,
                                                  price_per_hour=prices[g]) for g in gpus),
                         p95_target=target, within_share=share)


def test_the_policy_sizes_with_the_reported_spread_and_without_it_as_before() -> None:
    """30 steps/s of 29.1-step requests on RTX 4090s (4.95 s each), target 9 s."""
    policy = _policy("rtx-4090", target=9.0)
    arrivals = 30.0 / MEAN
    service = MEAN * 0.17
    without = recommend(policy, DemandReport(classes=(_class((), MEAN, arrivals, None),)))["rtx-4090"]
    spread = recommend(policy, DemandReport(classes=(_class((), MEAN, arrivals, CV2),)))["rtx-4090"]
    assert without.replicas == servers_for_target(arrivals * 1.15, service, 9.0, most=20)
    assert spread.replicas == servers_for_target(arrivals * 1.15, service, 9.0, most=20,
                                                 variability=allen_cunneen(CV2))
    assert spread.replicas < without.replicas


@pytest.mark.parametrize(("share", "placed_on"), [
    pytest.param(WITHIN_SHARE, "h100", id="over 70% of the target: too slow, the H100 takes it"),
    pytest.param(1.0, "rtx-3090", id="judged by the whole target: the 3090, cheaper per step"),
])
def test_a_model_slower_than_the_routing_budget_is_too_slow(share: float, placed_on: str) -> None:
    """25 steps take 7.1 s on an RTX 3090: within a 10 s target, over the 7 s the gateway routes
    by price within; it would be bought and left idle by the gateway."""
    policy = _policy("h100", "rtx-3090", target=10.0, share=share)
    recs = recommend(policy, DemandReport(classes=(_class((), 25.0, 0.4, None),)))
    assert {gpu: r.replicas > 0 for gpu, r in recs.items()} == {"h100": placed_on == "h100",
                                                                 "rtx-3090": placed_on == "rtx-3090"}


@pytest.mark.parametrize(("seconds", "before", "too_slow"), [
    pytest.param(7.1, None, True, id="no verdict yet: the budget itself"),
    pytest.param(6.9, None, False, id="no verdict yet, within"),
    pytest.param(7.5, False, False, id="fast enough: stays so up to 10 % over"),
    pytest.param(7.8, False, True, id="fast enough: too slow past 10 % over"),
    pytest.param(6.5, True, True, id="too slow: stays so down to 10 % under"),
    pytest.param(6.2, True, False, id="too slow: fast enough past 10 % under"),
])
def test_the_too_slow_verdict_changes_only_past_the_band(seconds: float, before: bool | None,
                                                         too_slow: bool) -> None:
    """Budget 7 s (70 % of a 10 s target); TOO_SLOW_BAND 10 %."""
    assert TOO_SLOW_BAND == 0.1
    assert is_too_slow(seconds, 7.0, before) is too_slow


def test_a_pool_at_the_budget_keeps_its_plan_from_one_window_to_the_next() -> None:
    """Target 7 s, budget 4.9 s: the average request on an RTX 4090 wanders around it (4.85 s,
    then 5.0 s, then 4.85 s: 28.5 and 29.4 steps). Without the hysteresis the 4090 would be too slow
    in every other window, and the plan would swing between RTX 4090s and H100s."""
    policy = _policy("h100", "rtx-4090", target=7.0)
    windows = [_class((), steps, 0.5, 0.1) for steps in (28.5, 29.4, 28.5, 29.4)]
    verdicts: dict[str, bool] | None = None
    placed = []
    for window in windows:
        recs = recommend(policy, DemandReport(classes=(window,)), too_slow_before=verdicts)
        verdicts = {gpu: r.too_slow for gpu, r in recs.items()}
        placed.append(recs["rtx-4090"].load_steps_per_second > 0)
    assert placed == [True] * 4
    without = [recommend(policy, DemandReport(classes=(w,)))["rtx-4090"].load_steps_per_second > 0 for w in windows]
    assert without == [True, False, True, False]
