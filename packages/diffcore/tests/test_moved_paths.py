"""The import paths of modules moved in diffcore 0.2 keep working for one release: each old path imports the
module at its new home (the same object) and warns naming that home; the repository's own code uses none."""

from __future__ import annotations

import ast
import importlib
import re
import sys
from pathlib import Path

import diffcore
import pytest
from diffcore._moved import MOVED, MOVED_ATTRIBUTES

ROOT = Path(__file__).resolve().parents[3]
CORE_BENCHMARKS = [  # every benchmark but the modality packages' own (image/, protein/, language/)
    *(ROOT / "benchmarks").glob("*.py"),
    *(ROOT / "benchmarks").glob("core/*.py"),
    *(ROOT / "benchmarks").glob("few_step/*.py"),
    *(ROOT / "benchmarks").glob("install/*.py"),
]
OWN_CODE = [
    *(ROOT / "packages" / "diffcore" / "src").rglob("*.py"),
    *(ROOT / "packages" / "diffcore" / "tests").rglob("*.py"),
    *CORE_BENCHMARKS,
]


def _forget(monkeypatch: pytest.MonkeyPatch, old: str) -> None:
    """Make the next import of ``old`` run the finder again: drop it (and what hangs below it) from
    ``sys.modules`` and from its parent's attributes, for this test only."""
    for name in [n for n in sys.modules if n == old or n.startswith(old + ".")]:
        monkeypatch.delitem(sys.modules, name)
    parent, _, child = old.rpartition(".")
    module = sys.modules.get(parent)
    if module is not None and child in vars(module):  # not hasattr: it would run diffcore.__getattr__
        monkeypatch.delattr(module, child)


@pytest.mark.parametrize(("old", "new"), sorted(MOVED.items()))
def test_old_path_imports_the_new_module_and_warns_naming_it(
    monkeypatch: pytest.MonkeyPatch, old: str, new: str
) -> None:
    _forget(monkeypatch, old)
    with pytest.warns(DeprecationWarning, match=re.escape(f"{old} moved to {new} in diffcore 0.2")):
        module = importlib.import_module(old)
    assert module is importlib.import_module(new)


@pytest.mark.parametrize(("name", "new"), sorted(MOVED_ATTRIBUTES.items()))
def test_old_top_level_attribute_is_the_new_module_and_warns(
    monkeypatch: pytest.MonkeyPatch, name: str, new: str
) -> None:
    if name in vars(diffcore):  # an earlier import of diffcore.<name> bound it
        monkeypatch.delattr(diffcore, name)
    with pytest.warns(DeprecationWarning, match=re.escape(f"diffcore.{name} moved to {new}")):
        module = getattr(diffcore, name)
    assert module is importlib.import_module(new)


def test_every_new_home_exists_and_is_not_itself_an_old_path() -> None:
    for old, new in MOVED.items():
        assert new not in MOVED, (old, new)
        assert importlib.util.find_spec(new) is not None, new


def _imported_names(path: Path) -> list[tuple[int, str]]:
    """``(line, dotted name)`` of every import in ``path``, inside functions too (``from a import b`` gives
    both ``a`` and ``a.b``: ``b`` may be a module)."""
    names = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.append((node.lineno, node.module))
            names += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return names


def test_no_repository_code_of_the_core_imports_an_old_path() -> None:
    """diffcore's sources and tests and the core benchmarks import every moved module at its new home."""
    assert len(OWN_CODE) > 100 and CORE_BENCHMARKS
    found = [
        f"{path.relative_to(ROOT)}:{line}: {name} (now {MOVED[name]})"
        for path in OWN_CODE
        for line, name in _imported_names(path)
        if name in MOVED
    ]
    assert not found, "old import paths:\n" + "\n".join(found)
