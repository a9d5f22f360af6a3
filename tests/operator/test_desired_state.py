"""desired_state over a table of named pools: names, labels, placement, args, security; every
manifest validated by kubernetes-validate (strict, Kubernetes 1.35) and the restricted Pod
Security Standard."""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from sdxlpool.api import labels as lbl
from sdxlpool.api.gpu import AKASH_GPU_LABEL_PREFIX, parse_gpu_name
from sdxlpool.api.labels import GPU_RESOURCE, label_value
from sdxlpool.api.labels import NVIDIA_PRODUCT as NVIDIA_PRODUCT_LABEL
from sdxlpool.api.pool_config import WORKER_DRAIN_SECONDS
from sdxlpool.api.ports import GATEWAY_PEER_PORT, WORKER_PORT
from sdxlpool.api.spec import PoolSpecError, SDXLPool, is_label_key, is_label_value, load_pool
from sdxlpool.operator.desired import (
    DesiredState,
    canonical_product_label,
    child_name,
    desired_state,
    identity,
)

KUBERNETES = "1.35"
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
AKASH = AKASH_GPU_LABEL_PREFIX


def pool_data(name: str = "demo", namespace: str | None = "sdxl", **spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "image": "ghcr.io/example/sdxlpool-worker:0.1.0",
        "model": {"volume": {"claimName": "sdxl-weights", "basePath": "sdxl/base"}},
        "gpus": [{"model": "A100"}],
    }
    metadata = {"name": name, **({"namespace": namespace} if namespace else {})}
    return {"apiVersion": "sdxlpool.dev/v1alpha1", "kind": "SDXLPool", "metadata": metadata, "spec": {**base, **spec}}


def node(name: str, **labels: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": labels}}


def gfd(name: str, product: str, **labels: str) -> dict[str, Any]:
    return node(name, **{NVIDIA_PRODUCT_LABEL: product, **labels})


def nodes_with(*pairs: tuple[str, Mapping[str, str]]) -> list[dict[str, Any]]:
    return [{"metadata": {"name": name, "labels": dict(labels)}} for name, labels in pairs]


def example_nodes() -> list[dict[str, Any]]:
    return yaml.safe_load((EXAMPLES / "nodes.yaml").read_text())["items"]


# --- helpers over a DesiredState -------------------------------------------------------------------


def deployment(state: DesiredState, name: str) -> dict[str, Any]:
    (found,) = [c for c in state.of_kind("Deployment") if c["metadata"]["name"] == name]
    return found


def worker_of(state: DesiredState, slug: str) -> dict[str, Any]:
    return deployment(state, state.placements[slug].deployment)


def pod_spec(dep: Mapping[str, Any]) -> dict[str, Any]:
    return dep["spec"]["template"]["spec"]


def container(dep: Mapping[str, Any], name: str | None = None) -> dict[str, Any]:
    containers = pod_spec(dep)["containers"]
    return containers[0] if name is None else next(c for c in containers if c["name"] == name)


def args_of(dep: Mapping[str, Any]) -> list[str]:
    return container(dep)["args"]


def flag(args: list[str], name: str) -> str | None:
    return args[args.index(name) + 1] if name in args else None


def env_of(c: Mapping[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in c.get("env", [])}


def terms(dep: Mapping[str, Any]) -> list[dict[str, Any]]:
    affinity = pod_spec(dep)["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    return affinity["nodeSelectorTerms"]


def admitted(dep: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """Would the scheduler's node affinity and nodeSelector admit a node with ``labels``?"""
    selector = pod_spec(dep).get("nodeSelector", {})
    if any(labels.get(k) != v for k, v in selector.items()):
        return False

    def ok(expression: Mapping[str, Any]) -> bool:
        key, operator = expression["key"], expression["operator"]
        if operator == "Exists":
            return key in labels
        if operator == "In":
            return labels.get(key) in expression["values"]
        raise AssertionError(f"unexpected operator {operator}")

    return any(all(ok(e) for e in term["matchExpressions"]) for term in terms(dep))


# --- the table -----------------------------------------------------------------------------------


@dataclass
class Case:
    pool: dict[str, Any]
    nodes: list[dict[str, Any]] = field(default_factory=list)
    check: Callable[[DesiredState, SDXLPool, list[dict[str, Any]]], None] = lambda *_: None


def check_minimal(state: DesiredState, pool: SDXLPool, nodes: list) -> None:
    assert [(c["kind"], c["metadata"]["name"]) for c in state.children] == [
        ("ServiceAccount", "demo-gateway"),
        ("Role", "demo-gateway"),
        ("RoleBinding", "demo-gateway"),
        ("Service", "demo-workers"),
        ("Service", "demo-gateway"),
        ("Deployment", "demo-a100"),
        ("Deployment", "demo-gateway"),
    ]
    placement = state.placements["a100"]
    assert (placement.model, placement.slug, placement.deployment) == ("A100", "a100", "demo-a100")
    assert placement.reason == "NoMatchingNodes" and placement.matched_nodes == ()
    assert f"no node carries a {lbl.NVIDIA_PRODUCT} label matching A100" in placement.message
    dep = worker_of(state, "a100")
    # Pending rather than misplaced: the canonical product value stands in for real nodes' values.
    assert terms(dep) == [
        {"matchExpressions": [{"key": NVIDIA_PRODUCT_LABEL, "operator": "In", "values": ["NVIDIA-A100"]}]}
    ]
    assert not admitted(dep, {NVIDIA_PRODUCT_LABEL: "NVIDIA-GeForce-RTX-3090"})
    args = args_of(dep)
    assert container(dep)["command"] == ["sdxlpool"] and args[0] == "worker"
    assert flag(args, "--model") == "/models/sdxl/base" and "--refiner" not in args
    assert (flag(args, "--host"), flag(args, "--port"), flag(args, "--gpu-model")) == ("0.0.0.0", "7860", "A100")
    assert "--provider" not in args and "--location" not in args
    assert flag(args, "--max-steps") == "60" and flag(args, "--default-sampler") == "DPM++ SDE Karras"
    volumes = {v["name"]: v for v in pod_spec(dep)["volumes"]}
    assert volumes["models"]["persistentVolumeClaim"] == {"claimName": "sdxl-weights", "readOnly": True}
    assert "initContainers" not in pod_spec(dep)
    annotations = dep["spec"]["template"]["metadata"]["annotations"]
    assert annotations[lbl.ANNOTATION_GPU_MODEL] == "A100"
    assert annotations[lbl.ANNOTATION_PROVIDER] == annotations[lbl.ANNOTATION_PRICE] == ""
    assert "nodeSelector" not in pod_spec(dep) and "imagePullSecrets" not in pod_spec(dep)


def check_design(state: DesiredState, pool: SDXLPool, nodes: list) -> None:
    a100, rtx = state.placements["a100"], state.placements["rtx-3090"]
    assert a100.reason == rtx.reason == "Matched"
    assert a100.matched_nodes == ("gpu-a100-pcie-1", "gpu-a100-sxm-1")
    assert rtx.matched_nodes == ("gpu-3090-1",)
    assert a100.message.startswith(f"2 nodes carry a {lbl.NVIDIA_PRODUCT} label matching A100: ")
    dep = worker_of(state, "a100")
    assert dep["metadata"]["name"] == "demo-a100" and dep["spec"]["replicas"] == 2
    assert terms(dep)[0]["matchExpressions"][0]["values"] == ["NVIDIA-A100-PCIE-40GB", "NVIDIA-A100-SXM4-80GB"]
    assert terms(worker_of(state, "rtx-3090"))[0]["matchExpressions"][0]["values"] == ["NVIDIA-GeForce-RTX-3090"]
    assert worker_of(state, "rtx-3090")["spec"]["replicas"] == 4
    args = args_of(dep)
    assert (flag(args, "--provider"), flag(args, "--location")) == ("Foundry Staking", "US-East")
    annotations = dep["spec"]["template"]["metadata"]["annotations"]
    assert annotations[lbl.ANNOTATION_PROVIDER] == "Foundry Staking"
    assert annotations[lbl.ANNOTATION_LOCATION] == "US-East"
    assert annotations[lbl.ANNOTATION_PRICE] == "1.1"
    assert annotations[lbl.SCRAPE] == "true" and annotations[lbl.SCRAPE_PORT] == "7860"
    resources = container(dep)["resources"]
    assert resources == {"requests": {"cpu": "4", "memory": "24Gi"}, "limits": {"memory": "32Gi", GPU_RESOURCE: "1"}}
    gateway = deployment(state, "demo-gateway")
    assert gateway["spec"]["replicas"] == 2
    assert flag(container(gateway)["args"], "--rate-limit") == "60"
    # every node of examples/nodes.yaml is used by exactly one entry
    for n in nodes:
        users = [slug for slug in ("a100", "rtx-3090") if admitted(worker_of(state, slug), n["metadata"]["labels"])]
        assert len(users) == 1, (n["metadata"]["name"], users)


def check_a100_80gb_only(state: DesiredState, pool: SDXLPool, nodes: list) -> None:
    placement = state.placements["a100-80gb"]
    assert placement.matched_nodes == ("sxm",)
    assert terms(worker_of(state, "a100-80gb"))[0]["matchExpressions"][0]["values"] == ["NVIDIA-A100-SXM4-80GB"]


def check_akash(state: DesiredState, pool: SDXLPool, nodes: list) -> None:
    a100 = state.placements["a100-80gb"]
    assert a100.reason == "Matched" and a100.matched_nodes == ("akash-a100-80",)
    assert terms(worker_of(state, "a100-80gb")) == [
        {
            "matchExpressions": [
                {"key": f"{AKASH}a100", "operator": "Exists"},
                {"key": f"{AKASH}a100.ram.80Gi", "operator": "Exists"},
            ]
        }
    ]
    rtx = state.placements["rtx-3090"]
    assert rtx.matched_nodes == ("akash-3090",)
    assert terms(worker_of(state, "rtx-3090")) == [
        {"matchExpressions": [{"key": f"{AKASH}rtx3090", "operator": "Exists"}]}
    ]
    l40s = state.placements["l40s"]
    assert l40s.reason == "NoMatchingNodes"
    assert terms(worker_of(state, "l40s")) == [{"matchExpressions": [{"key": f"{AKASH}l40s", "operator": "Exists"}]}]
    for n in nodes:
        labels = n["metadata"]["labels"]
        assert admitted(worker_of(state, "a100-80gb"), labels) == (n["metadata"]["name"] == "akash-a100-80")


def check_custom(state: DesiredState, pool: SDXLPool, nodes: list) -> None:
    a100 = state.placements["a100"]
    assert a100.matched_nodes == ("c1", "c2")
    assert terms(worker_of(state, "a100")) == [
        {"matchExpressions": [{"key": "example.com/gpu-NVIDIA-A100-PCIE-40GB", "operator": "Exists"}]},
        {"matchExpressions": [{"key": "example.com/gpu-a100-80gb", "operator": "Exists"}]},
    ]
    l40s = state.placements["l40s"]
    assert l40s.reason == "NoMatchingNodes"
    assert terms(worker_of(state, "l40s")) == [
        {"matchExpressions": [{"key": "example.com/gpu-l40s", "operator": "Exists"}]}
    ]


def check_mig(state: DesiredState, pool: SDXLPool, nodes: list) -> None:
    slug = "a100-40gb-mig-1g.5gb"
    mig = state.placements[slug]
    assert mig.matched_nodes == ("mig-node",)
    name = mig.deployment
    assert re.fullmatch(r"demo-a100-40gb-mig-1g-5gb-[0-9a-f]{8}", name), name
    dep = worker_of(state, slug)
    assert dep["metadata"]["labels"][lbl.GPU] == slug
    assert dep["spec"]["selector"]["matchLabels"][lbl.GPU] == slug
    assert state.placements["a100-40gb"].matched_nodes == ("whole-node",)  # a whole GPU never lands on a slice
    plus = state.placements["a100-40gb-mig-1g.10gb+me"]
    assert plus.reason == "NoMatchingNodes"
    assert worker_of(state, "a100-40gb-mig-1g.10gb+me")["metadata"]["labels"][lbl.GPU] == (
        "a100-40gb-mig-1g.10gb_me"
    )


def check_no_gateway(state: DesiredState, pool: SDXLPool, nodes: list) -> None:
    assert [(c["kind"], c["metadata"]["name"]) for c in state.children] == [
        ("Service", "demo-workers"),
        ("NetworkPolicy", "demo-workers"),
        ("PodDisruptionBudget", "demo-a100"),
        ("Deployment", "demo-a100"),
    ]


def check_hf(state: DesiredState, pool: SDXLPool, nodes: list) -> None:
    dep = worker_of(state, "a100")
    spec = pod_spec(dep)
    init = spec["initContainers"]
    assert [c["name"] for c in init] == ["download-base", "download-refiner"]
    base_dir = "/models/huggingface/v1.0/stabilityai/stable-diffusion-xl-base-1.0"
    assert init[0]["command"][:5] == ["hf", "download", "stabilityai/stable-diffusion-xl-base-1.0", "--local-dir", base_dir]
    assert flag(init[0]["command"], "--revision") == "v1.0"
    assert "*/diffusion_pytorch_model.safetensors" in init[0]["command"]
    assert env_of(init[0])["HF_TOKEN"] == {"secretKeyRef": {"name": "hf-token", "key": "hf"}}
    assert init[0]["volumeMounts"][0] == {"name": "models", "mountPath": "/models"}  # writable for the download
    args = args_of(dep)
    assert flag(args, "--model") == base_dir
    assert flag(args, "--refiner") == "/models/huggingface/v1.0/stabilityai/stable-diffusion-xl-refiner-1.0"
    assert {"name": "models", "mountPath": "/models", "readOnly": True} in container(dep)["volumeMounts"]
    assert env_of(container(dep))["HF_HUB_OFFLINE"] == "1"
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["models"] == {"name": "models", "persistentVolumeClaim": {"claimName": "hf-cache"}}


def check_compile_cache(state: DesiredState, pool: SDXLPool, nodes: list) -> None:
    """spec.compileCache: every worker mounts it read-write where --compile-cache-dir points."""
    for slug in state.placements:
        dep = worker_of(state, slug)
        assert flag(args_of(dep), "--compile-cache-dir") == "/cache/compile"
        assert {"name": "compile-cache", "mountPath": "/cache/compile"} in container(dep)["volumeMounts"]
    volumes = {v["name"]: v for v in pod_spec(worker_of(state, "a100"))["volumes"]}
    expected = pool.spec.compile_cache
    assert expected is not None
    if expected.claim_name:
        assert volumes["compile-cache"] == {"name": "compile-cache", "persistentVolumeClaim": {"claimName": "kernels"}}
    else:
        assert volumes["compile-cache"] == {"name": "compile-cache", "emptyDir": {"sizeLimit": "8Gi"}}


def check_no_compile_cache(state: DesiredState, pool: SDXLPool, nodes: list) -> None:
    """Unset: no extra volume, and the worker keeps its default ($SDXLPOOL_CACHE/compile on scratch)."""
    dep = worker_of(state, "a100")
    assert "--compile-cache-dir" not in args_of(dep)
    assert "compile-cache" not in {v["name"] for v in pod_spec(dep)["volumes"]}


def check_hf_empty_dir(state: DesiredState, pool: SDXLPool, nodes: list) -> None:
    spec = pod_spec(worker_of(state, "a100"))
    assert [c["name"] for c in spec["initContainers"]] == ["download-base"]
    assert "HF_TOKEN" not in env_of(spec["initContainers"][0])
    assert "--revision" not in spec["initContainers"][0]["command"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["models"] == {"name": "models", "emptyDir": {"sizeLimit": "40Gi"}}


def check_single_files(state: DesiredState, pool: SDXLPool, nodes: list) -> None:
    args = args_of(worker_of(state, "a100"))
    assert flag(args, "--model") == "/models/checkpoints/sd_xl_base_1.0.safetensors"
    assert flag(args, "--refiner") == "/models/checkpoints/sd_xl_refiner_1.0.safetensors"


def check_fine_tunes(state: DesiredState, pool: SDXLPool, nodes: list) -> None:
    """LoRAs and VAEs from the Hub and from volumes: each file lands inside the folder the worker is told."""
    dep = worker_of(state, "a100")
    spec, worker = pod_spec(dep), container(dep, "worker")
    args = worker["args"]
    assert (flag(args, "--lora-dir"), flag(args, "--vae-dir")) == ("/fine-tunes/loras", "/fine-tunes/vae")
    assert "--embeddings-dir" not in args  # a kind the spec does not list gets no flag
    downloads = {c["name"]: c for c in spec["initContainers"]}
    assert list(downloads) == ["download-loras-0", "download-loras-2", "download-vae-0"]
    pixel = downloads["download-loras-0"]
    assert pixel["command"] == ["hf", "download", "nerijs/pixel-art-xl", "pixel-art-xl.safetensors",
                                "--local-dir", "/fine-tunes/loras/huggingface/main/nerijs/pixel-art-xl"]
    assert "HF_TOKEN" not in env_of(pixel)
    private = downloads["download-loras-2"]
    assert private["command"][-2:] == ["--revision", "v2"] and "/huggingface/v2/org/private" in private["command"][5]
    assert env_of(private)["HF_TOKEN"] == {"secretKeyRef": {"name": "hf", "key": "token"}}
    mounts = {m["mountPath"]: m for m in worker["volumeMounts"]}
    for init in downloads.values():
        (target,) = [m for m in init["volumeMounts"] if m["name"] == "fine-tunes"]
        assert not target.get("readOnly")  # the init container writes there ...
        seen = mounts[target["mountPath"]]  # ... and the worker reads the same place, read-only
        assert (seen["name"], seen["subPath"], seen["readOnly"]) == ("fine-tunes", target["subPath"], True)
        local_dir, file = init["command"][5], init["command"][3]
        kind_dir = flag(args, "--vae-dir" if init["name"].startswith("download-vae") else "--lora-dir")
        assert f"{local_dir}/{file}".startswith(target["mountPath"] + "/") and target["mountPath"].startswith(
            f"{kind_dir}/")
    # A volume file without claimName is on the model's PVC; another claim is its own read-only volume.
    ink = mounts["/fine-tunes/loras/volume/sdxl-weights/loras/ink.safetensors"]
    assert (ink["name"], ink["subPath"], ink["readOnly"]) == ("models", "loras/ink.safetensors", True)
    # --styles names the one file, mounted where the flag says.
    styles = mounts[flag(args, "--styles")]
    assert (styles["name"], styles["subPath"]) == ("models", "styles/styles.csv")
    shared = mounts["/fine-tunes/loras/volume/team-loras"]
    assert "subPath" not in shared and shared["readOnly"] is True  # path "." is the whole volume
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes[shared["name"]]["persistentVolumeClaim"] == {"claimName": "team-loras", "readOnly": True}
    assert volumes["fine-tunes"] == {"name": "fine-tunes", "emptyDir": {}}
    # No mount inside another (a read-only parent would keep the runtime from creating the mount point).
    paths = [m["mountPath"] for m in worker["volumeMounts"]]
    assert not [(a, b) for a in paths for b in paths if a != b and b.startswith(a + "/")]


def check_zero(state: DesiredState, pool: SDXLPool, nodes: list) -> None:
    assert worker_of(state, "a100")["spec"]["replicas"] == 0
    assert deployment(state, "demo-gateway")["spec"]["replicas"] == 0
    assert state.placements["a100"].reason == "Matched"


def check_merged(state: DesiredState, pool: SDXLPool, nodes: list) -> None:
    placement = state.placements["a100"]
    assert placement.matched_nodes == ("labelled",)  # the other A100 node lacks the nodeSelector label
    dep = worker_of(state, "a100")
    spec = pod_spec(dep)
    assert spec["nodeSelector"] == {"example.com/pool": "sdxl"}
    assert spec["tolerations"] == [
        {"key": lbl.GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"},
        {"key": "dedicated", "operator": "Equal", "value": "sdxl", "effect": "NoSchedule"},
        {"key": "spot", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
    ]
    assert terms(dep)[0]["matchExpressions"][0]["values"] == ["NVIDIA-A100-SXM4-80GB"]
    assert not admitted(dep, nodes[1]["metadata"]["labels"]) and admitted(dep, nodes[0]["metadata"]["labels"])
    unmatched = state.placements["rtx-3090"]
    assert unmatched.reason == "NoMatchingNodes" and "nodeSelector example.com/zone=b" in unmatched.message


def check_long_name(state: DesiredState, pool: SDXLPool, nodes: list) -> None:
    name = pool.metadata["name"]
    names = [c["metadata"]["name"] for c in state.children]
    # gateway (SA, Role, RoleBinding, Service, PDB, Deployment), workers (Service, NetworkPolicy),
    # a100 and rtx-3090 (PDB, Deployment)
    assert len(set(names)) == 4 and names.count(child_name(name, "gateway")) == 6
    assert all(len(n) <= 63 and re.search(r"-[0-9a-f]{8}$", n) for n in names), names
    labels = worker_of(state, "a100")["metadata"]["labels"]
    assert len(labels[lbl.POOL]) <= 63 and labels[lbl.POOL] == labels[lbl.INSTANCE]
    assert worker_of(state, "a100")["metadata"]["name"] != worker_of(state, "rtx-3090")["metadata"]["name"]
    gateway = deployment(state, child_name(name, "gateway"))
    assert flag(args_of(gateway), "--pool") == name  # the gateway is told the real name


def check_dotted_name(state: DesiredState, pool: SDXLPool, nodes: list) -> None:
    names = {c["metadata"]["name"] for c in state.children}
    other = desired_state(load_pool(pool_data("my-pool")), nodes)
    assert names.isdisjoint({c["metadata"]["name"] for c in other.children})  # "my.pool" vs "my-pool"
    assert all(n.startswith("my-pool-") for n in names)


def check_extras(state: DesiredState, pool: SDXLPool, nodes: list) -> None:
    gateway = deployment(state, "demo-gateway")
    c = container(gateway)
    assert c["image"] == "ghcr.io/example/sdxlpool-gateway:0.1.0" and c["imagePullPolicy"] == "Always"
    assert c["resources"] == {"requests": {"cpu": "250m", "memory": "256Mi"}}
    assert c["args"][:10] == [
        "gateway", "--kubernetes", "--namespace", "sdxl", "--pool", "demo", "--host", "0.0.0.0", "--port", "8080",
    ]  # fmt: skip
    assert flag(c["args"], "--rate-limit-burst") == "5"
    assert not any(e["name"].startswith("SDXLPOOL_GATEWAY_") for e in c["env"])  # flags only: visible, checked
    service = next(s for s in state.of_kind("Service") if s["metadata"]["name"] == "demo-gateway")
    assert service["spec"]["type"] == "LoadBalancer"
    for dep in state.of_kind("Deployment"):
        assert pod_spec(dep)["imagePullSecrets"] == [{"name": "regcred"}]
    worker = worker_of(state, "l40s")
    assert container(worker)["resources"]["limits"] == {"cpu": "8", "memory": "48Gi", GPU_RESOURCE: "2"}
    assert container(worker)["resources"]["requests"] == {"cpu": "4", "memory": "32Gi", "ephemeral-storage": "20Gi"}
    assert flag(args_of(worker), "--default-cfg-scale") == "5.5"
    assert flag(args_of(worker), "--default-refiner-switch-at") == "0.7"
    # the gateway is told the same limits and defaults as every worker
    for name in ("--max-steps", "--default-cfg-scale", "--default-width", "--default-sampler"):
        assert flag(c["args"], name) == flag(args_of(worker), name), name


def check_default_namespace(state: DesiredState, pool: SDXLPool, nodes: list) -> None:
    assert {c["metadata"]["namespace"] for c in state.children} == {"default"}
    binding = state.of_kind("RoleBinding")[0]
    assert binding["subjects"][0]["namespace"] == "default"


A100_NODES = [
    gfd("sxm", "NVIDIA-A100-SXM4-80GB"),
    gfd("pcie", "NVIDIA-A100-PCIE-40GB"),
    gfd("rtx", "NVIDIA-GeForce-RTX-3090"),
    gfd("junk", "banana"),
    node("cpu-only"),
]

def check_fast_mode(state: DesiredState, pool: SDXLPool, nodes: list) -> None:
    """A fast mode is per GPU model: only the entry that asks for it gets the flag."""
    assert flag(args_of(worker_of(state, "a100")), "--fast-mode") == "deepcache"
    assert "--fast-mode" not in args_of(worker_of(state, "l40s"))  # off: the exact default, no flag


CASES = {
    "minimal": Case(pool_data()),
    "fast-mode-per-gpu": Case(pool_data(gpus=[{"model": "A100", "fastMode": "deepcache"}, {"model": "L40S"}]),
                              check=check_fast_mode),
    "design-example": Case(yaml.safe_load((EXAMPLES / "pool.yaml").read_text()), example_nodes(), check_design),
    "a100-80gb-only": Case(pool_data(gpus=[{"model": "A100-80GB"}]), A100_NODES, check_a100_80gb_only),
    "akash": Case(
        pool_data(
            placement={"labelScheme": "akash"},
            gpus=[{"model": "A100-80GB"}, {"model": "RTX 3090"}, {"model": "L40S"}],
        ),
        nodes_with(
            ("akash-a100-80", {f"{AKASH}a100": "8", f"{AKASH}a100.ram.80Gi": "8", f"{AKASH}a100.interface.sxm": "8"}),
            ("akash-a100-40", {f"{AKASH}a100": "2", f"{AKASH}a100.ram.40Gi": "2"}),
            ("akash-3090", {f"{AKASH}rtx3090": "true"}),
            ("plain", {NVIDIA_PRODUCT_LABEL: "NVIDIA-L40S"}),
        ),
        check_akash,
    ),
    "custom": Case(
        pool_data(
            placement={"labelScheme": "custom", "labelKeyTemplate": "example.com/gpu-{model}"},
            gpus=[{"model": "A100"}, {"model": "L40S"}],
        ),
        nodes_with(
            ("c1", {"example.com/gpu-a100-80gb": "true"}),
            ("c2", {"example.com/gpu-NVIDIA-A100-PCIE-40GB": "1"}),
            ("c3", {"example.com/gpu-rtx-3090": "true", "example.com/other": "a100"}),
        ),
        check_custom,
    ),
    "mig": Case(
        pool_data(
            gpus=[{"model": "A100-40GB-MIG-1g.5gb"}, {"model": "A100-40GB"}, {"model": "A100-40GB-MIG-1g.10gb+me"}]
        ),
        [gfd("mig-node", "NVIDIA-A100-SXM4-40GB-MIG-1g.5gb"), gfd("whole-node", "NVIDIA-A100-SXM4-40GB")],
        check_mig,
    ),
    "gateway-disabled": Case(pool_data(gateway={"enabled": False}), [], check_no_gateway),
    "compile-cache-pvc": Case(pool_data(compileCache={"claimName": "kernels"}, gpus=[{"model": "A100"}, {"model": "L40S"}]),
                              [], check_compile_cache),
    "compile-cache-empty-dir": Case(pool_data(compileCache={"emptyDir": {"sizeLimit": "8Gi"}}), [],
                                    check_compile_cache),
    "compile-cache-unset": Case(pool_data(), [], check_no_compile_cache),
    "huggingface-pvc-cache": Case(
        pool_data(
            model={
                "huggingFace": {
                    "repo": "stabilityai/stable-diffusion-xl-base-1.0",
                    "refinerRepo": "stabilityai/stable-diffusion-xl-refiner-1.0",
                    "revision": "v1.0",
                    "tokenSecret": {"name": "hf-token", "key": "hf"},
                    "cache": {"claimName": "hf-cache"},
                }
            }
        ),
        check=check_hf,
    ),
    "huggingface-empty-dir": Case(
        pool_data(model={"huggingFace": {"repo": "org/sdxl", "cache": {"emptyDir": {"sizeLimit": "40Gi"}}}}),
        check=check_hf_empty_dir,
    ),
    "pvc-single-files": Case(
        pool_data(
            model={
                "volume": {
                    "claimName": "weights",
                    "basePath": "/checkpoints/sd_xl_base_1.0.safetensors",
                    "refinerPath": "checkpoints/../checkpoints/sd_xl_refiner_1.0.safetensors",
                }
            }
        ),
        check=check_single_files,
    ),
    "fine-tunes": Case(
        pool_data(
            loras=[
                {"huggingFace": {"repo": "nerijs/pixel-art-xl", "file": "pixel-art-xl.safetensors"}},
                {"volume": {"path": "loras/ink.safetensors"}},
                {"huggingFace": {"repo": "org/private", "file": "sub/x.safetensors", "revision": "v2",
                                 "tokenSecret": {"name": "hf"}}},
                {"volume": {"claimName": "team-loras", "path": "."}},
            ],
            vaes=[{"huggingFace": {"repo": "madebyollin/sdxl-vae-fp16-fix", "file": "sdxl.vae.safetensors"}}],
            styles={"volume": {"path": "styles/styles.csv"}},
        ),
        check=check_fine_tunes,
    ),
    "zero-replicas": Case(
        pool_data(gpus=[{"model": "A100", "replicas": 0}], gateway={"replicas": 0}), A100_NODES, check_zero
    ),
    "tolerations-node-selector": Case(
        pool_data(
            gpus=[
                {
                    "model": "A100",
                    "nodeSelector": {"example.com/pool": "sdxl"},
                    "tolerations": [
                        {"key": "dedicated", "operator": "Equal", "value": "sdxl", "effect": "NoSchedule"},
                        {"key": lbl.GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"},
                        {"key": "spot", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
                    ],
                },
                {"model": "RTX-3090", "nodeSelector": {"example.com/zone": "b"}},
            ]
        ),
        [
            gfd("labelled", "NVIDIA-A100-SXM4-80GB", **{"example.com/pool": "sdxl"}),
            gfd("unlabelled", "NVIDIA-A100-SXM4-80GB"),
            gfd("rtx", "NVIDIA-GeForce-RTX-3090", **{"example.com/zone": "a"}),
        ],
        check_merged,
    ),
    "long-pool-name": Case(
        pool_data(name="a-very-long-pool-name-" + "x" * 60, gpus=[{"model": "A100"}, {"model": "RTX-3090"}]),
        A100_NODES,
        check_long_name,
    ),
    "dotted-pool-name": Case(pool_data(name="my.pool"), [], check_dotted_name),
    "default-namespace": Case(pool_data(namespace=None), [], check_default_namespace),
    "resources-secrets-gateway-options": Case(
        pool_data(
            imagePullPolicy="Always",
            imagePullSecrets=[{"name": "regcred"}],
            gpus=[
                {
                    "model": "L40S",
                    "gpusPerReplica": 2,
                    "resources": {
                        "requests": {"cpu": 4, "memory": "32Gi", "ephemeral-storage": "20Gi"},
                        "limits": {"cpu": "8", "memory": "48Gi"},
                    },
                }
            ],
            defaults={"cfgScale": 5.5, "refinerSwitchAt": 0.7},
            gateway={
                "image": "ghcr.io/example/sdxlpool-gateway:0.1.0",
                "serviceType": "LoadBalancer",
                "rateLimit": {"requestsPerMinute": 30, "burst": 5},
                "resources": {"requests": {"cpu": "250m", "memory": "256Mi"}},
            },
        ),
        check=check_extras,
    ),
}


@pytest.fixture(scope="module", params=sorted(CASES))
def case(request: pytest.FixtureRequest) -> Iterator[tuple[str, DesiredState, SDXLPool, list]]:
    spec = CASES[request.param]
    pool = load_pool(copy.deepcopy(spec.pool))
    yield request.param, desired_state(pool, spec.nodes), pool, spec.nodes


def test_case_specific(case: tuple[str, DesiredState, SDXLPool, list]) -> None:
    name, state, pool, nodes = case
    CASES[name].check(state, pool, nodes)


def test_every_manifest_is_valid_kubernetes(case: tuple[str, DesiredState, SDXLPool, list]) -> None:
    _, state, _, _ = case
    for child in state.children:
        try:
            kubernetes_validate.validate(child, KUBERNETES, strict=True)
        except kubernetes_validate.ValidationError as error:
            pytest.fail(f"{child['kind']}/{child['metadata']['name']}: {error.message} at {list(error.path)}")


def test_names_labels_namespace(case: tuple[str, DesiredState, SDXLPool, list]) -> None:
    _, state, pool, _ = case
    namespace = pool.metadata.get("namespace") or "default"
    for child in state.children:
        metadata = child["metadata"]
        assert metadata["namespace"] == namespace
        assert re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", metadata["name"]) and len(metadata["name"]) <= 63
        labels = metadata["labels"]
        assert labels[lbl.NAME] == "sdxlpool"
        assert labels[lbl.MANAGED_BY] == "sdxlpool-operator"
        assert labels[lbl.POOL] == label_value(pool.metadata["name"])
        assert labels[lbl.COMPONENT] in ("worker", "gateway")
        assert all(is_label_key(k) and is_label_value(v) for k, v in labels.items())
    assert len({identity(c) for c in state.children}) == len(state.children)


def test_apply_order(case: tuple[str, DesiredState, SDXLPool, list]) -> None:
    _, state, pool, _ = case
    order = ["ServiceAccount", "Role", "RoleBinding", "Service", "NetworkPolicy", "PodDisruptionBudget", "Deployment"]
    ranks = [order.index(c["kind"]) for c in state.children]
    assert ranks == sorted(ranks)
    workers = [d for d in state.of_kind("Deployment") if d["metadata"]["labels"][lbl.COMPONENT] == "worker"]
    assert [d["metadata"]["name"] for d in workers] == [p.deployment for p in state.placements.values()]
    assert list(state.placements) == [entry.slug for entry in pool.spec.gpus]


def test_selectors_select_the_right_pods(case: tuple[str, DesiredState, SDXLPool, list]) -> None:
    _, state, _, _ = case
    pods = {d["metadata"]["name"]: d["spec"]["template"]["metadata"]["labels"] for d in state.of_kind("Deployment")}
    for dep in state.of_kind("Deployment"):
        selector = dep["spec"]["selector"]["matchLabels"]
        chosen = [name for name, labels in pods.items() if selector.items() <= labels.items()]
        assert chosen == [dep["metadata"]["name"]]  # no two Deployments fight over pods
    for service in state.of_kind("Service"):
        selector = service["spec"]["selector"]
        component = service["metadata"]["labels"][lbl.COMPONENT]
        for labels in pods.values():
            assert (selector.items() <= labels.items()) == (labels[lbl.COMPONENT] == component)
        if component == "worker":
            assert service["spec"]["clusterIP"] == "None" and service["spec"]["publishNotReadyAddresses"] is False
            assert service["spec"]["ports"] == [{"name": "http", "port": WORKER_PORT, "targetPort": "http", "protocol": "TCP"}]


def test_workers(case: tuple[str, DesiredState, SDXLPool, list]) -> None:
    _, state, pool, _ = case
    for entry in pool.spec.gpus:
        placement = state.placements[entry.slug]
        dep = deployment(state, placement.deployment)
        spec = pod_spec(dep)
        worker = container(dep, "worker")
        assert dep["metadata"]["labels"][lbl.GPU] == label_value(entry.slug)
        assert dep["spec"]["replicas"] == entry.replicas
        assert dep["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 0, "maxUnavailable": 1}
        assert flag(worker["args"], "--gpu-model") == entry.model
        assert worker["resources"]["limits"][GPU_RESOURCE] == str(entry.gpus_per_replica)
        assert {"key": lbl.GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"} in spec["tolerations"]
        startup = worker["startupProbe"]
        assert startup["httpGet"]["path"] == "/readyz"
        assert startup["periodSeconds"] * startup["failureThreshold"] >= 30 * 60
        assert worker["readinessProbe"]["httpGet"]["path"] == "/readyz"
        assert worker["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert spec["automountServiceAccountToken"] is False
        # a stopped worker drains (--drain-seconds, default) before the kubelet's SIGKILL
        assert spec["terminationGracePeriodSeconds"] > WORKER_DRAIN_SECONDS
        assert "--drain-seconds" not in worker["args"]
        assert any(m["name"] == "models" and m.get("readOnly") for m in worker["volumeMounts"])
        assert terms(dep) == [dict(t) for t in placement.node_selector_terms]
        assert placement.reason == ("Matched" if placement.matched_nodes else "NoMatchingNodes")


def test_unmatched_affinity_admits_only_the_entrys_gpu(case: tuple[str, DesiredState, SDXLPool, list]) -> None:
    """With no matching node, the stand-in affinity names the entry's own GPU and nothing else."""
    _, state, pool, _ = case
    for entry in pool.spec.gpus:
        placement = state.placements[entry.slug]
        if placement.reason != "NoMatchingNodes":
            continue
        for term in placement.node_selector_terms:
            for expression in term["matchExpressions"]:
                if expression["key"] == NVIDIA_PRODUCT_LABEL and "_" not in expression["values"][0]:
                    (value,) = expression["values"]
                    assert entry.gpu.matches(parse_gpu_name(value)), value


def test_worker_args_parse_with_the_real_cli(case: tuple[str, DesiredState, SDXLPool, list]) -> None:
    from sdxlpool.cli import _build_parser

    _, state, _, _ = case
    parser = _build_parser()
    for dep in state.of_kind("Deployment"):
        args = container(dep)["args"]
        if args[0] != "worker":
            continue
        parsed = parser.parse_args(args)
        assert parsed.command == "worker" and parsed.host == "0.0.0.0" and parsed.port == WORKER_PORT


def test_gateway_replicas_share_dispatches(case: tuple[str, DesiredState, SDXLPool, list]) -> None:
    """Each gateway replica hears the others on UDP GATEWAY_PEER_PORT and knows its own pod IP, to
    leave itself out of the peers its pod watch finds (gateway/peers.py)."""
    from sdxlpool.cli import _build_parser

    _, state, _, _ = case
    for dep in state.of_kind("Deployment"):
        if dep["metadata"]["labels"][lbl.COMPONENT] != "gateway":
            continue
        c = container(dep)
        parsed = _build_parser().parse_args(c["args"])
        assert parsed.command == "gateway" and parsed.kubernetes and parsed.peer_port == GATEWAY_PEER_PORT
        assert parsed.peers is None  # found by the pod watch, not listed
        assert {"name": "peers", "containerPort": GATEWAY_PEER_PORT, "protocol": "UDP"} in c["ports"]
        assert env_of(c)["POD_IP"] == {"fieldRef": {"apiVersion": "v1", "fieldPath": "status.podIP"}}


def test_gateway_rbac_is_read_only(case: tuple[str, DesiredState, SDXLPool, list]) -> None:
    _, state, _, _ = case
    for role in state.of_kind("Role"):
        assert role["rules"] == [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}]
    for binding in state.of_kind("RoleBinding"):
        (role,) = state.of_kind("Role")
        (account,) = state.of_kind("ServiceAccount")
        assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role["metadata"]["name"]}
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": account["metadata"]["name"], "namespace": account["metadata"]["namespace"]}
        ]
    for dep in state.of_kind("Deployment"):
        if dep["metadata"]["labels"][lbl.COMPONENT] == "gateway":
            assert pod_spec(dep)["serviceAccountName"] == state.of_kind("ServiceAccount")[0]["metadata"]["name"]


# --- the restricted Pod Security Standard ---------------------------------------------------------

_RESTRICTED_VOLUMES = {
    "configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected", "secret",
}  # fmt: skip


def restricted_violations(pod: Mapping[str, Any]) -> list[str]:
    """The "restricted" Pod Security Standard (Kubernetes 1.35 policy), checked field by field."""
    problems = []
    pod_ctx = pod.get("securityContext", {})
    for host in ("hostNetwork", "hostPID", "hostIPC", "hostUsers"):
        if pod.get(host) and host != "hostUsers":
            problems.append(f"{host} set")
    for volume in pod.get("volumes", []):
        kinds = set(volume) - {"name"}
        if not kinds <= _RESTRICTED_VOLUMES:
            problems.append(f"volume {volume['name']}: {kinds}")
    if pod_ctx.get("sysctls"):
        problems.append("sysctls")
    containers = [*pod.get("initContainers", []), *pod.get("containers", [])]
    for c in containers:
        ctx = c.get("securityContext", {})
        where = f"container {c['name']}"
        if ctx.get("privileged"):
            problems.append(f"{where}: privileged")
        if ctx.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{where}: allowPrivilegeEscalation is not false")
        caps = ctx.get("capabilities", {})
        if "ALL" not in caps.get("drop", []):
            problems.append(f"{where}: capabilities not dropped")
        if set(caps.get("add", [])) - {"NET_BIND_SERVICE"}:
            problems.append(f"{where}: capabilities added")
        if not (ctx.get("runAsNonRoot") is True or (pod_ctx.get("runAsNonRoot") is True and ctx.get("runAsNonRoot") is not False)):
            problems.append(f"{where}: runAsNonRoot")
        if ctx.get("runAsUser", pod_ctx.get("runAsUser")) == 0:
            problems.append(f"{where}: runAsUser 0")
        seccomp = ctx.get("seccompProfile", pod_ctx.get("seccompProfile", {})).get("type")
        if seccomp not in ("RuntimeDefault", "Localhost"):
            problems.append(f"{where}: seccompProfile {seccomp}")
        if any(port.get("hostPort") for port in c.get("ports", [])):
            problems.append(f"{where}: hostPort")
        if ctx.get("procMount", "Default") != "Default":
            problems.append(f"{where}: procMount")
    return problems


def test_pods_meet_the_restricted_standard(case: tuple[str, DesiredState, SDXLPool, list]) -> None:
    _, state, _, _ = case
    for dep in state.of_kind("Deployment"):
        spec = pod_spec(dep)
        assert restricted_violations(spec) == [], dep["metadata"]["name"]
        for c in [*spec.get("initContainers", []), *spec["containers"]]:
            assert c["securityContext"]["readOnlyRootFilesystem"] is True
            assert c["securityContext"]["runAsUser"] == 10001


def test_restricted_check_catches_violations() -> None:
    pod = {
        "hostNetwork": True,
        "volumes": [{"name": "h", "hostPath": {"path": "/"}}],
        "containers": [{"name": "c", "securityContext": {"privileged": True, "capabilities": {"add": ["SYS_ADMIN"]}}}],
    }
    problems = restricted_violations(pod)
    for expected in ("hostNetwork", "volume h", "privileged", "allowPrivilegeEscalation", "capabilities added",
                     "runAsNonRoot", "seccompProfile"):
        assert any(expected in p for p in problems), (expected, problems)


# --- properties across cases ----------------------------------------------------------------------


def test_deterministic_and_independent_copies() -> None:
    pool = load_pool(pool_data(gpus=[{"model": "A100"}, {"model": "RTX-3090"}]))
    first, second = desired_state(pool, A100_NODES), desired_state(pool, list(reversed(A100_NODES)))
    assert first == second
    first.children[0]["metadata"]["labels"]["x"] = "y"
    assert "x" not in desired_state(pool, A100_NODES).children[0]["metadata"]["labels"]
    envs = [id(c["env"]) for dep in first.of_kind("Deployment") for c in pod_spec(dep)["containers"]]
    assert len(set(envs)) == len(envs)


def test_node_appearing_changes_affinity() -> None:
    pool = load_pool(pool_data(gpus=[{"model": "RTX-3090"}]))
    before = desired_state(pool, [gfd("a", "NVIDIA-A100-SXM4-80GB")])
    after = desired_state(pool, [gfd("a", "NVIDIA-A100-SXM4-80GB"), gfd("b", "NVIDIA-GeForce-RTX-3090")])
    assert before.placements["rtx-3090"].reason == "NoMatchingNodes"
    assert after.placements["rtx-3090"].reason == "Matched" and after.placements["rtx-3090"].matched_nodes == ("b",)
    assert terms(worker_of(after, "rtx-3090"))[0]["matchExpressions"][0]["values"] == ["NVIDIA-GeForce-RTX-3090"]


def test_tolerates_odd_node_objects() -> None:
    pool = load_pool(pool_data())
    odd = [{}, {"metadata": None}, {"metadata": {"name": "x", "labels": None}}, gfd("ok", "A100")]
    assert desired_state(pool, odd).placements["a100"].matched_nodes == ("ok",)


def test_many_nodes_message_is_short() -> None:
    pool = load_pool(pool_data())
    nodes = [gfd(f"n{i:02}", "NVIDIA-A100-SXM4-80GB") for i in range(12)]
    message = desired_state(pool, nodes).placements["a100"].message
    assert message.endswith("n00, n01, n02, n03, n04 and 7 more")


def test_pool_without_a_name_is_a_spec_error() -> None:
    pool = load_pool({"spec": pool_data()["spec"]})
    with pytest.raises(PoolSpecError, match="metadata.name"):
        desired_state(pool, [])


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("A100", "NVIDIA-A100"),
        ("A100-SXM4-80GB", "NVIDIA-A100-SXM4-80GB"),
        ("RTX 3090 Ti", "NVIDIA-RTX-3090-Ti"),
        ("NVIDIA-RTX-6000-Ada-Generation", "NVIDIA-RTX-6000-Ada"),
        ("H100 NVL", "NVIDIA-H100-NVL"),
        ("A100-40GB-MIG-1g.5gb", "NVIDIA-A100-40GB-MIG-1g.5gb"),
        ("A6000", "NVIDIA-RTX-A6000"),
    ],
)
def test_canonical_product_label(model: str, expected: str) -> None:
    gpu = parse_gpu_name(model)
    value = canonical_product_label(gpu)
    assert value == expected and is_label_value(value)
    assert gpu.matches(parse_gpu_name(value))


@pytest.mark.parametrize(
    ("pool", "suffix", "expected"),
    [
        ("demo", "a100", "demo-a100"),
        ("demo", "workers", "demo-workers"),
        ("demo", "a100-40gb-mig-1g.5gb", r"demo-a100-40gb-mig-1g-5gb-[0-9a-f]{8}"),
        ("demo", "a100-40gb-mig-1g.10gb+me", r"demo-a100-40gb-mig-1g-10gb-me-[0-9a-f]{8}"),
        ("my.pool", "gateway", r"my-pool-gateway-[0-9a-f]{8}"),
        ("1pool", "gateway", r"x-1pool-gateway-[0-9a-f]{8}"),
        ("p" * 70, "a100", r"p{54}-[0-9a-f]{8}"),
        ("p" * 58, "gateway", r"p{54}-[0-9a-f]{8}"),
    ],
)
def test_child_name(pool: str, suffix: str, expected: str) -> None:
    name = child_name(pool, suffix)
    assert re.fullmatch(expected, name) and len(name) <= 63
    assert child_name(pool, suffix) == name


def test_child_names_stay_distinct() -> None:
    long = "p" * 70
    names = {child_name(long, s) for s in ("a100", "a100-80gb", "workers", "gateway")}
    names |= {child_name(p, "workers") for p in ("a.b", "a-b", "a--b")}
    assert len(names) == 7


def test_label_value() -> None:
    assert label_value("demo") == "demo"
    assert label_value("a100-40gb-mig-1g.10gb+me") == "a100-40gb-mig-1g.10gb_me"
    long = label_value("x" * 100)
    assert len(long) <= 63 and is_label_value(long) and long != label_value("x" * 101)


@pytest.mark.parametrize("module", ["sdxlpool.operator.desired", "sdxlpool.operator.crd"])
def test_pure_layers_import_no_client(module: str) -> None:
    """The pure layers load without kopf, the Kubernetes client, an HTTP stack or torch."""
    import json
    import subprocess
    import sys

    code = f"import json, sys; import {module}; print(json.dumps(sorted(sys.modules)))"
    loaded = json.loads(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout)
    heavy = {"kopf", "kubernetes", "aiohttp", "httpx", "torch", "diffusers", "fastapi"}
    assert not {name for name in loaded if name.split(".")[0] in heavy}
