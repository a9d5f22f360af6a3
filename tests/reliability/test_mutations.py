"""The mutation records stay runnable: every patch in reliability/mutations/ parses, applies to the
tree as it is, and names tests that exist; and the runner tells a caught mutation from a survivor.

Running every mutation takes minutes (`python reliability/mutations.py`); CI runs the cheap one
end to end and checks the rest apply, so a refactor that moves the mutated code is noticed here.
"""

from __future__ import annotations

import difflib
import subprocess
import sys
from pathlib import Path

import pytest

from sdxlpool.testing.mutations import all_mutations, applies, load, run
from tests.reliability.conftest import COLLECTED

ROOT = Path(__file__).resolve().parents[2]
MUTATIONS = all_mutations(ROOT)


def test_there_are_mutations_for_the_claims() -> None:
    assert len(MUTATIONS) >= 2


@pytest.fixture(scope="module")
def collected(request: pytest.FixtureRequest) -> frozenset[str]:
    """Node ids of every test in the files the mutations name: one collection for all of them (a
    pytest process per mutation cost CI minutes, each importing torch again). When this session
    collected every one of those files (the whole suite, as CI runs it) its own collection is that
    list; else one `pytest --collect-only` of the files."""
    files = sorted({test.split("::")[0] for m in MUTATIONS for test in m.tests})
    session = request.session.stash.get(COLLECTED, frozenset())
    whole_files = all("::" not in arg for arg in request.config.args)  # no file collected only in part
    if whole_files and {node.split("::")[0] for node in session}.issuperset(files):
        return frozenset(node for node in session if node.split("::")[0] in files)
    run_ = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *files],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run_.returncode == 0, f"the mutations' test files do not collect:\n{run_.stdout[-3000:]}"
    return frozenset(line.strip() for line in run_.stdout.splitlines() if "::" in line)


def _is_collected(test: str, collected: frozenset[str]) -> bool:
    """`test` names a file, a test or a parametrised test's every case among `collected` node ids."""
    if "::" not in test:
        return any(node.startswith(test + "::") for node in collected)
    return test in collected or any(node.startswith(test + "[") or node.startswith(test + "::") for node in collected)


@pytest.mark.parametrize("mutation", MUTATIONS, ids=[m.name for m in MUTATIONS])
def test_each_mutation_applies_and_names_existing_tests(mutation, collected: frozenset[str]) -> None:
    assert applies(mutation, ROOT) is None, f"{mutation.patch.name} no longer applies: regenerate it"
    missing = [test for test in mutation.tests if not _is_collected(test, collected)]
    assert not missing, f"{mutation.name}: names tests that do not exist: {missing}"


def test_a_test_name_is_matched_exactly_not_by_its_prefix() -> None:
    nodes = frozenset({"tests/a.py::test_one[x]", "tests/a.py::TestK::test_two", "tests/b.py::test_three"})
    assert _is_collected("tests/a.py::test_one", nodes) and _is_collected("tests/a.py::TestK", nodes)
    assert _is_collected("tests/b.py", nodes) and _is_collected("tests/a.py::test_one[x]", nodes)
    assert not _is_collected("tests/a.py::test_on", nodes) and not _is_collected("tests/c.py", nodes)
    assert not _is_collected("tests/b.py::test_three_more", nodes)


def test_a_caught_mutation_is_reported_caught() -> None:
    cheap = next(m for m in MUTATIONS if m.name == "contracts-label-spelled-in-discovery")
    assert run(cheap, ROOT, baseline=False, timeout=300) == "caught"


def test_a_mutation_the_tests_survive_is_reported(tmp_path: Path) -> None:
    """A change no test can see (a comment) must come back SURVIVED, or the runner proves nothing."""
    name = "sdxlpool/api/ports.py"
    before = (ROOT / name).read_text().splitlines(keepends=True)
    after = [line.replace("WORKER_PORT = 7860\n", "WORKER_PORT = 7860  # harmless\n") for line in before]
    assert after != before, "could not make the harmless change"
    diff = f"diff --git a/{name} b/{name}\n" + "".join(difflib.unified_diff(before, after, f"a/{name}", f"b/{name}"))
    patch = tmp_path / "harmless.patch"
    patch.write_text("claim: nothing\ntest: tests/test_contract_homes.py::test_no_contract_name_is_spelled_outside_its_home\n"
                     + diff)
    assert run(load(patch), ROOT, baseline=False, timeout=300) == "SURVIVED"


def test_a_file_without_its_headers_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "bad.patch"
    bad.write_text("claim: something\ndiff --git a/x b/x\n")
    with pytest.raises(ValueError, match="bad.patch: no test"):
        load(bad)
