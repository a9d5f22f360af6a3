"""charts/sdxlpool, rendered by a real helm (v4, fetched by scripts/fetch-helm.sh): lint, strict
Kubernetes 1.35 validation of every object (Prometheus Operator objects against the structural
schemas of prometheus_operator.py), the restricted Pod Security Standard, least-privilege RBAC
covering every kind of child the operator reconciles, the operator's PodDisruptionBudget, secrets
only by reference (NOTES included), CRDs equal to the top-level crds/, a README listing every
value, and bad values refused by values.schema.json. Monitoring: test_monitoring.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from sdxlpool.api import labels as lbl
from tests.chart.conftest import CHART, HERE, NAMESPACE, RELEASE, ROOT, VALUES_FILES, run_helm, template
from tests.chart.prometheus_operator import validate_custom_resource

CUSTOM_GROUPS = ("sdxlpool.dev/", "kopf.dev/", "monitoring.coreos.com/")  # not in Kubernetes' own schemas


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
        elif doc["apiVersion"] == "monitoring.coreos.com/v1":
            validate_custom_resource(doc)  # structural: tests/chart/prometheus_operator.py
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


def _plural(kind: str) -> str:
    lower = kind.lower()
    return lower[:-1] + "ies" if lower.endswith("y") else lower + "s"


def test_rbac_covers_what_the_operator_does(helm: Path) -> None:
    from sdxlpool.operator.reconcile import CHILD_KINDS

    role = next(doc for doc in template(helm) if doc["kind"] == "ClusterRole")
    granted = {(group, resource, verb) for rule in role["rules"] for group in rule["apiGroups"]
               for resource in rule["resources"] for verb in rule["verbs"]}
    needed = {("sdxlpool.dev", "sdxlpools", verb) for verb in ("get", "list", "watch", "patch")}
    needed |= {("sdxlpool.dev", "sdxlpools/status", "patch"), ("", "events", "create")}
    needed |= {(group, "events", verb) for group in ("", "events.k8s.io") for verb in ("create", "patch")}
    # The autoscaler: replicas through the scale subresource; the gateway pods it reads demand from.
    needed |= {("apps", "deployments/scale", verb) for verb in ("get", "patch", "update")}
    needed |= {("", "nodes", verb) for verb in ("list", "watch")}
    needed |= {("", "pods", verb) for verb in ("get", "list", "watch")}  # granted on to the gateway's Role
    needed |= {("kopf.dev", "clusterkopfpeerings", verb) for verb in ("get", "list", "watch", "patch")}
    needed |= {("apiextensions.k8s.io", "customresourcedefinitions", verb) for verb in ("list", "watch")}
    # Every kind of child the operator reconciles (reconcile.CHILD_KINDS): watched, created, re-read,
    # repaired, pruned.
    children = {(api_version.rpartition("/")[0], _plural(kind)) for api_version, kind in CHILD_KINDS}
    assert {("networking.k8s.io", "networkpolicies"), ("policy", "poddisruptionbudgets")} <= children
    for group, resource in children:
        needed |= {(group, resource, verb) for verb in ("get", "list", "watch", "create", "patch", "delete")}
    assert needed <= granted, sorted(needed - granted)
    assert not {g for g in granted if g[1] in {"secrets", "configmaps", "leases"}}, "more than the operator uses"
    assert {resource for _, resource, _ in granted} == {resource for _, resource, _ in needed}, "an unused grant"


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
    assert {"name": "SDXLPOOL_OPERATOR_AUTOSCALE_SECONDS", "value": "5"} in container["env"]
    assert pod["serviceAccountName"] == "sdxl-operator" and pod["imagePullSecrets"] == [{"name": "regcred"}]
    peerings = sorted((doc["kind"], doc["metadata"]["namespace"]) for doc in documents
                      if doc["apiVersion"] == "kopf.dev/v1")
    assert peerings == [("KopfPeering", "sdxl"), ("KopfPeering", "sdxl-staging")]
    role = next(doc for doc in documents if doc["kind"] == "ClusterRole")
    peering_rules = [rule["resources"] for rule in role["rules"] if "kopf.dev" in rule["apiGroups"]]
    assert peering_rules == [["kopfpeerings"]]


def test_operator_disruption_budget(helm: Path) -> None:
    (budget,) = [doc for doc in template(helm) if doc["kind"] == "PodDisruptionBudget"]
    deployment = next(doc for doc in template(helm) if doc["kind"] == "Deployment")
    assert budget["spec"]["minAvailable"] == 1 and "maxUnavailable" not in budget["spec"]
    assert budget["spec"]["selector"] == deployment["spec"]["selector"]
    assert budget["metadata"]["namespace"] == NAMESPACE
    # One replica: a minAvailable 1 budget would block every node drain, so there is none.
    for args in (("--set", "replicas=1", "--set", "peering.standalone=true"),
                 ("--set", "podDisruptionBudget.enabled=false")):
        assert not any(doc["kind"] == "PodDisruptionBudget" for doc in template(helm, *args)), args


# -- secrets: by reference only --------------------------------------------------------------------

def test_example_pool_names_its_secrets(helm: Path) -> None:
    from sdxlpool.api.spec import load_pool
    from sdxlpool.operator.desired import desired_state

    documents = template(helm, "--values", HERE / "values-example-pool.yaml")
    (pool,) = [doc for doc in documents if doc["kind"] == "SDXLPool"]
    assert pool["spec"]["model"]["huggingFace"]["tokenSecret"] == {"name": "hf-token", "key": "token"}
    assert pool["spec"]["gateway"]["apiKeysSecret"] == {"name": "gateway-api-keys", "key": "keys.yaml"}
    # ... and what the operator makes of them: a secretKeyRef and a Secret volume, never a value.
    state = desired_state(load_pool(pool))
    for dep in state.of_kind("Deployment"):
        pod = dep["spec"]["template"]["spec"]
        for container in pod.get("initContainers", []) + pod["containers"]:
            for env in container.get("env", []):
                if "fieldRef" in env.get("valueFrom", {}):  # the downward API (the gateway's POD_IP)
                    continue
                assert "value" in env or env["valueFrom"]["secretKeyRef"]["name"] == "hf-token", env
                assert not ("TOKEN" in env["name"] and "value" in env), env
    gateway = next(d for d in state.of_kind("Deployment") if d["metadata"]["labels"][lbl.COMPONENT]
                   == "gateway")
    volumes = gateway["spec"]["template"]["spec"]["volumes"]
    assert {"secretName": "gateway-api-keys", "items": [{"key": "keys.yaml", "path": "keys.yaml"}],
            "defaultMode": 0o440} in [v.get("secret") for v in volumes]


def test_default_example_pool_needs_no_secret(helm: Path) -> None:
    (pool,) = [doc for doc in template(helm, "--set", "examplePool.enabled=true") if doc["kind"] == "SDXLPool"]
    assert "tokenSecret" not in pool["spec"]["model"]["huggingFace"]
    assert "apiKeysSecret" not in pool["spec"]["gateway"]


def test_chart_renders_no_secret(rendered: list[dict[str, Any]]) -> None:
    assert not any(doc["kind"] == "Secret" for doc in rendered)
    for _, spec in pod_specs(rendered):
        for container in spec.get("initContainers", []) + spec["containers"]:
            assert not any(word in env["name"] for env in container.get("env", []) for word in ("TOKEN", "KEY")), \
                container["name"]


def notes(helm: Path, *args: str | Path) -> str:
    """NOTES.txt as `helm install` prints it (a client-side dry run: no cluster)."""
    done = run_helm(helm, "install", RELEASE, CHART, "--namespace", NAMESPACE, "--dry-run=client", *args)
    assert done.returncode == 0, done.stderr
    return done.stdout[done.stdout.index("NOTES:"):]


def test_notes_name_secrets_and_never_hold_them(helm: Path) -> None:
    text = notes(helm, "--values", HERE / "values-example-pool.yaml")
    assert 'Secret "hf-token" (key "token")' in text and 'Secret "gateway-api-keys" (key "keys.yaml")' in text
    assert "kubectl create secret generic hf-token" in text  # how to make one, with placeholders
    assert "hf_" not in text and "sdxl-" not in text.replace("sdxl-system", "").replace("sdxl-sdxlpool", "")
    open_gateway = notes(helm, "--set", "examplePool.enabled=true")
    assert "without API keys" in open_gateway and 'Secret "' not in open_gateway


def test_notes_list_monitoring(helm: Path) -> None:
    text = notes(helm, "--values", HERE / "values-monitoring.yaml")
    assert "PodMonitor sdxl-sdxlpool-pools, PrometheusRule sdxl-sdxlpool-pools" in text
    assert "release=kube-prometheus-stack" in text
    assert "4. Monitoring" not in notes(helm)


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
    (("--set", "podDisruptionBudget.minAvailable=2"), "minAvailable"),
    # secrets: only an existing Secret's name and key, never the secret itself
    (("--set", "examplePool.huggingFaceToken=hf_abcdef"), "huggingFaceToken"),
    (("--set", "examplePool.huggingFaceToken.token=hf_abcdef"), "token"),
    (("--set", "examplePool.apiKeys.keys[0]=sdxl-abc"), "keys"),
    (("--set", "examplePool.apiKeys.existingSecret=Not_A_Secret"), "existingSecret"),
    (("--set", "examplePool.apiKeys.key=../keys"), "key"),
    (("--set", "hfToken=hf_abcdef"), "hfToken"),
    (("--set", "examplePool.enabled=true", "--set", "examplePool.huggingFaceToken.existingSecret=hf",
      "--set", "examplePool.spec.model.huggingFace=null",
      "--set", "examplePool.spec.model.volume.claimName=w"), "needs examplePool.spec.model.huggingFace"),
    # monitoring
    (("--set", "monitoring.podMonitor.enabled=true", "--set", "monitoring.serviceMonitor.enabled=true"),
     "choose one"),
    (("--set", "monitoring.podMonitor.interval=15"), "interval"),
    (("--set", "monitoring.serviceMonitor.scrapeTimeout=ten"), "scrapeTimeout"),
    (("--set", "monitoring.prometheusRule.degradedFor=soon"), "degradedFor"),
    (("--set", "monitoring.prometheusRule.rejectedRatio=2"), "rejectedRatio"),
    (("--set", "monitoring.prometheusRule.failoverRatio=0"), "failoverRatio"),
    (("--set", "monitoring.prometheusRule.scrapeAgeSeconds=-1"), "scrapeAgeSeconds"),
    (("--set", "monitoring.prometheusRule.severity=page"), "severity"),
    (("--set", "monitoring.dashboard.namespace=Bad_NS"), "namespace"),
    (("--set", "monitoring.labels.release=not valid"), "labels"),
    (("--set", "monitoring.namespaces[0]=UPPER"), "namespaces"),
    (("--set", "monitoring.dashboard.enabled=1"), "dashboard/enabled"),
], ids=lambda value: value if isinstance(value, str) else "-".join(value))
def test_bad_values_are_refused(helm: Path, args: tuple[str, ...], names: str) -> None:
    done = run_helm(helm, "template", RELEASE, CHART, "--namespace", NAMESPACE, *args)
    assert done.returncode != 0, done.stdout
    assert names in done.stderr, done.stderr


# -- README ----------------------------------------------------------------------------------------

# Maps whose keys are free-form (resource names, an SDXLPool spec, label names): documented as one row.
FREE_FORM = {"resources", "examplePool.spec", "monitoring.dashboard.labels"}


def value_paths(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Every key path of values.yaml down to its leaves (or a free-form map), with its default."""
    paths: dict[str, Any] = {}
    for key, value in values.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value and path not in FREE_FORM:
            paths |= value_paths(value, f"{path}.")
        else:
            paths[path] = value
    return paths


def test_readme_documents_every_value() -> None:
    import json
    import re

    defaults = value_paths(yaml.safe_load((CHART / "values.yaml").read_text()))
    rows = re.findall(r"^\| `([^`]+)` \| (.+?) \| (.+?) \|$", (CHART / "README.md").read_text(), re.MULTILINE)
    documented = {path: default for path, default, _ in rows}
    assert len(rows) == len(documented), "a key documented twice"
    assert set(documented) == set(defaults), (sorted(set(defaults) - set(documented)),
                                              sorted(set(documented) - set(defaults)))
    for path, value in defaults.items():
        if path not in FREE_FORM - {"monitoring.dashboard.labels"}:
            assert documented[path] == f"`{json.dumps(value)}`", f"{path}: README says {documented[path]}"


def test_every_value_is_in_the_schema() -> None:
    import json

    schema = json.loads((CHART / "values.schema.json").read_text())

    def lookup(node: dict[str, Any], parts: list[str]) -> dict[str, Any]:
        for part in parts:
            if "$ref" in node:
                node = schema["definitions"][node["$ref"].rsplit("/", 1)[-1]]
            assert part in node.get("properties", {}), part
            node = node["properties"][part]
        return node

    for path in value_paths(yaml.safe_load((CHART / "values.yaml").read_text())):
        lookup(schema, path.split("."))
