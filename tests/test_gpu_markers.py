"""Every test that skips without CUDA carries the ``gpu`` marker, so ``pytest -m gpu`` on a GPU machine runs all of
them (the fused kernels, the Trainer's no-sync step, CUDA graphs, FlexAttention, ...).

A static scan of every test file (no test module is imported): a test "skips without CUDA" when a
``pytest.mark.skipif(...)`` or ``pytest.skip(...)`` whose arguments (or enclosing ``if``) read
``cuda.is_available`` applies to it: as its own decorator, through a helper decorator of its module (``def
cuda(test): return pytest.mark.gpu(pytest.mark.skipif(...)(test))``), through the module's or its class's
``pytestmark``, or as a ``pytest.skip`` in its body. Such a test is marked ``gpu`` by a decorator, a helper
that applies ``pytest.mark.gpu``, or ``pytestmark``.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TEST_FILES = sorted([*ROOT.glob("packages/*/tests/**/*.py"), *ROOT.glob("tests/**/*.py")])


def _reads_cuda_availability(node: ast.AST) -> bool:
    return any(
        isinstance(n, ast.Attribute) and n.attr == "is_available" and _is_cuda(n.value)
        for n in ast.walk(node)
    )


def _is_cuda(node: ast.AST) -> bool:
    return (isinstance(node, ast.Attribute) and node.attr == "cuda") or (
        isinstance(node, ast.Name) and node.id == "cuda"
    )


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Call):
        return _dotted(node.func)
    return ""


def _cuda_skips(node: ast.AST) -> bool:
    """Whether ``node`` holds a skipif / skip on CUDA availability."""
    for n in ast.walk(node):
        skip_call = isinstance(n, ast.Call) and _dotted(n.func).endswith(("mark.skipif", "pytest.skip"))
        if skip_call and any(_reads_cuda_availability(a) for a in n.args):
            return True
        guarded = isinstance(n, ast.If) and _reads_cuda_availability(n.test)
        if guarded and any(
            isinstance(c, ast.Call) and _dotted(c.func).endswith("pytest.skip") for c in ast.walk(n)
        ):
            return True
    return False


def _marks_gpu(node: ast.AST) -> bool:
    return any(
        isinstance(n, ast.Attribute) and n.attr == "gpu" and _dotted(n.value).endswith("mark")
        for n in ast.walk(node)
    )


def _pytestmark(body: list[ast.stmt]) -> ast.AST | None:
    for stmt in body:
        if isinstance(stmt, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "pytestmark" for t in stmt.targets
        ):
            return stmt.value
    return None


def unmarked_cuda_tests(source: str) -> list[str]:
    """Names of the test functions in ``source`` that skip without CUDA but are not marked ``gpu``."""
    tree = ast.parse(source)
    helpers = {
        f.name: (_cuda_skips(f), _marks_gpu(f))
        for f in tree.body
        if isinstance(f, ast.FunctionDef) and not f.name.startswith("test")
    }
    module_mark = _pytestmark(tree.body)
    found = []

    def visit(body: list[ast.stmt], inherited: list[ast.AST], prefix: str) -> None:
        for node in body:
            if isinstance(node, ast.ClassDef):
                visit(
                    node.body,
                    [*inherited, *node.decorator_list, *filter(None, [_pytestmark(node.body)])],
                    f"{node.name}.",
                )
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("test"):
                applied = [*inherited, *node.decorator_list]
                skips = _cuda_skips(node) or any(_cuda_skips(d) for d in applied)
                gpu = any(_marks_gpu(d) for d in applied)
                for d in applied:
                    name = _dotted(d) if not isinstance(d, ast.Call) else ""
                    if name in helpers:
                        skips, gpu = skips or helpers[name][0], gpu or helpers[name][1]
                if skips and not gpu:
                    found.append(prefix + node.name)

    visit(tree.body, [module_mark] if module_mark is not None else [], "")
    return found


def test_the_scan_recognises_every_form():
    plain = "import pytest, torch\n@pytest.mark.skipif(not torch.cuda.is_available(), reason='x')\ndef test_a(): pass\n"
    marked = "import pytest, torch\n@pytest.mark.gpu\n@pytest.mark.skipif(not torch.cuda.is_available(), reason='x')\ndef test_a(): pass\n"
    helper_bad = "def cuda(t):\n    return pytest.mark.skipif(not torch.cuda.is_available(), reason='x')(t)\n@cuda\ndef test_a(): pass\n"
    helper_ok = "def cuda(t):\n    return pytest.mark.gpu(pytest.mark.skipif(not torch.cuda.is_available(), reason='x')(t))\n@cuda\ndef test_a(): pass\n"
    in_body = "def test_a():\n    if not torch.cuda.is_available():\n        pytest.skip('x')\n"
    module = (
        "pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason='x')\ndef test_a(): pass\n"
    )
    module_ok = "pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason='x')]\ndef test_a(): pass\n"
    klass = "class TestG:\n    pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason='x')\n    def test_a(self): pass\n"
    no_skip = "def test_a():\n    if not torch.cuda.is_available():\n        assert True\n"  # not a skip
    assert unmarked_cuda_tests(plain) == ["test_a"] and unmarked_cuda_tests(marked) == []
    assert unmarked_cuda_tests(helper_bad) == ["test_a"] and unmarked_cuda_tests(helper_ok) == []
    assert unmarked_cuda_tests(in_body) == ["test_a"] and unmarked_cuda_tests(module) == ["test_a"]
    assert unmarked_cuda_tests(module_ok) == [] and unmarked_cuda_tests(klass) == ["TestG.test_a"]
    assert unmarked_cuda_tests(no_skip) == []


def test_every_test_that_skips_without_cuda_is_marked_gpu():
    assert len(TEST_FILES) > 50
    unmarked = [
        f"{path.relative_to(ROOT)}::{name}"
        for path in TEST_FILES
        for name in unmarked_cuda_tests(path.read_text(encoding="utf-8"))
    ]
    assert not unmarked, "add @pytest.mark.gpu to:\n" + "\n".join(unmarked)
