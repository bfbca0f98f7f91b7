"""Check that every number the docs quote beside a result file is in that file.

Reads ``docs/**/*.md``, ``README.md`` and ``packages/*/README.md``, cut into blocks: a paragraph, one list
item, or a table (fenced code is skipped). A block *cites* the result files it names
(``benchmarks/results/<name>``, or a bare ``<name>.json`` / ``<name>.txt`` that exists there); a table also
cites what the paragraph just above it names (its caption) and a paragraph right below it that starts with
``(``; a paragraph starting ``Result file:`` cites its files for every block of its page (generated pages).

In a citing block, every decimal number (``0.909``, ``58.5%``, ``1.92x``, ``636.7``) and every integer of a
purely numeric table cell (``7166``, ``7293 / 7209``) outside the first column must be a value of a cited
file, rounded to the precision quoted: a numeric leaf, a number inside a string leaf (``"torch": "2.11.0"``,
a command line) or a key, also times 100 (percentages), 1000 or 1/1000 (s and ms).

Not checked: numbers in inline code (settings: ```rotation_rate_t_max=0.9```), numbers after a comparison
(targets: ``>= 0.90``, ``≤ 0.10``) or ``~``, versions (``torch 2.11``, ``0.2.0``), scientific notation,
integers in prose, fenced code.

**Derived numbers** (a ratio, a mean over files) are stated where they are quoted, as an HTML comment in the
block or on the line after it::

    <!-- derived: 1.10 = {dit_training_throughput-xl2-b192-h100.json:/rows/[impl=diffcore]/images_per_s}
         / {dit_training_throughput-xl2-b192-h100.json:/rows/[impl=diffusers]/images_per_s} -->

``{file:/path}`` is a JSON-pointer-like path into a result file (keys, list indices, or ``[key=value]`` to
pick the list element whose ``key`` is ``value``; ``[k1=v1,k2=v2]`` for several keys); the expression may use
``+ - * / **``, parentheses and numbers, and several derivations go in one comment separated by ``;``. The checker evaluates each one, fails
if it does not round to the number stated, and then accepts that number in the comment's block and the
blocks either side.

A name that starts like a result file (a benchmark script's name) but is not in ``benchmarks/results`` fails
too, so a renamed or deleted file cannot stay cited. An older file that a current claim rests on is cited as
``<commit>:benchmarks/results/<name>`` and read from git at that commit.

    uv run python benchmarks/check_doc_numbers.py                  # exit 1 and list the mismatches
    uv run python benchmarks/check_doc_numbers.py --list-uncited   # also list blocks quoting decimals
                                                                   # without citing any file (for review)

``tests/test_doc_numbers.py`` runs it.
"""

from __future__ import annotations

import argparse
import ast
import json
import math
import operator
import re
import subprocess
import sys
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"

FILE_NAME = re.compile(r"(?<![\w./-])(?:(?:benchmarks/)?results/)?([\w.-]+\.(?:json|txt))(?![\w-])")
HISTORY = re.compile(r"\b([0-9a-f]{7,40}):benchmarks/results/([\w.-]+\.(?:json|txt))")
DECIMAL = re.compile(r"(?<![\w.,])(\d+\.\d+)(?!\.\d|\d|[A-Za-wyz_]|x\w)(%?)")
CELL_NUMBER = re.compile(r"^\**([\d,]+(?:\.\d+)?)\**\s*(%|x|×|s|ms|MB|GiB|img/s)?\**$")
DERIVED = re.compile(r"<!--\s*derived:(.*?)-->", re.S)
COMMENT = re.compile(r"<!--.*?-->", re.S)
CODE_SPAN = re.compile(r"`[^`]*`")
LINK_TARGET = re.compile(r"\]\([^)]*\)")
GUARD = re.compile(r"(>=|<=|≥|≤|<|>|~|\b(?:torch|diffusers|Python|CUDA))\s*$")
SCALES = (1.0, 100.0, 1000.0, 0.001)


@dataclass
class Block:
    """A paragraph, list item or table of one document, with the lines it spans."""

    doc: Path
    line: int
    text: str
    table: bool = False
    cited: set[str] = field(default_factory=set)
    derived: dict[str, str] = field(default_factory=dict)  # number as quoted -> its expression


@dataclass
class Problem:
    doc: Path
    line: int
    message: str

    def __str__(self) -> str:
        return f"{_shown(self.doc)}:{self.line}: {self.message}"


def _shown(doc: Path) -> Path:
    return doc.relative_to(ROOT) if doc.is_relative_to(ROOT) else doc


def documents(root: Path = ROOT) -> list[Path]:
    """The pages checked: ``docs/**/*.md``, the root README and every package README."""
    return sorted(
        [*root.glob("docs/**/*.md"), root / "README.md", *root.glob("packages/*/README.md")],
        key=lambda p: str(p),
    )


def split_blocks(doc: Path, text: str) -> list[Block]:
    """Paragraphs, list items and tables, fenced code left out."""
    blocks: list[Block] = []
    current: list[str] = []
    start = 0
    in_fence = False

    def flush(is_table: bool = False) -> None:
        nonlocal current
        if current:
            blocks.append(Block(doc, start + 1, "\n".join(current), table=is_table))
        current = []

    lines = text.splitlines()
    for i, line in enumerate(lines):
        stripped = line.strip()
        if stripped.startswith("```"):
            flush(_is_table(current))
            in_fence = not in_fence
            continue
        if in_fence:
            continue
        starts_item = bool(re.match(r"\s{0,3}([-*]|\d+\.)\s", line)) and not _is_table(current)
        is_row = stripped.startswith("|")
        if not stripped or starts_item or (current and is_row != _is_table(current)):
            flush(_is_table(current))
        if stripped:
            if not current:
                start = i
            current.append(line)
    flush(_is_table(current))
    return blocks


def _is_table(lines: list[str]) -> bool:
    return bool(lines) and lines[0].strip().startswith("|")


def cited_files(text: str) -> tuple[set[str], list[str]]:
    """Result files a text names, and names that look like result files but do not exist."""
    text = DERIVED.sub(" ", text)
    found, missing = set(), []
    for match in HISTORY.finditer(
        text
    ):  # an older file that a claim rests on: <commit>:benchmarks/results/<name>
        commit, name = match.groups()
        if in_history(commit, name):
            found.add(f"{commit}:{name}")
        else:
            missing.append(f"{commit}:{name}")
    text = HISTORY.sub(" ", text)
    for match in FILE_NAME.finditer(text):
        name = Path(match.group(1)).name
        full = match.group(0).startswith(("benchmarks/results/", "results/"))
        if (RESULTS / name).is_file():
            found.add(name)
        elif full or name.split("-")[0].split(".")[0] in _script_stems():
            missing.append(name)
    return found, missing


@cache
def _script_stems() -> frozenset[str]:
    stems = {p.stem for p in (ROOT / "benchmarks").rglob("*.py")}
    return frozenset(stems | {"diffuse_bench_image", "diffuse_bench_language", "diffuse_bench_protein"})


def _read(name: str) -> str:
    """A result file's text: ``<name>`` in ``benchmarks/results``, or ``<commit>:<name>`` from git."""
    commit, sep, base = name.rpartition(":")
    if not sep:
        return (RESULTS / name).read_text(encoding="utf-8")
    return subprocess.run(
        ["git", "show", f"{commit}:benchmarks/results/{base}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout


@cache
def in_history(commit: str, name: str) -> bool:
    """Whether git holds ``benchmarks/results/<name>`` at ``commit``."""
    try:
        subprocess.run(
            ["git", "cat-file", "-e", f"{commit}:benchmarks/results/{name}"],
            cwd=ROOT,
            capture_output=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return False
    return True


@cache
def file_values(name: str) -> tuple[float, ...]:
    """Every number a result file holds (leaves, numbers inside strings and keys); ``<commit>:<name>`` reads the
    file as git holds it at that commit."""
    if name.endswith(".txt"):
        return tuple(_numbers_in(_read(name)))
    values: list[float] = []

    def walk(node: Any) -> None:
        if isinstance(node, bool) or node is None:
            return
        if isinstance(node, (int, float)):
            if math.isfinite(node):
                values.append(float(node))
        elif isinstance(node, str):
            values.extend(_numbers_in(node))
        elif isinstance(node, dict):
            for key, value in node.items():
                values.extend(_numbers_in(str(key)))
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(json.loads(_read(name)))
    return tuple(values)


def _numbers_in(text: str) -> list[float]:
    return [float(m) for m in re.findall(r"\d+(?:\.\d+)?", text)]


def matches(quoted: str, value: float, percent: bool = False) -> bool:
    """``value`` (times one of the scales) rounds to ``quoted`` at the precision quoted."""
    target = float(quoted.replace(",", ""))
    decimals = len(quoted.split(".")[1]) if "." in quoted else 0
    half = 0.5 * 10.0**-decimals
    scales = (100.0, 1.0) if percent else SCALES
    return any(abs(abs(value) * s - target) <= half * (1 + 1e-9) + 1e-12 for s in scales)


def held(quoted: str, files: set[str], percent: bool = False) -> bool:
    return any(matches(quoted, v, percent) for name in files for v in file_values(name))


# ---------------------------------------------------------------------------------------------- derived


def resolve(reference: str) -> float:
    """The number at ``file.json:/a/0/[k=v]/b``."""
    name, _, pointer = reference.strip().partition(":")
    if not (RESULTS / name.strip()).is_file():
        raise ValueError(f"derived: no result file {name.strip()!r}")
    node: Any = json.loads(_read(name.strip()))
    for part in [p for p in pointer.strip().split("/") if p]:
        selector = re.fullmatch(r"\[(.+)\]", part)
        if selector and isinstance(node, list):
            wanted = dict(c.split("=", 1) for c in selector.group(1).split(","))
            picked = [
                x for x in node if isinstance(x, dict) and all(str(x.get(k)) == v for k, v in wanted.items())
            ]
            if len(picked) != 1:
                raise ValueError(f"derived: {len(picked)} elements with {selector.group(1)} in {reference!r}")
            node = picked[0]
        elif isinstance(node, list):
            node = node[int(part)]
        elif isinstance(node, dict) and part in node:
            node = node[part]
        else:
            raise ValueError(f"derived: no {part!r} in {reference!r}")
    if isinstance(node, bool) or not isinstance(node, (int, float)):
        raise ValueError(f"derived: {reference!r} is not a number")
    return float(node)


_OPS = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.Pow: operator.pow,
}


def evaluate(expression: str) -> float:
    """An arithmetic expression whose ``{file:/path}`` references are replaced by their values."""
    refs: list[float] = []

    def sub(match: re.Match[str]) -> str:
        refs.append(resolve(match.group(1)))
        return f"_r{len(refs) - 1}"

    plain = re.sub(r"\{([^{}]+)\}", sub, expression)

    def calc(node: ast.AST) -> float:
        if isinstance(node, ast.Expression):
            return calc(node.body)
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            return _OPS[type(node.op)](calc(node.left), calc(node.right))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -calc(node.operand)
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
            return float(node.value)
        if isinstance(node, ast.Name) and node.id.startswith("_r"):
            return refs[int(node.id[2:])]
        raise ValueError(f"derived: only + - * / ** ( ) and numbers are allowed, got {expression!r}")

    return calc(ast.parse(plain.replace("\n", " "), mode="eval"))


def parse_derived(text: str) -> list[tuple[str, str]]:
    """``(number, expression)`` pairs of the ``<!-- derived: ... -->`` comments in ``text``."""
    out = []
    for comment in DERIVED.findall(text):
        for item in [s for s in comment.split(";") if s.strip()]:
            number, sep, expression = item.partition("=")
            if not sep or not re.fullmatch(r"\s*\d+(\.\d+)?%?\s*", number):
                raise ValueError(f"derived: expected '<number> = <expression>', got {item.strip()!r}")
            out.append((number.strip(), expression.strip()))
    return out


# ------------------------------------------------------------------------------------------- checking


def quoted_numbers(block: Block) -> list[tuple[str, bool]]:
    """``(number, is_percent)`` the block quotes and this check covers (see the module docstring)."""
    text = COMMENT.sub(" ", block.text)
    out: list[tuple[str, bool]] = []
    if block.table:
        for row in text.splitlines():
            cells = [c.strip() for c in row.strip().strip("|").split("|")]
            if all(re.fullmatch(r":?-+:?", c) for c in cells if c):
                continue  # the separator row
            for cell in cells[1:]:
                cell = CODE_SPAN.sub(" ", cell)
                whole = CELL_NUMBER.match(cell)
                if whole and "." not in whole.group(1):
                    out.append((whole.group(1), whole.group(2) == "%"))
                elif re.fullmatch(r"\**[\d,]+(\s*/\s*[\d,]+)+\**", cell):  # "7293 / 7209 / 7307"
                    out += [(n, False) for n in re.findall(r"[\d,]+", cell)]
                out += _decimals(cell)
        return out
    return _decimals(text)


def _decimals(text: str) -> list[tuple[str, bool]]:
    text = LINK_TARGET.sub("]", CODE_SPAN.sub(" ", text))
    out = []
    for m in DECIMAL.finditer(text):
        if GUARD.search(text[max(0, m.start() - 12) : m.start()]):
            continue
        out.append((m.group(1), m.group(2) == "%"))
    return out


def check_document(doc: Path) -> tuple[list[Problem], list[Block]]:
    """Problems of one page, and its blocks quoting decimals without citing a file."""
    blocks = split_blocks(doc, doc.read_text(encoding="utf-8"))
    problems: list[Problem] = []
    for block in blocks:
        block.cited, missing = cited_files(block.text)
        for name in missing:
            problems.append(Problem(doc, block.line, f"names {name}, which benchmarks/results does not hold"))
        try:
            for number, expression in parse_derived(block.text):
                value = evaluate(expression)
                if not matches(number.rstrip("%"), value, number.endswith("%")):
                    problems.append(
                        Problem(doc, block.line, f"derived {number} but {expression} = {value:.6g}")
                    )
                block.derived[number.rstrip("%")] = expression
        except (ValueError, KeyError, IndexError, SyntaxError, ZeroDivisionError) as err:
            problems.append(Problem(doc, block.line, str(err)))
    page = set().union(*(b.cited for b in blocks if re.match(r"Result files?:", b.text.strip())))
    for i, block in enumerate(
        blocks
    ):  # a table's caption above it, "(files)" below it; a page's result files
        block.cited |= page
        if block.table:
            if i > 0 and not blocks[i - 1].table:
                block.cited |= blocks[i - 1].cited
            if i + 1 < len(blocks) and blocks[i + 1].text.lstrip().startswith("("):
                block.cited |= blocks[i + 1].cited
    uncited = []
    for i, block in enumerate(blocks):
        numbers = quoted_numbers(block)
        if not block.cited:
            if any("." in n for n, _ in numbers):
                uncited.append(block)
            continue
        derived = {k for b in blocks[max(0, i - 1) : i + 2] for k in b.derived}
        for number, percent in numbers:
            plain = number.replace(",", "")
            if plain in derived or held(plain, block.cited, percent):
                continue
            problems.append(
                Problem(
                    doc, block.line, f"{number}{'%' if percent else ''} is in none of {sorted(block.cited)}"
                )
            )
    return problems, uncited


def check(docs: list[Path] | None = None) -> tuple[list[Problem], list[Block]]:
    problems, uncited = [], []
    for doc in docs or documents():
        p, u = check_document(doc)
        problems += p
        uncited += u
    return problems, uncited


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("docs", nargs="*", type=Path, help="pages to check (default: docs/*.md and READMEs)")
    parser.add_argument(
        "--list-uncited", action="store_true", help="also list blocks quoting decimals without a result file"
    )
    args = parser.parse_args(argv)
    problems, uncited = check([p.resolve() for p in args.docs] or None)
    for problem in problems:
        print(problem)
    if args.list_uncited:
        for block in uncited:
            first = block.text.strip().splitlines()[0][:100]
            print(f"uncited: {_shown(block.doc)}:{block.line}: {first}")
    print(f"{len(problems)} problem(s)", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
