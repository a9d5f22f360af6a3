"""One version string: pyproject's, read from the installed package's metadata everywhere."""

from __future__ import annotations

import re
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import sdxlpool
from sdxlpool.cli import main

ROOT = Path(__file__).resolve().parents[1]


def test_version_comes_from_the_package_metadata() -> None:
    assert sdxlpool.__version__ == version("sdxlpool")
    declared = re.search(r'^version = "([^"]+)"$', (ROOT / "pyproject.toml").read_text(), re.MULTILINE)[1]
    assert sdxlpool.__version__ == declared, "the installed metadata is stale: reinstall (make install)"


def test_cli_and_apps_report_it(capsys) -> None:
    from sdxlpool._reference.http_page import apps

    try:
        main(["--version"])
    except SystemExit as done:
        assert done.code == 0
    assert capsys.readouterr().out.strip() == f"sdxlpool {sdxlpool.__version__}"
    assert {name: app.version for name, app in apps().items()} == {
        "worker": sdxlpool.__version__, "gateway": sdxlpool.__version__}


def test_a_source_tree_without_metadata_still_imports() -> None:
    code = ("import importlib.metadata as m\n"
            "def missing(name): raise m.PackageNotFoundError(name)\n"
            "m.version = missing\n"
            "import sdxlpool; print(sdxlpool.__version__)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert done.stdout.strip() == "0.0.0+unknown"
