"""Proof that a check can fail: break the product on purpose and watch the named tests fail.

Each file in reliability/mutations/ is one mutation: two header lines, then a `git diff` of a
change to the product code that breaks one claimed behaviour:

    claim: failover keeps the seed of the first attempt
    test: tests/gateway/test_forward_seam.py::test_a_retry_asks_for_the_same_image
    diff --git a/sdxlpool/gateway/forward.py b/sdxlpool/gateway/forward.py
    ...

`run` copies the working tree to a scratch folder, applies the patch there (`git apply`), runs the
named tests against the copy and expects them to FAIL. A mutation the tests survive is a check that
cannot catch its claim; so is one whose tests cannot even run (a patch that no longer applies, a test
that no longer exists). Nothing here changes the working tree. The command line is
reliability/mutations.py.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Mutation", "MUTATIONS_DIR", "all_mutations", "applies", "load", "markdown", "run"]

MUTATIONS_DIR = Path("reliability") / "mutations"
"""Where a repository keeps its mutation files, relative to its root."""
_HEADERS = ("claim", "test")


@dataclass(frozen=True)
class Mutation:
    name: str
    claim: str
    tests: tuple[str, ...]
    patch: Path


def load(path: Path) -> Mutation:
    """A mutation file's headers; ValueError naming the file when one is missing or the diff is."""
    headers: dict[str, str] = {}
    text = path.read_text()
    for line in text.splitlines():
        if line.startswith("diff --git "):
            break
        key, _, value = line.partition(":")
        if key.strip() in _HEADERS and value.strip():
            headers[key.strip()] = value.strip()
    missing = [key for key in _HEADERS if key not in headers]
    if missing:
        raise ValueError(f"{path.name}: no {' or '.join(missing)} line before the diff")
    if "\ndiff --git " not in "\n" + text:
        raise ValueError(f"{path.name}: no `git diff` output after the headers")
    return Mutation(path.stem, headers["claim"], tuple(headers["test"].split()), path)


def all_mutations(root: Path) -> list[Mutation]:
    return [load(path) for path in sorted((root / MUTATIONS_DIR).glob("*.patch"))]


def _copy_tree(root: Path, dest: Path) -> None:
    """The working tree as git sees it (tracked and untracked-not-ignored files), plus the fetched tools."""
    listed = subprocess.run(["git", "-C", str(root), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = root / name
        if source.is_file():
            target = dest / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    tools = root / ".tools"
    if tools.exists():
        (dest / ".tools").symlink_to(tools.resolve())


def applies(mutation: Mutation, tree: Path) -> str | None:
    """None when the patch applies cleanly to `tree`, else git's reason."""
    done = subprocess.run(["git", "apply", "--check", str(mutation.patch)], cwd=tree, capture_output=True, text=True)
    return None if done.returncode == 0 else done.stderr.strip() or "does not apply"


def _pytest(tree: Path, tests: tuple[str, ...], timeout: float) -> int:
    env = {**os.environ, "PYTHONPATH": str(tree)}  # the copy's sdxlpool, not the installed one
    command = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *tests]
    try:
        return subprocess.run(command, cwd=tree, env=env, capture_output=True, timeout=timeout).returncode
    except subprocess.TimeoutExpired:
        return -1


def run(mutation: Mutation, root: Path, *, baseline: bool, timeout: float) -> str:
    """'caught', 'SURVIVED', or 'ERROR: why' (a mutation that cannot be run proves nothing)."""
    with tempfile.TemporaryDirectory(prefix=f"mutation-{mutation.name}-") as scratch:
        tree = Path(scratch)
        _copy_tree(root, tree)
        if baseline and (code := _pytest(tree, mutation.tests, timeout)) != 0:
            return f"ERROR: the tests fail without the mutation (pytest exit {code})"
        reason = applies(mutation, tree)
        if reason is not None:
            return f"ERROR: patch: {reason}"
        subprocess.run(["git", "apply", str(mutation.patch)], cwd=tree, check=True, capture_output=True)
        code = _pytest(tree, mutation.tests, timeout)
    if code == 1:
        return "caught"
    if code == 0:
        return "SURVIVED"
    return f"ERROR: pytest exit {code} (timeout)" if code == -1 else f"ERROR: pytest exit {code} (not a test failure)"


def markdown(rows: list[tuple[Mutation, str]]) -> str:
    lines = ["| mutation | claim it breaks | test that must fail | result |", "|---|---|---|---|"]
    for mutation, result in rows:
        tests = "<br>".join(f"`{test}`" for test in mutation.tests)
        lines.append(f"| `{mutation.name}` | {mutation.claim} | {tests} | {result} |")
    return "\n".join(lines)
