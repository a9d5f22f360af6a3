"""`merge_reports`: several gateway replicas' demand as one, and the report's derived figures."""

from __future__ import annotations

import pytest

from sdxlpool.scaling import DemandClass, DemandReport, ModelState, merge_reports

ANY = ()
H100 = ("h100",)


def test_each_replica_saw_its_own_requests_so_rates_and_queues_add_up() -> None:
    one = DemandReport(window_seconds=60, p95_seconds=4.0, classes=(
        DemandClass(allowed=ANY, arrivals_per_second=1.0, steps_per_second=25.0, waiting=2, waiting_steps=50.0,
                    oldest_wait_seconds=3.0),
        DemandClass(allowed=H100, arrivals_per_second=0.1, steps_per_second=4.0)))
    two = DemandReport(window_seconds=30, p95_seconds=9.0, classes=(
        DemandClass(allowed=ANY, arrivals_per_second=0.5, steps_per_second=15.0, waiting=1, waiting_steps=20.0,
                    oldest_wait_seconds=7.0),))
    merged = merge_reports([one, two])
    by = {c.allowed: c for c in merged.classes}
    assert by[ANY] == DemandClass(allowed=ANY, arrivals_per_second=1.5, steps_per_second=40.0, waiting=3,
                                  waiting_steps=70.0, oldest_wait_seconds=7.0)
    assert by[H100] == one.classes[1]
    assert merged.window_seconds == 60 and merged.p95_seconds == 9.0  # the worst replica's p95
    assert merged.mean_request_steps == pytest.approx(44.0 / 1.6)


def test_all_replicas_scrape_the_same_workers_so_models_take_the_most_seen() -> None:
    one = DemandReport(models=(ModelState(gpu="h100", workers=3, ready=2, seconds_per_step=0.09, pending_steps=40.0,
                                          price_per_hour=2.49),))
    two = DemandReport(models=(ModelState(gpu="h100", workers=2, ready=3, seconds_per_step=None, pending_steps=60.0),
                               ModelState(gpu="a100", workers=1, ready=1)))
    merged = merge_reports([one, two])
    assert [m.gpu for m in merged.models] == ["a100", "h100"]
    assert merged.model("h100") == ModelState(gpu="h100", workers=3, ready=3, seconds_per_step=0.09,
                                              pending_steps=60.0, price_per_hour=2.49)
    assert merged.model("rtx-3090") is None


def test_one_report_is_itself_and_none_has_no_p95() -> None:
    only = DemandReport(classes=(DemandClass(arrivals_per_second=1.0, steps_per_second=30.0),))
    assert merge_reports([only]) is only
    assert merge_reports([DemandReport(), DemandReport()]).p95_seconds is None
    assert DemandReport().mean_request_steps is None
