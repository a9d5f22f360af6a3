"""write_report (sdxlpool.testing.pool): every results JSON names the commit it measured and whether
the checkout's tracked files matched it. Real git repositories in a temporary folder."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from sdxlpool.testing.pool import write_report


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A git repository with one commit holding a script, tracked.txt and .gitignore."""
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q")
    (repo / "bench.py").write_text("# a benchmark\n")
    (repo / "tracked.txt").write_text("one\n")
    git(repo, "add", "bench.py", "tracked.txt")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@example.invalid", "commit", "-q", "-m", "first")
    return repo


def report_from(script: Path, out: Path, monkeypatch: pytest.MonkeyPatch, **results: object) -> dict:
    """write_report as `python SCRIPT` would call it, run from somewhere else."""
    monkeypatch.setattr(sys, "argv", [str(script), "--out", str(out)])
    monkeypatch.chdir(out.parent)
    write_report(out, **results)
    return json.loads(out.read_text())


def test_clean_checkout_records_the_full_head(repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (repo / "results.json").write_text("{}\n")  # untracked files (results being written) keep it clean
    report = report_from(repo / "bench.py", tmp_path / "out.json", monkeypatch, p50=1.5)
    assert report["commit"] == git(repo, "rev-parse", "HEAD")
    assert len(report["commit"]) == 40
    assert report["clean"] is True
    assert report["p50"] == 1.5
    assert report["command"].startswith("python ") and report["date"] and report["machine"]


def test_a_changed_tracked_file_makes_it_not_clean(repo: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    (repo / "tracked.txt").write_text("two\n")
    report = report_from(repo / "bench.py", tmp_path / "out.json", monkeypatch)
    assert report["commit"] == git(repo, "rev-parse", "HEAD")
    assert report["clean"] is False


def test_a_staged_change_makes_it_not_clean(repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (repo / "new.py").write_text("x = 1\n")
    git(repo, "add", "new.py")
    assert report_from(repo / "bench.py", tmp_path / "out.json", monkeypatch)["clean"] is False


def test_outside_a_repository_both_are_null(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    script = tmp_path / "loose" / "bench.py"
    script.parent.mkdir()
    script.write_text("# not in git\n")
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))  # git must not find a repository above
    report = report_from(script, tmp_path / "loose" / "out.json", monkeypatch, runs=[1])
    assert report["commit"] is None and report["clean"] is None
    assert report["runs"] == [1]


def test_a_script_cannot_overwrite_the_provenance(repo: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    report = report_from(repo / "bench.py", tmp_path / "out.json", monkeypatch, commit="made up", clean=True)
    assert report["commit"] == git(repo, "rev-parse", "HEAD")


def test_no_out_writes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    write_report(None, p50=1.0)
    assert list(tmp_path.iterdir()) == []
