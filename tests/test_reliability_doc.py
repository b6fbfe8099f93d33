"""docs/reliability.md cannot drift from the suite: every pytest node id its
tables name is a test function (or method) that exists, found by parsing the
test modules' syntax trees (fast; nothing is imported or collected), and a
named module that is missing fails. The other way round, every test of the
fault matrix and every `test_breakNN_*` of tests/test_reliability.py is named
in the doc, and each of the ten breaks of issue 8 has its row.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DOC = REPO / "docs" / "reliability.md"
#: tests/<path>.py::Name(::Name)? - a parametrized id is named by its function
NODE = re.compile(r"(tests/[\w/]+\.py)((?:::\w+)+)")
#: modules whose every test must have a row (the ones written for the matrix)
FULLY_LISTED = ("tests/test_fault_matrix.py", "tests/test_fault_matrix_store.py")


def table_rows(text: str) -> list[list[str]]:
    """The cells of every Markdown table row whose header has a `test` column
    (header and separator lines left out); only the `test` cell is kept last."""
    rows: list[list[str]] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        head = lines[i].strip()
        if head.startswith("|") and i + 1 < len(lines) and set(lines[i + 1].strip()) <= set("|-: "):
            names = [c.strip().lower() for c in head.strip("|").split("|")]
            i += 2
            while i < len(lines) and lines[i].strip().startswith("|"):
                if "test" in names:
                    rows.append([c.strip() for c in lines[i].strip().strip("|").split("|")])
                i += 1
            continue
        i += 1
    return rows


def defined_tests(path: Path) -> set[str]:
    """`::name` and `::Class::name` of every test function in a module."""
    tree = ast.parse(path.read_text(), str(path))
    found: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith("test"):
            found.add(f"::{node.name}")
        elif isinstance(node, ast.ClassDef) and node.name.startswith("Test"):
            for sub in node.body:
                if isinstance(sub, ast.FunctionDef | ast.AsyncFunctionDef) and sub.name.startswith("test"):
                    found.add(f"::{node.name}::{sub.name}")
    return found


def problems(text: str, root: Path) -> list[str]:
    """What is wrong with the doc's test references (empty: nothing)."""
    out: list[str] = []
    rows = table_rows(text)
    if not rows:
        out.append("no table with a `test` column")
    cache: dict[str, set[str] | None] = {}
    for row in rows:
        ids = NODE.findall(row[-1])
        if not ids:
            out.append(f"row names no test: {row[0]!r}")
        for module, name in ids:
            if module not in cache:
                path = root / module
                cache[module] = defined_tests(path) if path.is_file() else None
            tests = cache[module]
            if tests is None:
                out.append(f"{module} does not exist (row {row[0]!r})")
            elif name not in tests:
                out.append(f"{module}{name} is not a test in {module} (row {row[0]!r})")
    return out


def named(text: str) -> set[str]:
    return {m + n for row in table_rows(text) for m, n in NODE.findall(row[-1])}


def test_every_named_test_exists() -> None:
    assert problems(DOC.read_text(), REPO) == []


def test_every_matrix_and_break_test_is_named() -> None:
    text = DOC.read_text()
    listed = named(text)
    wanted = {m + t for m in FULLY_LISTED for t in defined_tests(REPO / m)}
    reliability = REPO / "tests" / "test_reliability.py"
    if reliability.is_file():
        wanted |= {f"tests/test_reliability.py{t}" for t in defined_tests(reliability)
                   if t.startswith("::test_break")}
    assert sorted(wanted - listed) == []


def test_each_break_has_its_row() -> None:
    firsts = [row[0] for row in table_rows(DOC.read_text())]
    for n in range(1, 11):
        assert any(re.match(rf"\**Break {n}\b", cell) for cell in firsts), f"no row for break {n}"


def test_the_check_bites(tmp_path: Path) -> None:
    """A missing module, a missing test, a misspelt class and a row without a
    test are each reported; a good reference is not."""
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_a.py").write_text(
        "def test_one():\n    pass\n\nclass TestB:\n    def test_two(self):\n        pass\n"
        "\ndef helper():\n    pass\n")
    doc = (
        "| fault | test |\n|---|---|\n"
        "| ok | `tests/test_a.py::test_one`, `tests/test_a.py::TestB::test_two` |\n"
        "| gone module | `tests/test_gone.py::test_one` |\n"
        "| gone test | `tests/test_a.py::test_three` |\n"
        "| not a test | `tests/test_a.py::helper` |\n"
        "| wrong class | `tests/test_a.py::TestC::test_two` |\n"
        "| nothing | (none) |\n"
    )
    found = problems(doc, tmp_path)
    assert len(found) == 5, found
    for needle in ("test_gone.py does not exist", "::test_three is not", "::helper is not",
                   "::TestC::test_two is not", "row names no test: 'nothing'"):
        assert any(needle in p for p in found), (needle, found)
    assert not any("'ok'" in p for p in found), found
    assert problems("no table here", tmp_path) == ["no table with a `test` column"]
