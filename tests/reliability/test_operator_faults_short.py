"""Operator faults, short: the real operator (`sdxlpool operator`, a separate process) SIGKILLed
mid-reconcile against the emulator; the pools converge, with no duplicate or orphaned child, and
an invalid pool never stalls the valid ones. The long run is `reliability/operator_faults.py`.

The kill points are deterministic: the emulator kills the operator while it handles the operator's
n-th write to a child (the write applied or not), or its first write of a pool's status, so each
kill lands in the middle of a sync whatever the machine's speed.
"""

from __future__ import annotations

from reliability.operator_faults import INVALID_POOL, VALID_POOLS, Plan, run

PLANS = [
    # A rename (new Deployment name) and a new GPU entry; killed at the first child write, in flight.
    Plan(kill="write", changes=2, edits=("rename", "add"), nth=1, apply=False),
    # An entry removed and the gateway toggled; killed after the second child write landed; one
    # more edit while down; killed again in the middle of the sync it makes on resuming.
    Plan(kill="write", changes=2, edits=("remove", "gateway"), nth=2, apply=True, down_changes=1,
         resume_kill=True),
    # A child deleted by hand; killed as the operator recreates it.
    Plan(kill="child-deleted", apply=True),
    # Scaled, and the invalid pool edited too; killed as the operator writes a status, every child done.
    Plan(kill="status", changes=1, edits=("scale",), invalid_change=True),
]


def test_killed_operator_converges_without_duplicates_or_orphans(tmp_path) -> None:
    summary = run(rounds=len(PLANS), seed=7, workdir=tmp_path, plans=PLANS, converge_timeout=60, verbose=False)
    log = (tmp_path / "operator.log").read_text()[-3000:]
    rounds = summary["round_log"]
    assert summary["problems"] == [], (summary, log)
    assert summary["converged"] and summary["rounds"] == len(PLANS), (summary, log)
    # Every kill happened, and in the middle of a reconcile (the store not yet as desired).
    assert summary["kills"] >= len(PLANS) + 1, rounds
    assert summary["kills_mid_reconcile"] == summary["kills"], rounds
    assert not any(point.startswith("late") for r in rounds for point in r["kill_points"]), rounds
    # The invalid pool says why, at its latest generation; the valid ones are all up.
    assert summary["invalid_pool"]["degraded"] == "True/InvalidSpec"
    assert INVALID_POOL not in summary["valid_pools"]
    for name in VALID_POOLS:
        ready, desired = summary["valid_pools"][name].split("/")
        assert ready == desired, summary["valid_pools"]
