"""Pure parts of the operator's sync loop: drift detection and status."""

from __future__ import annotations

import pytest

from sdxlpool.api import labels as lbl
from sdxlpool.operator.drift import drift_patch, is_subset
from sdxlpool.operator.status import EntryObservation, invalid_spec_status, observe_deployment, pool_status


@pytest.mark.parametrize(
    ("desired", "observed", "expected"),
    [
        pytest.param({"a": 1}, {"a": 1, "b": 2}, True, id="server-added-defaults"),
        pytest.param({"a": {"b": [1, 2]}}, {"a": {"b": [1, 2], "c": 0}}, True, id="nested"),
        pytest.param({"a": [1, 2]}, {"a": [1, 2, 3]}, False, id="list-length"),
        pytest.param({"limits": {lbl.GPU_RESOURCE: 1}}, {"limits": {lbl.GPU_RESOURCE: "1"}}, True, id="quantity"),
        pytest.param({"a": True}, {"a": 1}, False, id="bool-is-not-int"),
        pytest.param({"a": 1}, {}, False, id="missing"),
        pytest.param({"a": [{"n": 1}]}, {"a": [{"n": 1, "x": 2}]}, True, id="list-of-maps-subset"),
    ],
)
def test_is_subset(desired, observed, expected) -> None:
    assert is_subset(desired, observed) is expected


def test_drift_patch_repairs_only_what_drifted() -> None:
    desired = {"apiVersion": "apps/v1", "kind": "Deployment",
               "metadata": {"name": "d", "labels": {"a": "1"}, "ownerReferences": [{"uid": "u"}]},
               "spec": {"replicas": 2, "template": {"x": 1}}}
    observed = {"apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": "d", "labels": {"a": "1", "extra": "kept"}, "uid": "z",
                             "ownerReferences": [{"uid": "u", "controller": True}]},
                "spec": {"replicas": 2, "template": {"x": 1}, "strategy": {}}, "status": {"readyReplicas": 2}}
    assert drift_patch(desired, observed) is None
    observed["spec"]["replicas"] = 9
    assert drift_patch(desired, observed) == {"spec": {"replicas": 2, "template": {"x": 1}}}
    observed["metadata"]["labels"] = {}
    assert drift_patch(desired, observed)["metadata"] == {"labels": {"a": "1"}}


def test_drift_patch_removes_optional_pod_fields_no_longer_wanted() -> None:
    """A pool that drops its LoRAs (or its Hub weights) must lose the init containers that fetched them."""
    pod = {"containers": [{"name": "worker"}], "volumes": [{"name": "models"}]}
    desired = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
               "spec": {"replicas": 1, "template": {"spec": pod}}}
    observed = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
                "spec": {"replicas": 1, "template": {"spec": {**pod, "dnsPolicy": "ClusterFirst",
                                                               "initContainers": [{"name": "download-loras-0"}],
                                                               "nodeSelector": {"a": "b"}}}}}
    patch = drift_patch(desired, observed)
    assert patch == {"spec": {"replicas": 1, "template": {"spec": {**pod, "initContainers": None,
                                                                   "nodeSelector": None}}}}
    assert desired["spec"]["template"]["spec"] == pod  # not changed
    del observed["spec"]["template"]["spec"]["initContainers"], observed["spec"]["template"]["spec"]["nodeSelector"]
    assert drift_patch(desired, observed) is None


def entry(model: str, desired: int, ready: int, *, unplaced: bool = False, failure: str | None = None,
          rolled_out: bool = True) -> EntryObservation:
    return EntryObservation(model=model, slug=model.lower(), desired=desired, ready=ready, available=ready,
                            updated=desired, matched_nodes=() if unplaced else ("n1",),
                            placement_message=f"no node carries a {model} GPU" if unplaced else "",
                            no_matching_nodes=unplaced, rolled_out=rolled_out, failure=failure)


def conditions(status: dict) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}


@pytest.mark.parametrize(
    ("entries", "ready", "progressing", "degraded"),
    [
        pytest.param([entry("A100", 2, 2), entry("L40S", 1, 1)], ("True", "AllReplicasReady"),
                     ("False", "Complete"), ("False", "AsExpected"), id="all-ready"),
        pytest.param([entry("A100", 2, 1)], ("False", "ReplicasNotReady"), ("True", "RollingOut"),
                     ("False", "AsExpected"), id="rolling-out"),
        pytest.param([entry("A100", 2, 2), entry("RTX-3090", 4, 0, unplaced=True)], ("False", "ReplicasNotReady"),
                     ("False", "Blocked"), ("True", "NoMatchingNodes"), id="no-nodes"),
        pytest.param([entry("A100", 2, 0, failure="exceeded its progress deadline")], ("False", "ReplicasNotReady"),
                     ("False", "Blocked"), ("True", "RolloutFailed"), id="rollout-failed"),
        pytest.param([entry("A100", 0, 0, unplaced=True)], ("True", "AllReplicasReady"), ("False", "Complete"),
                     ("False", "AsExpected"), id="scaled-to-zero-needs-no-node"),
        pytest.param([entry("A100", 2, 2, rolled_out=False)], ("False", "ReplicasNotReady"), ("True", "RollingOut"),
                     ("False", "AsExpected"), id="new-spec-not-seen-yet"),
    ],
)
def test_conditions(entries, ready, progressing, degraded) -> None:
    status = pool_status(generation=3, entries=entries, gateway=None, previous=None, now="t1")
    assert conditions(status) == {"Ready": ready, "Progressing": progressing, "Degraded": degraded}
    assert all(c["observedGeneration"] == 3 for c in status["conditions"])


def test_transition_time_moves_only_when_status_flips() -> None:
    first = pool_status(generation=1, entries=[entry("A100", 2, 1)], gateway=None, previous=None, now="t1")
    same = pool_status(generation=1, entries=[entry("A100", 2, 1)], gateway=None, previous=first, now="t2")
    assert same == first  # nothing to write
    done = pool_status(generation=1, entries=[entry("A100", 2, 2)], gateway=None, previous=first, now="t3")
    times = {c["type"]: c["lastTransitionTime"] for c in done["conditions"]}
    assert times == {"Ready": "t3", "Progressing": "t3", "Degraded": "t1"}


def test_invalid_spec_status_names_every_problem() -> None:
    status = invalid_spec_status(generation=2, problems=["spec.gpus[0].model: bad", "spec.image: required"],
                                 previous=None, now="t")
    assert conditions(status)["Degraded"] == ("True", "InvalidSpec")
    degraded = next(c for c in status["conditions"] if c["type"] == "Degraded")
    assert "spec.gpus[0].model" in degraded["message"] and "spec.image" in degraded["message"]


def test_observe_deployment() -> None:
    assert observe_deployment(None)["rolled_out"] is False
    seen = observe_deployment({"metadata": {"generation": 4}, "status": {
        "observedGeneration": 4, "readyReplicas": 2, "availableReplicas": 1, "updatedReplicas": 2,
        "conditions": [{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
                        "message": "ReplicaSet has timed out progressing"}]}})
    assert seen == {"ready": 2, "available": 1, "updated": 2, "rolled_out": True,
                    "failure": "ReplicaSet has timed out progressing"}
