"""scripts/fetch-apiextensions.sh without Debian: exit 3 with a one-line reason, recorded where the
apiserver fixture finds it, so the tests skip saying why (never silently). No network needed: the
mirror is a closed port on 127.0.0.1. The real build runs in .ci/run (and took ~4 minutes cold)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from .conftest import ROOT, missing_reason

SCRIPT = ROOT / "scripts" / "fetch-apiextensions.sh"


@pytest.mark.skipif(shutil.which("apt-get") is None, reason="apt-get is missing (not a Debian machine)")
def test_no_debian_exits_3_with_the_reason_the_tests_skip_with(tmp_path: Path) -> None:
    env = {**os.environ, "SDXLPOOL_CACHE_DIR": str(tmp_path / "cache"), "SDXLPOOL_TOOLS_DIR": str(tmp_path / "tools"),
           "SDXLPOOL_DEBIAN_MIRROR": "http://127.0.0.1:9/debian"}  # port 9: nothing answers
    done = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 3, done.stdout + done.stderr
    (line,) = done.stderr.splitlines()
    assert line.startswith("fetch-apiextensions: cannot reach Debian unstable at http://127.0.0.1:9/debian ("), line
    assert not (tmp_path / "tools" / "bin" / "apiextensions-apiserver").exists()
    reason = missing_reason(tmp_path / "tools")
    assert reason is not None and "bash scripts/fetch-apiextensions.sh" in reason
    assert line.removeprefix("fetch-apiextensions: ") in reason, reason
