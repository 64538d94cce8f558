"""The test suite's own rules: `make test-fast` skips the tests marked slow and `make test` runs all; the tests that
execute notebooks or drive a browser carry the slow mark; helpers are imported from the ``tests.helpers`` package,
never as bare modules found through the path."""

from __future__ import annotations

import ast
import shutil
import subprocess
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
SLOW_CALLS = ("execute_notebook", "sync_playwright")      # a kernel or a browser: end to end, marked slow


def _make_dry_run(target: str) -> str:
    return subprocess.run(["make", "-n", target], cwd=ROOT, capture_output=True, text=True, check=True).stdout


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_test_fast_skips_the_slow_tests_and_test_runs_them_all():
    fast = [line for line in _make_dry_run("test-fast").splitlines() if "pytest" in line]
    assert len(fast) == 1 and '-m "not slow"' in fast[0] and fast[0].rstrip().endswith(" tests")
    full = [line for line in _make_dry_run("unit").splitlines() if "pytest" in line]
    assert len(full) == 1
    words = full[0].split()
    assert "-m" not in words[words.index("pytest") + 1:]                     # no marker selection: everything


def _slow(node: ast.FunctionDef, module_marked: bool) -> bool:
    return module_marked or any("slow" in ast.unparse(d) for d in node.decorator_list)


def test_tests_that_run_a_notebook_or_a_browser_are_marked_slow():
    unmarked = []
    for path in sorted(TESTS.glob("test_*.py")):
        source = path.read_text()
        tree = ast.parse(source)
        module_marked = any(isinstance(n, ast.Assign) and any(getattr(t, "id", "") == "pytestmark" for t in n.targets)
                            and "slow" in ast.unparse(n.value) for n in tree.body)
        for node in tree.body:
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_"):
                body = ast.get_source_segment(source, node) or ""
                if any(f"{call}(" in body for call in SLOW_CALLS) and not _slow(node, module_marked):
                    unmarked.append(f"{path.name}::{node.name}")
    assert not unmarked, f"mark these @pytest.mark.slow (they run a kernel or a browser): {unmarked}"


def test_helpers_are_imported_from_the_package():
    bare = {p.stem for p in TESTS.glob("*.py")} | {p.stem for p in (TESTS / "helpers").glob("*.py")}
    found = []
    for path in sorted(TESTS.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module] if isinstance(node, ast.ImportFrom) and node.module and not node.level else [])
            found += [f"{path.relative_to(ROOT)}: {n}" for n in names if n.split(".")[0] in bare]
    assert not found, f"import these through tests.helpers: {found}"
