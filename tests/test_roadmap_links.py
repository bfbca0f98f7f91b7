"""docs/roadmap.md's map names only things that exist (issue #36): every object in its *code* column imports,
every ``file::test`` is a test function in that file, every example is a script, and every section of the
roadmap has a row. A rename in the code then fails here instead of leaving the page stale."""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "roadmap.md"
SECTIONS = ["1.1", "1.2", "1.3", "2.1", "2.2", "2.3", "3.1", "3.2", "4.1", "4.2", "4.3", "5.1", "5.2", "5.3",
            "5.4", "6.1", "6.2", "6.3", "6.4", "6.5", "7.1", "7.2", "7.3"]  # fmt: skip


def _rows() -> list[dict[str, list[str]]]:
    """The rows of the table under "## The map": section, then the backticked names of each column."""
    text = PAGE.read_text(encoding="utf-8").split("## The map", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 5 or not re.fullmatch(r"\d\.\d", cells[0]):
            continue
        names = [re.findall(r"`([^`]+)`", c) for c in cells[2:]]
        rows.append({"section": [cells[0]], "code": names[0], "test": names[1], "example": names[2]})
    return rows


ROWS = _rows()


def _resolve(dotted: str) -> object:
    """Import the longest importable prefix of ``dotted`` and get the rest as attributes."""
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for attr in parts[cut:]:
            obj = getattr(obj, attr)
        return obj
    raise ModuleNotFoundError(dotted)


def _test_functions(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name.startswith("test")}


def test_every_section_of_the_roadmap_has_a_complete_row():
    assert [r["section"][0] for r in ROWS if r["section"][0] in SECTIONS]
    assert sorted({r["section"][0] for r in ROWS}) == SECTIONS
    for row in ROWS:
        assert row["code"] and row["test"] and row["example"], row


@pytest.mark.parametrize("name", sorted({n for r in ROWS for n in r["code"]}))
def test_code_names_resolve(name):
    assert _resolve(name) is not None


@pytest.mark.parametrize("name", sorted({n for r in ROWS for n in r["test"]}))
def test_test_names_are_test_functions_of_their_files(name):
    file, _, function = name.partition("::")
    path = ROOT / file
    assert path.is_file(), f"no file {file}"
    assert function in _test_functions(path), f"{file} has no test function {function}"


@pytest.mark.parametrize("name", sorted({n for r in ROWS for n in r["example"]}))
def test_examples_exist(name):
    assert (ROOT / name).is_file() and name.startswith("examples/") and name.endswith(".py")


def test_every_example_is_on_the_roadmap_or_a_tutorial():
    pages = [PAGE, *sorted((ROOT / "docs" / "tutorials").glob("*.md"))]
    text = "\n".join(p.read_text(encoding="utf-8") for p in pages)
    missing = [p.name for p in (ROOT / "examples").glob("*.py") if f"examples/{p.name}" not in text]
    assert not missing, f"examples no page names: {missing}"


def test_a_wrong_name_is_caught():
    with pytest.raises((ModuleNotFoundError, AttributeError)):
        _resolve("diffcore.sampling.ddim.sample_dimm")
    assert "test_ddim" in _test_functions(ROOT / "packages/diffcore/tests/test_diffusers_parity.py")
    assert "test_ddimm" not in _test_functions(ROOT / "packages/diffcore/tests/test_diffusers_parity.py")
