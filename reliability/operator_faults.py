"""Operator faults: the real operator SIGKILLed mid-reconcile, again and again; the pools converge.

The Kubernetes emulator (`sdxlpool.testing.emulator`) runs in this process on 127.0.0.1; the operator is the
real CLI, `python -m sdxlpool operator --standalone`, a separate process logged in through a
kubeconfig, so it can be SIGKILLed like a pod whose node vanished. Several pools live side by
side: valid ones with several GPU entries (and nodes for every model), and one whose spec passes
the CRD schema but not the operator's checks (an unknown GPU name).

Each round:

1. changes specs while the operator runs (scale an entry, add or remove one, rename one so its
   Deployment's name changes, toggle the gateway, bump the image) or deletes a child by hand;
2. SIGKILLs the operator mid-reconcile, at one of these points:
   * ``write``: inside the emulator, when the operator's n-th write to a child arrives (n drawn
     among the writes the change calls for), either before it is applied or after it is applied
     but before the operator hears back: children half done, status not yet written;
   * ``status``: when the operator writes a valid pool's status, before it is applied: every
     child done, status lost;
   * ``delay``: a random delay after the change;
   * ``child-deleted``: a child deleted by hand, killed at the operator's first write after that;
3. sometimes changes more while the operator is down, and sometimes kills the restarted operator
   again during the sync it does when it resumes;
4. restarts it and waits until every pool has converged, reading the emulator's memory:
   * each valid pool has exactly the children `sdxlpool.operator.desired` computes for its final
     spec and the current nodes (nothing missing, nothing extra: no orphan labelled for the pool
     or owned by it, no two Deployments for one GPU entry), each with the desired content (no
     drift) and one controller ownerReference to the pool's current uid;
   * its status: observedGeneration == generation, Ready/Progressing/Degraded as the children say;
   * the invalid pool: Degraded/InvalidSpec at its latest generation, and no children at all;
   * no object anywhere owned by an object that does not exist;
   * and, judged without the operator's own code (a bug in `desired_state` would fool the
     check above, which uses it): the children a hand-written table says each valid pool's spec
     asks for (`literal_findings`: Deployment names, replicas, image and GPU node product;
     Services; the gateway's Deployment, Service and RBAC), and after the first convergence the
     children of the pools as created, written out one by one (`AT_START`).

After the last round the script plays the Deployment controller (every replica ready) and waits
for Ready=True on every valid pool. It prints a JSON summary: rounds, kills (and how many found the
pools not converged, i.e. really mid-reconcile), and the seconds from the last restart of a round
(a new process: imports, login, list and watch, then the syncs) until the pools have converged,
p50/p90/max over the rounds that left work for it. After converging, a round also waits until the
operator has written nothing for 1.5 s, so a loop of rewrites fails the run. Exit status 1 if a
round did not converge.

    python reliability/operator_faults.py [--rounds 20] [--seed 1] [--out FILE]

Bounded: a fixed number of rounds, every wait has a timeout (--timeout for the whole run),
traffic to 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sdxlpool.api import labels as lbl
from sdxlpool.testing.emulator import EmulatorThread, GapFillingEmulator
from sdxlpool.testing.operator import OperatorProcess
from sdxlpool.testing.stats import percentile

NS = "faults"
OPERATOR_TOKEN = "operator-under-test"  # tells the operator's requests from this script's
POOL_API = ("sdxlpool.dev/v1alpha1", "SDXLPool")
NODES = {
    "gpu-a100": "NVIDIA-A100-SXM4-80GB",
    "gpu-3090": "NVIDIA-GeForce-RTX-3090",
    "gpu-4090": "NVIDIA-GeForce-RTX-4090",
    "gpu-l40s": "NVIDIA-L40S",
    "gpu-l4": "NVIDIA-L4",
    "gpu-h100": "NVIDIA-H100-80GB-HBM3",
}
# Names a pool entry may use; "A100" and "A100-80GB" are one card (one node label matches both)
# but two slugs, so renaming one into the other renames its Deployment.
FAMILIES = {"A100": "a100", "A100-80GB": "a100", "RTX-3090": "rtx-3090", "RTX-4090": "rtx-4090",
            "L40S": "l40s", "L4": "l4", "H100": "h100"}
VALID_POOLS = {
    "alpha": [("A100", 2), ("RTX-3090", 1)],
    "bravo": [("L40S", 1), ("H100", 2), ("RTX-4090", 1)],
    "charlie": [("A100-80GB", 1), ("L4", 2)],
    "delta": [("RTX-3090", 1), ("H100", 1)],
}
INVALID_POOL = "broken"
UNKNOWN_GPUS = ["banana", "potato-9000", "GeForce-Toaster"]  # strings the CRD schema accepts
KILL_POINTS = ("write", "status", "delay", "child-deleted")
_NOT_CHILDREN = {"sdxlpools", "events", "kopfpeerings", "clusterkopfpeerings", "leases", "nodes", "namespaces"}


# -- the emulator, with a trap that kills the operator inside one of its requests ------------------

@dataclass
class Trap:
    """Kill the operator at its `count`-th request of a `kind` ("child": a write to a child;
    "status": a write of a valid pool's status); `apply`: let that write reach the store first."""

    kind: str
    count: int
    apply: bool
    spring: Callable[[str, bool], None]  # (the request, whether the pools had converged before it)
    fired: threading.Event = field(default_factory=threading.Event)
    seen: int = 0
    request: str = ""
    matched: list[str] = field(default_factory=list)

    def hit(self, request: Any) -> bool:
        headers = {key.lower(): value for key, value in (request.headers or {}).items()}
        if OPERATOR_TOKEN not in headers.get("authorization", "") or request.resource is None:
            return False
        method = str(getattr(request.method, "value", request.method)).upper()
        plural = request.resource.plural
        if self.kind == "child":
            matches = method in ("POST", "PATCH", "DELETE") and plural not in _NOT_CHILDREN
        else:
            matches = (method == "PATCH" and plural == "sdxlpools" and request.subresource == "status"
                       and request.name in VALID_POOLS)
        if matches:
            self.seen += 1
            self.request = f"{method} {plural}/{request.name or (request.data or {}).get('metadata', {}).get('name')}"
            self.matched.append(self.request)
        return matches and self.seen >= self.count


class FaultyEmulator(GapFillingEmulator):
    """The test emulator; when a trap is armed, the request that springs it kills the operator."""

    trap: Trap | None = None
    last_operator_write = 0.0  # time.monotonic() of the operator's latest write of any kind

    async def _handle(self, request: Any) -> Any:
        if OPERATOR_TOKEN in str(request.headers.get("Authorization", "")) and str(
                getattr(request.method, "value", request.method)).upper() in ("POST", "PATCH", "PUT", "DELETE"):
            self.last_operator_write = time.monotonic()
        trap = self.trap
        if trap is None or not trap.hit(request):
            return await super()._handle(request)
        self.trap = None
        busy = bool(findings(snapshot(self)))  # was there anything left to do?
        if trap.apply:  # the write lands (or fails: 404, 409); the operator dies before it hears so
            try:
                return await super()._handle(request)
            finally:
                trap.spring(trap.request + " (applied)", busy)
        trap.spring(trap.request + " (not applied)", busy)  # the operator dies with the write in flight
        import aiohttp.web

        return aiohttp.web.json_response({"kind": "Status", "code": 503, "message": "killed"}, status=503)


class FaultyEmulatorThread(EmulatorThread):
    """`EmulatorThread` serving a `FaultyEmulator`; `operator_kubeconfig` logs in as the operator."""

    emulator: FaultyEmulator | None
    emulator_class = FaultyEmulator

    def __enter__(self) -> FaultyEmulatorThread:
        super().__enter__()
        self.operator_kubeconfig = self.kubeconfig_as(OPERATOR_TOKEN)
        return self


# -- what the pools should look like, and how far they are from it ---------------------------------

def pool_manifest(name: str, gpus: Iterable[tuple[str, int]], gateway: bool = True) -> dict[str, Any]:
    return {
        "apiVersion": POOL_API[0], "kind": POOL_API[1],
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "image": "ghcr.io/example/sdxlpool-worker:1.0",
            "model": {"volume": {"claimName": "sdxl-weights", "basePath": "base.safetensors"}},
            "placement": {"labelScheme": "nvidia"},
            "gpus": [{"model": model, "replicas": replicas} for model, replicas in gpus],
            "gateway": {"enabled": gateway, "replicas": 1},
        },
    }


def snapshot(emulator: FaultyEmulator) -> list[dict[str, Any]]:
    """Every live object, read from the emulator's memory (polling over HTTP would load it)."""
    for _ in range(50):
        try:
            return [copy.deepcopy(obj.raw) for obj in list(emulator.objects.values()) if not obj.deleted]
        except RuntimeError:  # changed while we copied: try again
            time.sleep(0.01)
    raise RuntimeError("could not read the emulator's objects")


def _identity(obj: Mapping[str, Any]) -> tuple[str, str, str]:
    return obj["apiVersion"], obj["kind"], obj["metadata"]["name"]


# -- the literal oracle: what the pools should have, written out by hand --------------------------
# Independent of sdxlpool.operator.desired (and of sdxlpool.api's slugs and GPU tables): if the
# operator and `findings` agree on a wrong child, these do not.

SLUGS = {"A100": "a100", "A100-80GB": "a100-80gb", "RTX-3090": "rtx-3090", "RTX-4090": "rtx-4090",
         "L40S": "l40s", "L4": "l4", "H100": "h100"}
PRODUCTS = {"A100": "NVIDIA-A100-SXM4-80GB", "A100-80GB": "NVIDIA-A100-SXM4-80GB",
            "RTX-3090": "NVIDIA-GeForce-RTX-3090", "RTX-4090": "NVIDIA-GeForce-RTX-4090", "L40S": "NVIDIA-L40S",
            "L4": "NVIDIA-L4", "H100": "NVIDIA-H100-80GB-HBM3"}
# The pools as `create_world` makes them: kind -> name -> Deployment replicas (None: not a Deployment).
AT_START: dict[str, dict[str, dict[str, int | None]]] = {
    "alpha": {
        "Deployment": {"alpha-a100": 2, "alpha-rtx-3090": 1, "alpha-gateway": 1},
        "Service": {"alpha-workers": None, "alpha-gateway": None},
        "PodDisruptionBudget": {"alpha-a100": None, "alpha-rtx-3090": None, "alpha-gateway": None},
        "NetworkPolicy": {"alpha-workers": None},
        "ServiceAccount": {"alpha-gateway": None}, "Role": {"alpha-gateway": None},
        "RoleBinding": {"alpha-gateway": None},
    },
    "bravo": {
        "Deployment": {"bravo-l40s": 1, "bravo-h100": 2, "bravo-rtx-4090": 1, "bravo-gateway": 1},
        "Service": {"bravo-workers": None, "bravo-gateway": None},
        "PodDisruptionBudget": {"bravo-l40s": None, "bravo-h100": None, "bravo-rtx-4090": None,
                                "bravo-gateway": None},
        "NetworkPolicy": {"bravo-workers": None},
        "ServiceAccount": {"bravo-gateway": None}, "Role": {"bravo-gateway": None},
        "RoleBinding": {"bravo-gateway": None},
    },
    "charlie": {
        "Deployment": {"charlie-a100-80gb": 1, "charlie-l4": 2, "charlie-gateway": 1},
        "Service": {"charlie-workers": None, "charlie-gateway": None},
        "PodDisruptionBudget": {"charlie-a100-80gb": None, "charlie-l4": None, "charlie-gateway": None},
        "NetworkPolicy": {"charlie-workers": None},
        "ServiceAccount": {"charlie-gateway": None}, "Role": {"charlie-gateway": None},
        "RoleBinding": {"charlie-gateway": None},
    },
    "delta": {
        "Deployment": {"delta-rtx-3090": 1, "delta-h100": 1, "delta-gateway": 1},
        "Service": {"delta-workers": None, "delta-gateway": None},
        "PodDisruptionBudget": {"delta-rtx-3090": None, "delta-h100": None, "delta-gateway": None},
        "NetworkPolicy": {"delta-workers": None},
        "ServiceAccount": {"delta-gateway": None}, "Role": {"delta-gateway": None},
        "RoleBinding": {"delta-gateway": None},
    },
    INVALID_POOL: {},
}


def literal_children(name: str, spec: Mapping[str, Any]) -> dict[str, dict[str, int | None]]:
    """What a valid pool's spec asks for, by the rules of docs/operator (one Deployment and
    PodDisruptionBudget per GPU entry, `<pool>-<slug>`; `<pool>-workers` Service and
    NetworkPolicy; with the gateway on, its Deployment, Service, budget, ServiceAccount, Role and
    RoleBinding, all `<pool>-gateway`), in the shape of `AT_START`."""
    deployments: dict[str, int | None] = {f"{name}-{SLUGS[g['model']]}": int(g["replicas"]) for g in spec["gpus"]}
    children: dict[str, dict[str, int | None]] = {"Service": {f"{name}-workers": None},
                                                   "NetworkPolicy": {f"{name}-workers": None}}
    if spec["gateway"]["enabled"]:
        deployments[f"{name}-gateway"] = int(spec["gateway"].get("replicas", 1))
        children["Service"][f"{name}-gateway"] = None
        children.update({kind: {f"{name}-gateway": None} for kind in ("ServiceAccount", "Role", "RoleBinding")})
    children["Deployment"] = deployments
    children["PodDisruptionBudget"] = dict.fromkeys(deployments)
    return children


def literal_findings(objects: list[dict[str, Any]], expected: Mapping[str, Mapping[str, Mapping[str, int | None]]]
                     | None = None) -> list[str]:
    """How the pools' children differ from the literal oracle: `expected` (pool -> kind -> name ->
    replicas), or else `literal_children` of each valid pool's current spec. Worker Deployments
    must also run the spec's image on nodes of their GPU's product."""
    problems: list[str] = []
    pools = {o["metadata"]["name"]: o for o in objects if o["kind"] == POOL_API[1]}
    for name in (expected or {n: None for n in [*VALID_POOLS, INVALID_POOL]}):
        spec = pools[name]["spec"]
        if expected is not None:
            want = expected[name]
        elif name == INVALID_POOL:
            want = {}
        else:
            want = literal_children(name, spec)
        mine = [o for o in objects if o["metadata"].get("namespace") == NS and o["kind"] not in ("SDXLPool", "Event")
                and ((o["metadata"].get("labels") or {}).get(lbl.POOL) == name
                     or any(ref.get("name") == name for ref in o["metadata"].get("ownerReferences") or []))]
        have: dict[str, dict[str, dict[str, Any]]] = {}
        for obj in mine:
            have.setdefault(obj["kind"], {})[obj["metadata"]["name"]] = obj
        for kind in sorted(set(want) | set(have)):
            wanted, found = want.get(kind, {}), have.get(kind, {})
            if set(wanted) != set(found):
                problems.append(f"{name}: literally {kind} {sorted(wanted)}, found {sorted(found)}")
            for child, replicas in wanted.items():
                if kind == "Deployment" and child in found:
                    problems += _literal_deployment(name, child, replicas, spec, found[child])
    return problems


def _literal_deployment(pool: str, name: str, replicas: int | None, spec: Mapping[str, Any],
                        body: Mapping[str, Any]) -> list[str]:
    problems = []
    if body["spec"].get("replicas") != replicas:
        problems.append(f"{pool}: literally Deployment/{name} replicas {replicas}, found {body['spec'].get('replicas')}")
    pod = body["spec"]["template"]["spec"]
    images = {c.get("image") for c in pod.get("containers") or []}
    if images != {spec["image"]}:
        problems.append(f"{pool}: literally Deployment/{name} image {spec['image']}, found {sorted(images)}")
    models = [g["model"] for g in spec["gpus"] if f"{pool}-{SLUGS[g['model']]}" == name]
    if models:
        terms = (((pod.get("affinity") or {}).get("nodeAffinity") or {}).get(
            "requiredDuringSchedulingIgnoredDuringExecution") or {}).get("nodeSelectorTerms") or []
        values = {v for term in terms for expr in term.get("matchExpressions") or [] for v in expr.get("values") or []}
        if PRODUCTS[models[0]] not in values:
            problems.append(f"{pool}: literally Deployment/{name} on {PRODUCTS[models[0]]}, affinity {sorted(values)}")
    return problems


def findings(objects: list[dict[str, Any]], *, children_only: bool = False) -> list[str]:
    """What keeps the pools from having converged; [] when they have.

    `children_only`: only the child writes the operator still has to make (missing, drifted,
    orphaned children): how many writes a reconcile needs from here."""
    import kopf

    from sdxlpool.api.labels import GPU, POOL, label_value
    from sdxlpool.api.spec import PoolSpecError, load_pool
    from sdxlpool.operator.desired import desired_state
    from sdxlpool.operator.drift import drift_patch

    pools = [o for o in objects if o["kind"] == POOL_API[1]]
    nodes = [o for o in objects if o["kind"] == "Node"]
    children = [o for o in objects if o["kind"] not in ("SDXLPool", "Node", "Namespace", "Event")
                and o["metadata"].get("namespace") == NS]
    problems: list[str] = []
    for body in pools:
        meta = body["metadata"]
        name, uid, generation = meta["name"], meta["uid"], int(meta.get("generation") or 1)
        mine = [c for c in children if (c["metadata"].get("labels") or {}).get(POOL) == label_value(name)
                or any(ref.get("uid") == uid for ref in c["metadata"].get("ownerReferences") or [])]
        status = body.get("status") or {}
        conditions = {c.get("type"): c for c in status.get("conditions") or []}
        try:
            pool = load_pool(body)
        except PoolSpecError:
            if children_only:
                continue
            if mine:
                problems.append(f"{name}: invalid pool has children {sorted(_identity(c)[1:] for c in mine)}")
            degraded = conditions.get("Degraded") or {}
            if status.get("observedGeneration") != generation:
                problems.append(f"{name}: status.observedGeneration {status.get('observedGeneration')} != {generation}")
            if (degraded.get("status"), degraded.get("reason")) != ("True", "InvalidSpec"):
                problems.append(f"{name}: Degraded is {degraded.get('status')}/{degraded.get('reason')}, not True/InvalidSpec")
            continue

        desired = {}
        for child in desired_state(pool, nodes).children:
            kopf.append_owner_reference(child, owner=body)
            desired[_identity(child)] = child
        found: dict[tuple[str, str, str], dict[str, Any]] = {}
        for child in mine:
            found[_identity(child)] = child
        for key in desired.keys() - found.keys():
            problems.append(f"{name}: missing {key[1]}/{key[2]}")
        for key in found.keys() - desired.keys():
            problems.append(f"{name}: orphan {key[1]}/{key[2]}")
        for key in desired.keys() & found.keys():
            if drift_patch(desired[key], found[key]) is not None:
                problems.append(f"{name}: drifted {key[1]}/{key[2]}")
            owners = found[key]["metadata"].get("ownerReferences") or []
            if [(o.get("uid"), o.get("controller")) for o in owners] != [(uid, True)]:
                problems.append(f"{name}: {key[1]}/{key[2]} owners {[(o.get('name'), o.get('uid')) for o in owners]}")
        if children_only:
            continue
        per_gpu: dict[str, list[str]] = {}
        for child in mine:
            gpu = (child["metadata"].get("labels") or {}).get(GPU)
            if child["kind"] == "Deployment" and gpu:
                per_gpu.setdefault(gpu, []).append(child["metadata"]["name"])
        problems += [f"{name}: {len(names)} Deployments for GPU {gpu}: {names}"
                     for gpu, names in per_gpu.items() if len(names) > 1]
        problems += _status_findings(name, generation, status, conditions, pool,
                                     [c for c in mine if c["kind"] == "Deployment"])

    if not children_only:
        problems += literal_findings(objects)
        alive = {o["metadata"].get("uid") for o in objects}
        for obj in objects:
            owners = obj["metadata"].get("ownerReferences") or []
            if owners and not any(ref.get("uid") in alive for ref in owners):
                problems.append(f"orphan of a deleted owner: {obj['kind']}/{obj['metadata']['name']}")
    return problems


def _status_findings(name: str, generation: int, status: Mapping[str, Any], conditions: Mapping[str, Any],
                     pool: Any, deployments: list[dict[str, Any]]) -> list[str]:
    problems = []
    if status.get("observedGeneration") != generation:
        problems.append(f"{name}: status.observedGeneration {status.get('observedGeneration')} != {generation}")
    if set(conditions) != {"Ready", "Progressing", "Degraded"}:
        return [*problems, f"{name}: conditions {sorted(conditions)}"]
    # Every GPU model has a node here, so nothing is Degraded; Ready exactly when every
    # Deployment says its replicas are up; Progressing while they are not.
    all_ready = all(_deployment_ready(d) for d in deployments)
    want = {"Ready": "True" if all_ready else "False", "Progressing": "False" if all_ready else "True",
            "Degraded": "False"}
    for kind, value in want.items():
        condition = conditions[kind]
        if condition.get("status") != value or condition.get("observedGeneration") != generation:
            problems.append(f"{name}: {kind} is {condition.get('status')}/{condition.get('reason')} "
                            f"at generation {condition.get('observedGeneration')}, want {value} at {generation}")
    slugs = [g.get("slug") for g in status.get("gpus") or []]
    if slugs != [entry.slug for entry in pool.spec.gpus]:
        problems.append(f"{name}: status.gpus {slugs}")
    return problems


def _deployment_ready(deployment: Mapping[str, Any]) -> bool:
    want = int(deployment["spec"].get("replicas", 1))
    if want == 0:
        return True  # nothing to wait for (the operator's status counts it as rolled out too)
    status = deployment.get("status") or {}
    return (int(status.get("readyReplicas") or 0) >= want and int(status.get("updatedReplicas") or 0) >= want
            and int(status.get("observedGeneration") or 0) >= int(deployment["metadata"].get("generation") or 0))


# -- changes a user makes ---------------------------------------------------------------------------

def change_spec(rng: random.Random, body: Mapping[str, Any], what: str | None = None) -> tuple[dict[str, Any], str]:
    """One edit of a valid pool's spec, `what` or drawn: (merge patch, what it does)."""
    spec = body["spec"]
    gpus = copy.deepcopy(spec["gpus"])
    present = {FAMILIES[g["model"]] for g in gpus}
    absent = [m for m in FAMILIES if FAMILIES[m] not in present]
    choices = ["scale", "image", "gateway"]
    choices += ["add"] * (len(gpus) < 4 and bool(absent)) + ["remove"] * (len(gpus) > 1) + ["rename"]
    what = what if what in choices else rng.choice(choices)
    entry = rng.randrange(len(gpus))
    if what == "scale":
        gpus[entry]["replicas"] = rng.choice([r for r in range(4) if r != gpus[entry]["replicas"]])
        return {"spec": {"gpus": gpus}}, f"scale {gpus[entry]['model']} to {gpus[entry]['replicas']}"
    if what == "image":
        tag = int(spec["image"].rsplit(".", 1)[1]) + 1
        image = f"{spec['image'].rsplit('.', 1)[0]}.{tag}"
        return {"spec": {"image": image}}, f"image {image}"
    if what == "gateway":
        enabled = not spec["gateway"]["enabled"]
        return {"spec": {"gateway": {"enabled": enabled}}}, f"gateway {'on' if enabled else 'off'}"
    if what == "add":
        model = rng.choice(absent)
        gpus.insert(rng.randrange(len(gpus) + 1), {"model": model, "replicas": rng.randint(1, 3)})
        return {"spec": {"gpus": gpus}}, f"add {model}"
    if what == "remove":
        removed = gpus.pop(entry)
        return {"spec": {"gpus": gpus}}, f"remove {removed['model']}"
    old = gpus[entry]["model"]  # rename: same entry, another name, so another Deployment name
    twins = [m for m in FAMILIES if FAMILIES[m] == FAMILIES[old] and m != old]
    gpus[entry]["model"] = twins[0] if twins else rng.choice(absent or [old])
    return {"spec": {"gpus": gpus}}, f"rename {old} -> {gpus[entry]['model']}"


def change_invalid(rng: random.Random, body: Mapping[str, Any]) -> tuple[dict[str, Any], str]:
    gpus = copy.deepcopy(body["spec"]["gpus"])
    gpus[0] = {"model": rng.choice([m for m in UNKNOWN_GPUS if m != gpus[0]["model"]]), "replicas": rng.randint(1, 3)}
    return {"spec": {"gpus": gpus}}, f"{INVALID_POOL}: {gpus[0]['model']}"


# -- rounds --------------------------------------------------------------------------------------

@dataclass
class Plan:
    """One round. `kill`: one of KILL_POINTS; `nth`: which child write (None: drawn); `apply`: the
    fatal write lands; `changes`: spec edits made while the operator runs; `down_changes`: edits
    made while it is down; `resume_kill`: kill the restarted operator again, at a child write of
    the sync it makes when it resumes."""

    kill: str
    changes: int = 1
    nth: int | None = None
    apply: bool = True
    delay: float = 0.0
    down_changes: int = 0
    resume_kill: bool = False
    invalid_change: bool = False
    edits: tuple[str, ...] = ()  # kinds of the edits made while the operator runs (default: drawn)

    @classmethod
    def draw(cls, rng: random.Random) -> Plan:
        return cls(kill=rng.choice(KILL_POINTS), changes=rng.randint(1, 3), apply=rng.random() < 0.5,
                   delay=rng.uniform(0.0, 1.5), down_changes=rng.choice([0, 0, 1, 2]),
                   resume_kill=rng.random() < 0.4, invalid_change=rng.random() < 0.3)


@dataclass
class RoundResult:
    plan: str
    changes: list[str]
    kill_points: list[str]
    mid_reconcile: list[bool]
    seconds_to_converge: float
    problems: list[str]
    work_at_restart: bool  # False: the pools had converged before the last kill (a late delay)


class Run:
    def __init__(self, emulator: FaultyEmulatorThread, operator: OperatorProcess, rng: random.Random,
                 converge_timeout: float, log: Callable[[str], None]) -> None:
        from sdxlpool._kube import connect

        assert emulator.emulator is not None
        self.server = emulator.emulator
        self.kube = connect(str(emulator.kubeconfig))
        self.operator = operator
        self.rng = rng
        self.converge_timeout = converge_timeout
        self.log = log

    # setup -----------------------------------------------------------------------------------
    def create_world(self) -> None:
        for name, product in NODES.items():
            self.kube.create({"apiVersion": "v1", "kind": "Node", "metadata": {
                "name": name, "labels": {lbl.NVIDIA_PRODUCT: product, "kubernetes.io/os": "linux"}}})
        for name, gpus in VALID_POOLS.items():
            self.kube.create(pool_manifest(name, gpus))
        self.kube.create(pool_manifest(INVALID_POOL, [("banana", 1), ("A100", 1)]))

    def pool(self, name: str) -> dict[str, Any]:
        body = self.kube.get(*POOL_API, name, NS)
        assert body is not None
        return body

    # waiting ---------------------------------------------------------------------------------
    def wait_converged(self) -> tuple[float, list[str]]:
        """Seconds from the operator's last start until the pools converged (or the problems left)."""
        deadline = time.monotonic() + self.converge_timeout
        problems: list[str] = []
        while time.monotonic() < deadline:
            problems = findings(snapshot(self.server))
            if not problems:
                seconds = time.monotonic() - self.operator.started_at
                return seconds, self.wait_settled(deadline)
            if not self.operator.alive:
                return time.monotonic() - self.operator.started_at, ["operator exited", *problems]
            time.sleep(0.1)
        return time.monotonic() - self.operator.started_at, problems

    def wait_settled(self, deadline: float, quiet: float = 1.5) -> list[str]:
        """Wait until the operator has written nothing for `quiet` seconds: it has worked off the
        events its own writes caused, and is not stuck in a loop of rewriting a child."""
        while time.monotonic() < deadline:
            if time.monotonic() - self.server.last_operator_write >= quiet:
                return findings(snapshot(self.server))  # and nothing undone since
            time.sleep(0.1)
        return ["the operator never stopped writing"]

    def kill_now(self, point: str, kills: list[str], mid: list[bool]) -> None:
        busy = bool(findings(snapshot(self.server)))  # before the kill: anything left to do?
        if self.operator.kill():
            kills.append(point)
            mid.append(busy)

    def arm(self, kind: str, count: int, apply: bool, point: str, kills: list[str], mid: list[bool]) -> Trap:
        def spring(request: str, busy: bool) -> None:
            # Runs in the emulator's loop, inside the operator's request: nothing else moves.
            if self.operator.kill():
                kills.append(f"{point} at {request}")
                mid.append(busy)

        trap = Trap(kind=kind, count=count, apply=apply,
                    spring=lambda request, busy: (spring(request, busy), trap.fired.set()))
        self.server.trap = trap
        return trap

    def await_trap(self, trap: Trap, kills: list[str], mid: list[bool], timeout: float = 30.0) -> None:
        if not trap.fired.wait(timeout):
            self.server.trap = None
            if not trap.fired.is_set():  # the operator never made that write: kill it anyway, late
                self.kill_now(f"late ({trap.kind} #{trap.count} never came, saw {trap.matched})", kills, mid)

    def child_writes_due(self, overrides: Mapping[str, Mapping[str, Any]] = (), deleted: tuple = ()) -> int:
        objects = [o for o in snapshot(self.server) if _identity(o) != deleted]
        for obj in objects:
            if obj["kind"] == POOL_API[1] and obj["metadata"]["name"] in overrides:
                _merge(obj, overrides[obj["metadata"]["name"]])
        return len(findings(objects, children_only=True))

    # one round -------------------------------------------------------------------------------
    def round(self, plan: Plan) -> RoundResult:
        kills: list[str] = []
        mid: list[bool] = []
        edits: list[str] = []
        if not self.operator.alive:
            self.operator.start()

        # 1. Edits while the operator runs, and a kill in the middle of the reconcile they cause.
        patches: dict[str, dict[str, Any]] = {}
        deleted: tuple = ()
        if plan.kill != "child-deleted":
            names = self.rng.sample(sorted(VALID_POOLS), k=min(plan.changes, len(VALID_POOLS)))
            for index, name in enumerate(names):
                kind = plan.edits[index] if index < len(plan.edits) else None
                patch, what = change_spec(self.rng, self.pool(name), kind)
                patches[name] = patch
                edits.append(f"{name}: {what}")
        else:
            victim = self.rng.choice([o for o in snapshot(self.server) if o["metadata"].get("namespace") == NS
                                      and o["kind"] in ("Deployment", "Service", "Role", "ServiceAccount")
                                      and o["metadata"].get("ownerReferences")])
            deleted = _identity(victim)
            edits.append(f"delete {victim['kind']}/{victim['metadata']['name']}")
        trap = None
        if plan.kill in ("write", "child-deleted"):
            due = max(1, self.child_writes_due(patches, deleted))
            nth = min(plan.nth or self.rng.randint(1, due), due)
            trap = self.arm("child", nth, plan.apply, f"{plan.kill} #{nth}/{due}", kills, mid)
        elif plan.kill == "status":
            trap = self.arm("status", 1, False, "status", kills, mid)
        for name, patch in patches.items():
            self.kube.patch(*POOL_API, name, patch, NS)
        if plan.invalid_change:
            patch, what = change_invalid(self.rng, self.pool(INVALID_POOL))
            self.kube.patch(*POOL_API, INVALID_POOL, patch, NS)
            edits.append(what)
        if deleted:
            self.kube.delete(deleted[0], deleted[1], deleted[2], NS)
        if trap is not None:
            self.await_trap(trap, kills, mid)
        else:
            time.sleep(plan.delay)
            self.kill_now(f"delay {plan.delay:.2f}s", kills, mid)

        # 2. Edits while it is down.
        for _ in range(plan.down_changes):
            name = self.rng.choice(sorted(VALID_POOLS))
            patch, what = change_spec(self.rng, self.pool(name))
            self.kube.patch(*POOL_API, name, patch, NS)
            edits.append(f"{name} (while down): {what}")

        # 3. Restart; maybe kill it again in the middle of the sync it makes on resuming.
        due = self.child_writes_due()
        if plan.resume_kill and (due or findings(snapshot(self.server))):
            if due:
                trap = self.arm("child", self.rng.randint(1, due), self.rng.random() < 0.5, "resume", kills, mid)
            else:  # only status left to write
                trap = self.arm("status", 1, False, "resume status", kills, mid)
            self.operator.start()
            self.await_trap(trap, kills, mid)
        work = bool(findings(snapshot(self.server)))
        self.operator.start()

        # 4. Converged?
        seconds, problems = self.wait_converged()
        return RoundResult(plan=_describe(plan), changes=edits, kill_points=kills, mid_reconcile=mid,
                           seconds_to_converge=round(seconds, 2), problems=problems, work_at_restart=work)

    def deployments_come_up(self) -> tuple[float, list[str]]:
        """Play the Deployment controller (every replica of every Deployment ready, at its latest
        generation) until every valid pool says Ready=True."""
        started = time.monotonic()
        deadline = time.monotonic() + self.converge_timeout
        problems: list[str] = []
        while time.monotonic() < deadline:
            for obj in snapshot(self.server):
                if obj["kind"] == "Deployment" and obj["metadata"].get("namespace") == NS and not _deployment_ready(obj):
                    replicas = int(obj["spec"].get("replicas", 1))
                    self.kube.patch("apps/v1", "Deployment", obj["metadata"]["name"], {"status": {
                        "observedGeneration": obj["metadata"]["generation"], "replicas": replicas,
                        "readyReplicas": replicas, "availableReplicas": replicas, "updatedReplicas": replicas}},
                        NS, status=True)
            objects = snapshot(self.server)
            problems = findings(objects)
            ready = all(_condition(o, "Ready") == "True" for o in objects
                        if o["kind"] == POOL_API[1] and o["metadata"]["name"] in VALID_POOLS)
            if not problems and ready:
                return time.monotonic() - started, []
            time.sleep(0.1)
        return time.monotonic() - started, problems or ["Ready never became True"]


def _condition(pool: Mapping[str, Any], kind: str) -> str | None:
    for condition in (pool.get("status") or {}).get("conditions") or []:
        if condition.get("type") == kind:
            return condition.get("status")
    return None


def _merge(target: dict[str, Any], patch: Mapping[str, Any]) -> None:
    """JSON merge patch, in place."""
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = copy.deepcopy(value)


def _describe(plan: Plan) -> str:
    parts = [plan.kill]
    if plan.kill == "delay":
        parts.append(f"{plan.delay:.2f}s")
    elif plan.kill in ("write", "child-deleted"):
        parts.append("applied" if plan.apply else "in flight")
    if plan.down_changes:
        parts.append(f"+{plan.down_changes} while down")
    if plan.resume_kill:
        parts.append("+kill on resume")
    return " ".join(parts)


def run(*, rounds: int, seed: int, workdir: Path, plans: list[Plan] | None = None, timeout: float = 900.0,
        converge_timeout: float = 60.0, resync_seconds: float = 3600.0, verbose: bool = True) -> dict[str, Any]:
    """Run the rounds; the summary says what happened (`converged` False: see `problems`)."""
    rng = random.Random(seed)
    say = (lambda text: print(text, file=sys.stderr, flush=True)) if verbose else (lambda text: None)
    plans = list(plans) if plans is not None else [Plan.draw(rng) for _ in range(rounds)]
    started = time.monotonic()
    results: list[RoundResult] = []
    final: tuple[float, list[str]] = (0.0, [])
    with FaultyEmulatorThread(workdir) as emulator:
        operator = OperatorProcess(emulator.operator_kubeconfig, workdir / "operator.log", resync_seconds)
        faults = Run(emulator, operator, rng, converge_timeout, say)
        try:
            faults.create_world()
            operator.start()
            first, problems = faults.wait_converged()
            problems += literal_findings(snapshot(faults.server), AT_START)  # the pools as created
            say(f"initial convergence {first:.1f}s {problems[:5]}")
            for index, plan in enumerate(plans, 1):
                if problems or time.monotonic() - started > timeout:
                    break
                result = faults.round(plan)
                results.append(result)
                problems = result.problems
                say(f"round {index}: {result.plan}; {'; '.join(result.changes)}; kills {result.kill_points}; "
                    f"converged in {result.seconds_to_converge}s {problems[:5]}")
            if not problems:
                final = faults.deployments_come_up()
                problems = final[1]
                say(f"deployments up, Ready=True after {final[0]:.1f}s {problems[:5]}")
            pools = {name: faults.pool(name).get("status", {}) for name in [*VALID_POOLS, INVALID_POOL]}
        finally:
            operator.stop()
            faults.kube.close()
    seconds = [r.seconds_to_converge for r in results if r.work_at_restart]
    kill_kinds: dict[str, int] = {}
    for result in results:
        for point in result.kill_points:
            kind = point.split(" ")[0]
            kill_kinds[kind] = kill_kinds.get(kind, 0) + 1
    mids = [flag for r in results for flag in r.mid_reconcile]
    return {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.node()} {platform.machine()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}",
        "command": " ".join(["python", *sys.argv]) if __name__ == "__main__" else "reliability.operator_faults.run",
        "seed": seed,
        "rounds": len(results),
        "rounds_planned": len(plans),
        "kills": sum(len(r.kill_points) for r in results),
        "kills_mid_reconcile": sum(mids),
        "kills_by_point": kill_kinds,
        "operator_starts": operator.starts,
        "rounds_with_work_left_at_last_restart": len(seconds),
        "seconds_to_converge_after_last_restart": {
            "p50": round(statistics.median(seconds), 2) if seconds else None,
            "max": round(max(seconds), 2) if seconds else None,
            "p90": round(percentile(seconds, 90), 2) if seconds else None,
        },
        "seconds_to_ready_after_replicas_up": round(final[0], 2),
        "converged": not problems and len(results) == len(plans),
        "problems": problems,
        "invalid_pool": {k: v for k, v in pools[INVALID_POOL].items() if k in ("observedGeneration", "summary")}
        | {"degraded": next((f"{c['status']}/{c['reason']}" for c in pools[INVALID_POOL].get("conditions", [])
                             if c["type"] == "Degraded"), None)},
        "valid_pools": {name: pools[name].get("summary") for name in VALID_POOLS},
        "seconds_total": round(time.monotonic() - started, 1),
        "round_log": [r.__dict__ for r in results],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=900, help="for the whole run, seconds")
    parser.add_argument("--converge-timeout", type=float, default=60, help="per round, seconds")
    parser.add_argument("--resync-seconds", type=float, default=3600,
                        help="the operator's safety-net timer; long by default, so it cannot hide a stall")
    parser.add_argument("--out", type=Path, help="also write the JSON summary here")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (operator log)")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="operator-faults-"))
    summary = run(rounds=args.rounds, seed=args.seed, workdir=workdir, timeout=args.timeout,
                  converge_timeout=args.converge_timeout, resync_seconds=args.resync_seconds)
    text = json.dumps(summary, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    if args.keep or not summary["converged"]:
        print(f"operator log: {workdir / 'operator.log'}", file=sys.stderr)
    return 0 if summary["converged"] else 1


if __name__ == "__main__":
    sys.exit(main())
