"""The M/M/c arithmetic the autoscaler sizes with: Erlang C against known values, the p95 it predicts."""

from __future__ import annotations

import math

import pytest

from sdxlpool.scaling import arrivals_within_target, erlang_c, predicted_p95, servers_for_target


@pytest.mark.parametrize(("servers", "load", "expected"), [
    pytest.param(1, 0.5, 0.5, id="M/M/1: the chance to wait is the utilisation"),
    pytest.param(2, 1.0, 1 / 3, id="C(2, 1) = 1/3"),
    pytest.param(3, 2.0, 4 / 9, id="C(3, 2) = 4/9"),
    pytest.param(2, 0.0, 0.0, id="no load never waits"),
    pytest.param(2, 2.0, 1.0, id="load = servers always waits"),
    pytest.param(0, 0.5, 1.0, id="no server"),
])
def test_erlang_c_known_values(servers: int, load: float, expected: float) -> None:
    assert erlang_c(servers, load) == pytest.approx(expected, rel=1e-12)


def test_erlang_c_matches_its_closed_form_for_many_servers() -> None:
    """C(c, a) = (a^c / c!) (c / (c - a)) / (sum_{k<c} a^k / k! + (a^c / c!) (c / (c - a)))."""
    c, a = 12, 9.5
    top = a ** c / math.factorial(c) * c / (c - a)
    assert erlang_c(c, a) == pytest.approx(top / (sum(a ** k / math.factorial(k) for k in range(c)) + top))


def test_the_m_m_1_wait_quantile_is_exact() -> None:
    """M/M/1, rate 0.5/s, 1 s jobs: P(wait > t) = 0.5 exp(-0.5 t), so the wait's p95 is 2 ln 10."""
    assert predicted_p95(1, 0.5, 1.0) == pytest.approx(1.0 + 2 * math.log(10))
    assert predicted_p95(1, 0.04, 1.0) == 1.0  # under 5% wait at all: the p95 is the job itself
    assert predicted_p95(1, 1.0, 1.0) == math.inf
    assert predicted_p95(0, 0.0, 2.0) == 2.0


def test_servers_for_target_is_the_fewest_within_it() -> None:
    needed = servers_for_target(3.0, 2.0, 5.0, most=50)
    assert needed is not None and needed > 6  # 6 erlangs of load
    assert predicted_p95(needed, 3.0, 2.0) <= 5.0 < predicted_p95(needed - 1, 3.0, 2.0)
    assert servers_for_target(0.0, 2.0, 5.0, most=50) == 0
    assert servers_for_target(3.0, 6.0, 5.0, most=50) is None  # one job alone is over the target
    assert servers_for_target(3.0, 2.0, 5.0, most=needed - 1) is None


def test_arrivals_within_target_is_the_inverse() -> None:
    rate = arrivals_within_target(4, 2.0, 6.0)
    assert predicted_p95(4, rate, 2.0) == pytest.approx(6.0, rel=1e-6)
    assert predicted_p95(4, rate * 1.01, 2.0) > 6.0
    assert arrivals_within_target(4, 7.0, 6.0) == 0.0 and arrivals_within_target(0, 2.0, 6.0) == 0.0
