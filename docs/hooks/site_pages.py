"""MkDocs hooks that generate two parts of the site at build time (nothing generated is committed).

- **API reference**: one page per top-level module or subpackage of every package under ``packages/*/src``
  (``api/diffcore/sampling.md`` holds ``::: diffcore.sampling.ddim``, ``::: diffcore.sampling.grids``, ...),
  rendered by mkdocstrings from the docstrings. Private modules (a name starting with ``_``) are left out.
- **Package pages**: each ``packages/<name>/README.md`` as ``packages/<name>.md``, with its links to
  ``docs/`` pages rewritten to the site's pages.

Both are appended to the navigation in ``on_config``, so ``mkdocs.yml`` lists only the hand-written pages.
``tests/test_docs_site.py`` builds the site with ``--strict`` and checks that every public function appears.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ROOT / "packages"
LINK = re.compile(r"\]\((?!https?://|#)([^)\s]+)\)")


@dataclass(frozen=True)
class Package:
    """One workspace package: its folder name (``diff-audio``) and import name (``diff_audio``)."""

    dist: str
    module: str

    @property
    def src(self) -> Path:
        return PACKAGES / self.dist / "src" / self.module


def packages() -> list[Package]:
    """Every package of the workspace, diffcore first, then the modality packages by name."""
    found = [
        Package(p.name, s.name)
        for p in PACKAGES.iterdir()
        if (p / "src").is_dir()
        for s in (p / "src").iterdir()
        if (s / "__init__.py").is_file()
    ]
    return sorted(found, key=lambda p: (p.dist != "diffcore", p.dist))


def _public(path: Path) -> bool:
    return not any(part.startswith("_") and part != "__init__.py" for part in path.parts)


def modules_under(package: Package, path: Path) -> list[str]:
    """Dotted names of the public modules at ``path`` (a module file or a package folder), parents first."""
    if path.is_file():
        rel = path.relative_to(package.src.parent).with_suffix("")
        return [".".join(rel.parts)]
    names = []
    for file in sorted(path.rglob("*.py")):
        rel = file.relative_to(package.src.parent)
        if not _public(rel.relative_to(package.module)):
            continue
        parts = rel.with_suffix("").parts
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return sorted(names, key=lambda n: (n.count("."), n) if n.count(".") <= 1 else (2, n))


def api_sections(package: Package) -> list[tuple[str, list[str]]]:
    """``(section, modules)`` pairs of a package: the package itself, then each public top-level entry."""
    sections = [("index", [package.module])]
    for entry in sorted(package.src.iterdir()):
        if entry.name.startswith("_") or entry.name == "__pycache__":
            continue
        if entry.is_dir() and (entry / "__init__.py").is_file():
            sections.append((entry.name, modules_under(package, entry)))
        elif entry.suffix == ".py":
            sections.append((entry.stem, modules_under(package, entry)))
    return sections


def api_page(package: Package, section: str, modules: list[str]) -> str:
    """The markdown of one API page: a title, then one mkdocstrings block per module."""
    title = package.module if section == "index" else f"{package.module}.{section}"
    lines = [f"# `{title}`", ""]
    if section == "index":
        lines += [
            f"The package `{package.dist}` (import `{package.module}`): what its `__init__` exports.",
            "",
        ]
    for name in modules:
        lines += [f"::: {name}", "    options:", "      show_submodules: false", ""]
    return "\n".join(lines)


def readme_page(package: Package, page_uri: str) -> str:
    """The package's README with relative links into ``docs/`` rewritten to site pages."""
    readme = PACKAGES / package.dist / "README.md"
    text = readme.read_text(encoding="utf-8")

    def rewrite(match: re.Match[str]) -> str:
        target = (readme.parent / match.group(1)).resolve()
        try:
            in_docs = target.relative_to(ROOT / "docs").as_posix()
        except ValueError:
            return match.group(0)
        return f"]({posixpath.relpath(in_docs, posixpath.dirname(page_uri))})"

    return LINK.sub(rewrite, text)


README_LINK = re.compile(r"\]\(((?:\.\./)+)packages/([\w-]+)/README\.md\)")


def on_page_markdown(markdown: str, page: Any, config: Any, files: Files) -> str:
    """Point a hand-written page's links to ``packages/<name>/README.md`` at the generated package page
    (the same link works on the repository's own file view)."""

    def rewrite(match: re.Match[str]) -> str:
        target = f"packages/{match.group(2)}.md"
        return f"]({posixpath.relpath(target, posixpath.dirname(page.file.src_uri))})"

    return README_LINK.sub(rewrite, markdown)


def _nav_api() -> list[dict[str, Any]]:
    nav = []
    for package in packages():
        entries = [
            {(package.module if s == "index" else s): f"api/{package.dist}/{s}.md"}
            for s, _ in api_sections(package)
        ]
        nav.append({package.dist: entries})
    return nav


def on_config(config: Any) -> Any:
    """Append the package pages and the API reference to the navigation."""
    nav = config["nav"]
    nav.append({"Package READMEs": [{p.dist: f"packages/{p.dist}.md"} for p in packages()]})
    nav.append({"API reference": _nav_api()})
    return config


def on_files(files: Files, config: Any) -> Files:
    """Add the generated pages to the site's files."""
    for package in packages():
        uri = f"packages/{package.dist}.md"
        files.append(File.generated(config, uri, content=readme_page(package, uri)))
        for section, modules in api_sections(package):
            uri = f"api/{package.dist}/{section}.md"
            files.append(File.generated(config, uri, content=api_page(package, section, modules)))
    return files
