"""`sdxlpool up`'s autoscaling, pure: the slots it plans, and which processes a decision starts and stops."""

from __future__ import annotations

from pathlib import Path

import pytest

from sdxlpool.api.spec import pool_from_yaml
from sdxlpool.local.autoscale import Changes, plan_changes
from sdxlpool.local.plan import Model, plan_pool
from sdxlpool.scaling.speeds import estimate_seconds_per_step

EXAMPLE = Path(__file__).parents[2] / "examples" / "autoscaling-pool.yaml"
SIM = Model(Path("sim"), None, tiny=False)

SLOTS = {"rtx-3090": ["rtx-3090-1", "rtx-3090-2", "rtx-3090-3"], "h100": ["h100-1"]}


@pytest.mark.parametrize(("active", "desired", "busy", "room", "expected"), [
    # grow into the lowest free slots
    ({"rtx-3090": ["rtx-3090-1"]}, {"rtx-3090": 3}, (), None, Changes(start=("rtx-3090-2", "rtx-3090-3"))),
    # shrink from the newest (highest) active ones
    ({"rtx-3090": ["rtx-3090-1", "rtx-3090-2", "rtx-3090-3"]}, {"rtx-3090": 1}, (), None,
     Changes(stop=("rtx-3090-3", "rtx-3090-2"))),
    # a slot still draining is not free: the next one is taken
    ({"rtx-3090": ["rtx-3090-1"]}, {"rtx-3090": 2}, ("rtx-3090-2",), None, Changes(start=("rtx-3090-3",))),
    # from zero, and to zero
    ({"h100": []}, {"h100": 1}, (), None, Changes(start=("h100-1",))),
    ({"h100": ["h100-1"]}, {"h100": 0}, (), None, Changes(stop=("h100-1",))),
    # never past the slots (maxReplicas) ...
    ({"h100": ["h100-1"]}, {"h100": 4}, (), None, Changes()),
    # ... nor past --max-workers' room, in model order
    ({}, {"rtx-3090": 2, "h100": 1}, (), 2, Changes(start=("rtx-3090-1", "rtx-3090-2"))),
    ({}, {"rtx-3090": 2, "h100": 1}, (), 0, Changes()),
    # a model the decision does not name is left alone; both directions in one decision
    ({"rtx-3090": ["rtx-3090-1", "rtx-3090-2"], "h100": []}, {"h100": 1}, (), None, Changes(start=("h100-1",))),
    ({"rtx-3090": ["rtx-3090-1", "rtx-3090-2"], "h100": []}, {"rtx-3090": 1, "h100": 1}, (), None,
     Changes(start=("h100-1",), stop=("rtx-3090-2",))),
])
def test_which_processes_a_decision_starts_and_stops(active, desired, busy, room, expected) -> None:
    assert plan_changes(SLOTS, active, desired, busy=busy, room=room) == expected


def _plan(text: str, **options):
    pool = pool_from_yaml(text)
    options = {"device": "cpu", "cpu_count": 8, "backends_file": Path("/run/backends.yaml"), "worker_port": 7000,
               **options}
    return plan_pool(pool.spec, options.pop("model", SIM), **options)


def test_autoscaling_plans_a_slot_per_replica_up_to_max_and_starts_replicas() -> None:
    result = _plan(EXAMPLE.read_text(), sim=True)
    assert [(w.name, w.port, w.standby) for w in result.workers] == [
        ("rtx-3090-1", 7000, False), ("rtx-3090-2", 7001, True), ("rtx-3090-3", 7002, True),
        ("rtx-4090-1", 7003, True), ("rtx-4090-2", 7004, True), ("h100-1", 7005, True)]
    assert [w.name for w in result.starting] == ["rtx-3090-1"]
    assert [b["name"] for b in result.backends_file_entries()["backends"]] == ["rtx-3090-1"]
    assert any("autoscaling (rtx-3090 1..3, rtx-4090 0..2, h100 0..1" in note and "1 workers at first, up to 6"
               in note for note in result.notes)


def test_without_autoscaling_enabled_only_the_replicas_are_planned() -> None:
    text = EXAMPLE.read_text().replace("enabled: true", "enabled: false")
    result = _plan(text, sim=True)
    assert [w.name for w in result.workers] == ["rtx-3090-1"] and not any(w.standby for w in result.workers)


def test_sim_workers_run_as_fast_as_their_gpu_model_is_estimated() -> None:
    result = _plan(EXAMPLE.read_text(), sim=True)
    argv = {w.name: w.argv for w in result.workers}
    for name, gpu in (("rtx-3090-1", "rtx-3090"), ("h100-1", "h100")):
        assert argv[name][3:5] == ("sim-worker", "--gpu-model")
        step = float(argv[name][argv[name].index("--step-seconds") + 1])
        assert step == pytest.approx(estimate_seconds_per_step(gpu, {}), rel=1e-3)
        assert argv[name][argv[name].index("--worker-name") + 1] == name
        assert argv[name][argv[name].index("--default-steps") + 1] == "20"  # the pool's defaults, as for workers
    h100, rtx = (float(argv[n][argv[n].index("--step-seconds") + 1]) for n in ("h100-1", "rtx-3090-1"))
    assert rtx / h100 == pytest.approx(1 / 0.3, rel=0.01)  # relative speeds from the table
    assert all(w.env == {} for w in result.workers)  # no CPU threads to share out: nothing runs a model


def test_max_workers_caps_the_start_and_is_the_bound_at_runtime() -> None:
    text = EXAMPLE.read_text().replace("replicas: 1\n", "replicas: 2\n", 1)
    result = _plan(text, sim=True, max_workers=1)
    assert [w.name for w in result.starting] == ["rtx-3090-1"]
    assert result.max_running == 1
    assert len(result.workers) == 6  # slots are planned all the same (ports reserved)
