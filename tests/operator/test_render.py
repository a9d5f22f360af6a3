"""`sdxlpool render`, run for real: the operator's desired state as a YAML stream; bad files -> one line, exit 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = Path(sys.executable).with_name("sdxlpool")
POOL = ROOT / "examples" / "pool.yaml"
NODES = ROOT / "examples" / "nodes.yaml"


def render(*args: str | Path) -> subprocess.CompletedProcess[str]:
    command = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "sdxlpool"]
    return subprocess.run([*command, "render", *map(str, args)], capture_output=True, text=True, timeout=60, cwd=ROOT)


def test_renders_the_example_pool() -> None:
    done = render(POOL, "--nodes", NODES)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    documents = list(yaml.safe_load_all(done.stdout))
    assert [(d["kind"], d["metadata"]["name"]) for d in documents] == [
        ("ServiceAccount", "demo-gateway"),
        ("Role", "demo-gateway"),
        ("RoleBinding", "demo-gateway"),
        ("Service", "demo-workers"),
        ("Service", "demo-gateway"),
        ("NetworkPolicy", "demo-workers"),
        ("PodDisruptionBudget", "demo-a100"),
        ("PodDisruptionBudget", "demo-rtx-3090"),
        ("PodDisruptionBudget", "demo-gateway"),
        ("Deployment", "demo-a100"),
        ("Deployment", "demo-rtx-3090"),
        ("Deployment", "demo-gateway"),
    ]
    assert done.stdout.startswith("---\n") and "&id" not in done.stdout  # a plain stream, no YAML anchors
    assert "# A100: Matched: 2 nodes carry" in done.stdout
    for document in documents:
        assert document["metadata"]["namespace"] == "sdxl"
        kubernetes_validate.validate(document, "1.35", strict=True)
    a100 = documents[9]["spec"]["template"]["spec"]["affinity"]["nodeAffinity"]
    values = a100["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"][0]["matchExpressions"][0]["values"]
    assert values == ["NVIDIA-A100-PCIE-40GB", "NVIDIA-A100-SXM4-80GB"]


def test_equals_desired_state() -> None:
    from sdxlpool.api.spec import pool_from_yaml
    from sdxlpool.operator.desired import desired_state

    nodes = yaml.safe_load(NODES.read_text())["items"]
    expected = desired_state(pool_from_yaml(POOL.read_text()), nodes).children
    assert tuple(yaml.safe_load_all(render(POOL, "--nodes", NODES).stdout)) == expected


def test_without_nodes_every_entry_is_unmatched() -> None:
    done = render(POOL)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count(": NoMatchingNodes: ") == 2


@pytest.mark.parametrize(
    "nodes_text",
    [
        pytest.param(NODES.read_text(), id="NodeList"),
        pytest.param(
            yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": yaml.safe_load(NODES.read_text())["items"]}),
            id="List",
        ),
        pytest.param(yaml.safe_dump(yaml.safe_load(NODES.read_text())["items"]), id="list"),
        pytest.param(yaml.safe_dump_all(yaml.safe_load(NODES.read_text())["items"]), id="stream"),
    ],
)
def test_node_file_shapes(tmp_path: Path, nodes_text: str) -> None:
    nodes = tmp_path / "nodes.yaml"
    nodes.write_text(nodes_text)
    done = render(POOL, "--nodes", nodes)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count(": Matched: ") == 2


BAD_POOL = """apiVersion: sdxlpool.dev/v1alpha1
kind: SDXLPool
metadata: {name: bad}
spec:
  image: w:1
  model: {volume: {claimName: c, basePath: b}}
  gpus: [{model: banana}, {model: A100, replicas: -1}]
"""


@pytest.mark.parametrize(
    ("pool_text", "nodes_text", "expected"),
    [
        pytest.param(BAD_POOL, None, "pool.yaml: spec.gpus[0].model: invalid GPU name 'banana'", id="bad-gpu"),
        pytest.param(BAD_POOL, None, "; spec.gpus[1].replicas: Input should be greater than or equal to 0", id="all-problems"),
        pytest.param("spec: [unclosed", None, "pool.yaml: YAML: ", id="bad-yaml"),
        pytest.param("- a\n- b\n", None, "pool.yaml: pool: expected a mapping, got list", id="not-a-pool"),
        pytest.param(BAD_POOL.replace("banana", "A100-80GB").replace("-1", "1").replace("metadata: {name: bad}", "metadata: {}"),
                     None, "pool.yaml: metadata.name: required field is missing", id="no-name"),
        pytest.param(POOL.read_text(), "items: [unclosed", "nodes.yaml: YAML: ", id="nodes-bad-yaml"),
        pytest.param(POOL.read_text(), "kind: NodeList\nitems: [{kind: Pod, metadata: {name: p}}]\n",
                     "nodes.yaml: items[0]: expected a v1 Node, got Pod", id="nodes-not-nodes"),
        pytest.param(POOL.read_text(), "- {metadata: {labels: {}}}\n", "nodes.yaml: [0]: a Node needs metadata.name",
                     id="nodes-no-name"),
        pytest.param(POOL.read_text(), "- 3\n", "nodes.yaml: [0]: expected a v1 Node, got int", id="nodes-scalar"),
    ],
)
def test_bad_files_exit_2_with_one_line(tmp_path: Path, pool_text: str, nodes_text: str | None, expected: str) -> None:
    pool = tmp_path / "pool.yaml"
    pool.write_text(pool_text)
    args: list[str | Path] = [pool]
    if nodes_text is not None:
        nodes = tmp_path / "nodes.yaml"
        nodes.write_text(nodes_text)
        args += ["--nodes", nodes]
    done = render(*args)
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr.startswith("sdxlpool render: error: ") and done.stderr.count("\n") == 1, done.stderr
    assert expected in done.stderr
    assert "Traceback" not in done.stderr


def test_missing_file_exits_2(tmp_path: Path) -> None:
    done = render(tmp_path / "nope.yaml")
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert "nope.yaml: cannot read: No such file or directory" in done.stderr


def test_help() -> None:
    done = render("--help")
    assert done.returncode == 0 and "NODES.yaml" in done.stdout
