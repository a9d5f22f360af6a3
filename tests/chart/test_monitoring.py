"""The chart's monitoring: PodMonitor/ServiceMonitor against the pods and Services the operator
really creates, the PrometheusRule through `promtool check rules` and `promtool test rules`
(tests/chart/alerts.promtool.yaml), the Grafana dashboard's queries through promtool, and every
metric name in rules and dashboard exported by the gateway's and workers' registries."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from sdxlpool.api import labels as lbl
from sdxlpool.api import metric_names as mn
from tests.chart.conftest import CHART, HERE, ROOT, template

MONITORING = HERE / "values-monitoring.yaml"
SERVICE_MONITOR = HERE / "values-servicemonitor.yaml"
DASHBOARD = CHART / "dashboards" / "sdxlpool.json"
PROMETHEUS_BUILTINS = {"up"}  # series Prometheus itself writes for every target


def only(documents: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (found,) = [doc for doc in documents if doc["kind"] == kind]
    return found


def operator_children() -> tuple[dict[str, Any], ...]:
    """What the operator creates for examples/pool.yaml (and one more pool's gateway, elsewhere)."""
    from sdxlpool.api.spec import pool_from_yaml
    from sdxlpool.operator.desired import desired_state

    return desired_state(pool_from_yaml((ROOT / "examples" / "pool.yaml").read_text())).children


def selects(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """A Kubernetes LabelSelector (matchLabels and matchExpressions) against a label set."""
    if not selector.get("matchLabels", {}).items() <= labels.items():
        return False
    for expression in selector.get("matchExpressions", []):
        key, operator, values = expression["key"], expression["operator"], expression.get("values", [])
        ok = {"In": labels.get(key) in values, "NotIn": labels.get(key) not in values,
              "Exists": key in labels, "DoesNotExist": key not in labels}[operator]
        if not ok:
            return False
    return True


def meta_label(key: str) -> str:
    """The Prometheus service-discovery meta label of a pod label key."""
    return "__meta_kubernetes_pod_label_" + re.sub(r"[^a-zA-Z0-9_]", "_", key)


# -- scraping --------------------------------------------------------------------------------------

def test_monitors_are_off_by_default(helm: Path) -> None:
    assert not [doc for doc in template(helm) if doc["apiVersion"].startswith("monitoring.coreos.com/")]
    assert not [doc for doc in template(helm) if doc["kind"] == "ConfigMap"]


def test_pod_monitor_scrapes_every_worker_and_gateway_pod(helm: Path) -> None:
    monitor = only(template(helm, "--values", MONITORING), "PodMonitor")
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert monitor["spec"]["namespaceSelector"] == {"any": True}
    pods = {d["metadata"]["name"]: d["spec"]["template"] for d in operator_children() if d["kind"] == "Deployment"}
    assert set(pods) == {"demo-a100", "demo-rtx-3090", "demo-gateway"}
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    assert (endpoint["path"], endpoint["interval"], endpoint["scrapeTimeout"]) == ("/metrics", "30s", "20s")
    for name, pod in pods.items():
        assert selects(monitor["spec"]["selector"], pod["metadata"]["labels"]), name
        ports = [port["name"] for container in pod["spec"]["containers"] for port in container["ports"]]
        assert endpoint["port"] in ports, name
        assert pod["metadata"]["annotations"][lbl.SCRAPE_PATH] == endpoint["path"]
    # The operator's own pods and anything unlabelled are left alone.
    operator_pod = only(template(helm), "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert not selects(monitor["spec"]["selector"], operator_pod)
    # The relabelings read labels the operator really sets.

    sources = {r["targetLabel"]: r["sourceLabels"] for r in endpoint["relabelings"]}
    assert sources == {"pool": [meta_label(lbl.POOL)], "component": [meta_label(lbl.COMPONENT)],
                       "gpu": [meta_label(lbl.GPU)]}


def test_service_monitor_scrapes_the_pools_services(helm: Path) -> None:
    documents = template(helm, "--values", SERVICE_MONITOR)
    assert not any(doc["kind"] == "PodMonitor" for doc in documents)
    monitor = only(documents, "ServiceMonitor")
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["sdxl"]}  # monitoring.namespaces wins
    services = {s["metadata"]["name"]: s for s in operator_children() if s["kind"] == "Service"}
    assert set(services) == {"demo-workers", "demo-gateway"}
    (endpoint,) = monitor["spec"]["endpoints"]
    for name, service in services.items():
        assert selects(monitor["spec"]["selector"], service["metadata"]["labels"]), name
        assert endpoint["port"] in [port["name"] for port in service["spec"]["ports"]], name


def test_custom_resource_schemas_refuse_typos(helm: Path) -> None:
    import copy

    import jsonschema

    from tests.chart.prometheus_operator import validate_custom_resource

    monitor = only(template(helm, "--values", MONITORING), "PodMonitor")
    validate_custom_resource(monitor)
    for path, wrong in ((("spec", "podMetricsEndpoints", 0, "scrapeInterval"), "15s"),
                        (("spec", "podMetricsEndpoints", 0, "interval"), "15 seconds"),
                        (("spec", "namespaceSelector", "matchNamespaces"), ["sdxl"])):
        bad = copy.deepcopy(monitor)
        node = bad
        for part in path[:-1]:
            node = node[part]
        node[path[-1]] = wrong
        with pytest.raises(jsonschema.ValidationError):
            validate_custom_resource(bad)
    rule = only(template(helm, "--set", "monitoring.prometheusRule.enabled=true"), "PrometheusRule")
    rule["spec"]["groups"][0]["rules"][0]["record"] = "also:a_record"
    with pytest.raises(jsonschema.ValidationError):
        validate_custom_resource(rule)  # an alert or a record, not both


def test_pool_namespaces_follow_watch_namespaces(helm: Path) -> None:
    monitor = only(template(helm, "--set", "monitoring.podMonitor.enabled=true",
                            "--set", "watchNamespaces={sdxl,sdxl-staging}"), "PodMonitor")
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["sdxl", "sdxl-staging"]}


def test_network_policy_default_admits_the_default_monitoring_namespace() -> None:
    """Pools' NetworkPolicies let the "monitoring" namespace scrape: where kube-prometheus-stack
    conventionally runs, and what NOTES.txt tells the user."""
    (policy,) = [c for c in operator_children() if c["kind"] == "NetworkPolicy"]
    peers = [peer for rule in policy["spec"]["ingress"] for peer in rule["from"]]
    assert {"namespaceSelector": {"matchLabels": {lbl.NAMESPACE_NAME: "monitoring"}}} in peers


# -- alerts ----------------------------------------------------------------------------------------

def rule_groups(helm: Path, *args: str | Path) -> dict[str, Any]:
    rule = only(template(helm, "--set", "monitoring.prometheusRule.enabled=true", *args), "PrometheusRule")
    return rule["spec"]


def promtool_run(promtool: str, *args: str | Path, cwd: Path) -> str:
    done = subprocess.run([promtool, *map(str, args)], capture_output=True, text=True, timeout=120, cwd=cwd)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    return output


@pytest.mark.parametrize("args", [(), ("--values", MONITORING)], ids=["defaults", "values-monitoring"])
def test_rules_pass_promtool_check(helm: Path, promtool: str, tmp_path: Path, args: tuple[str, ...]) -> None:
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rule_groups(helm, *args)))
    output = promtool_run(promtool, "check", "rules", "rules.yaml", cwd=tmp_path)
    assert "SUCCESS: 7 rules found" in output, output


def test_the_alerts_the_issue_asks_for(helm: Path) -> None:
    alerts = {rule["alert"]: rule for group in rule_groups(helm)["groups"] for rule in group["rules"]}
    assert set(alerts) == {"SDXLPoolGPUModelNoReadyWorkers", "SDXLPoolDegraded", "SDXLPoolMetricsTargetDown",
                           "SDXLPoolHighRejectionRate", "SDXLPoolHighFailoverRate", "SDXLPoolStaleWorkerMetrics",
                           "SDXLPoolLatencyTargetMissed"}
    for name, rule in alerts.items():
        assert rule["labels"]["severity"] in {"critical", "warning"}, name
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], name
    tuned = {rule["alert"]: rule for group in rule_groups(helm, "--values", MONITORING)["groups"]
             for rule in group["rules"]}
    assert tuned["SDXLPoolGPUModelNoReadyWorkers"]["for"] == "15m"
    assert "> 0.2" in tuned["SDXLPoolHighRejectionRate"]["expr"]
    assert all(rule["labels"]["team"] == "ml-platform" for rule in tuned.values())


def test_alerts_fire_when_they_should(helm: Path, promtool: str, tmp_path: Path) -> None:
    spec = rule_groups(helm)
    for group in spec["groups"]:
        for rule in group["rules"]:
            rule.pop("annotations")  # templates are checked by `promtool check rules`; cases match labels
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(spec))
    shutil.copy(HERE / "alerts.promtool.yaml", tmp_path / "alerts.yaml")
    promtool_run(promtool, "test", "rules", "alerts.yaml", cwd=tmp_path)


# -- dashboard -------------------------------------------------------------------------------------

def dashboard_queries() -> list[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [(panel["title"], target["expr"]) for panel in dashboard["panels"] for target in panel.get("targets", [])]


def test_dashboard_config_map(helm: Path) -> None:
    config_map = only(template(helm, "--values", MONITORING), "ConfigMap")
    assert config_map["metadata"]["namespace"] == "monitoring"
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert config_map["metadata"]["annotations"] == {"grafana_folder": "SDXL"}
    dashboard = json.loads(config_map["data"]["sdxlpool.json"])
    assert dashboard == json.loads(DASHBOARD.read_text())
    assert len(config_map["data"]["sdxlpool.json"]) < 256 * 1024  # the annotation limit for kubectl apply


def test_dashboard_has_the_panels_the_issue_asks_for() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    titles = {panel["title"] for panel in dashboard["panels"]}
    assert {"Requests by GPU model", "Gateway latency by GPU model", "Queue depth",
            "Busy and ready workers by GPU model", "Failovers by worker"} <= titles
    # Issue 17: demand, replicas and cost per hour.
    assert {"Demand by allowed GPU models", "Ready workers by GPU model", "Cost per hour by GPU model",
            "Gateway p95 and the latency target"} <= titles
    assert dashboard["uid"] == "sdxlpool"
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    assert variables == {"datasource", "namespace", "pool"}
    for title, expr in dashboard_queries():
        assert 'namespace=~"$namespace"' in expr and 'pool=~"$pool"' in expr, title


def test_dashboard_queries_pass_promtool(promtool: str, tmp_path: Path) -> None:
    # Grafana's variables replaced by what they expand to; each query checked as a recording rule.
    rules = [{"record": f"sdxlpool:dashboard_query_{i}", "expr": expr.replace("$__rate_interval", "5m")
              .replace("$namespace", ".*").replace("$pool", ".*")} for i, (_, expr) in enumerate(dashboard_queries())]
    (tmp_path / "dashboard.rules.yaml").write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    promtool_run(promtool, "check", "rules", "dashboard.rules.yaml", cwd=tmp_path)


# -- metric names: only what the code exports ------------------------------------------------------

def exported_series() -> set[str]:
    """Series names the gateway's and a worker's registries expose (counters as _total, histograms
    as _bucket/_sum/_count), whatever their labels."""
    from sdxlpool.gateway.metrics import GatewayMetrics
    from sdxlpool.gateway.pool import BackendPool
    from sdxlpool.worker.jobs import JobQueue
    from sdxlpool.worker.metrics import WorkerMetrics

    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",),
                "summary": ("", "_sum", "_count"), "info": ("_info",)}
    # A gateway with a latency target (--latency-target; only then is it exported)
    registries = [GatewayMetrics(BackendPool(), latency_target=30.0).registry,
                  WorkerMetrics(JobQueue(max_queued=1), ready=lambda: True, info={}).registry]
    return {family.name + suffix for registry in registries for family in registry.collect()
            for suffix in suffixes.get(family.type, ("",))}


def used_metric_names(expr: str) -> set[str]:
    return set(re.findall(r"\b(sdxl_[a-z0-9_]+)\b", expr)) | ({"up"} if re.search(r"\bup\{", expr) else set())


def test_every_metric_in_rules_and_dashboard_is_exported(helm: Path) -> None:
    exported = exported_series()
    assert {f"{mn.GATEWAY_REQUESTS}_total", mn.WORKER_READY, f"{mn.GATEWAY_REQUEST_SECONDS}_bucket"} <= exported
    exprs = [(rule["alert"], rule["expr"]) for group in rule_groups(helm)["groups"] for rule in group["rules"]]
    exprs += dashboard_queries()
    used: set[str] = set()
    for where, expr in exprs:
        names = used_metric_names(expr)
        assert names, where
        missing = names - exported - PROMETHEUS_BUILTINS
        assert not missing, f"{where}: {sorted(missing)} not exported by sdxlpool/gateway/metrics.py or worker/metrics.py"
        used |= names
    # The alerts and panels the issue names rest on these.
    assert {f"{mn.GATEWAY_FAILOVERS}_total", mn.GATEWAY_QUEUE_DEPTH, mn.WORKER_INFLIGHT,
            mn.GATEWAY_SCRAPE_AGE_SECONDS, mn.WORKER_INFO} <= used
    assert {f"{mn.GATEWAY_DEMAND_STEPS}_total", mn.GATEWAY_MODEL_READY_WORKERS, mn.GATEWAY_BACKEND_PRICE_PER_HOUR,
            mn.GATEWAY_LATENCY_TARGET_SECONDS} <= used  # issue 17's panels and alert


def test_the_metric_name_check_catches_a_typo() -> None:
    assert used_metric_names('rate(sdxl_gateway_request_total{pool="a"}[5m])') - exported_series() == {
        "sdxl_gateway_request_total"}
