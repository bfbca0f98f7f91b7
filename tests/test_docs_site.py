"""The documentation site (``mkdocs.yml``) builds with ``--strict`` (every warning an error: a broken link, a
page missing from the navigation, a docstring mkdocstrings cannot read), and its API reference shows every
public function and class of every package with a docstring (issue #36)."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import griffe
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _hooks():
    spec = importlib.util.spec_from_file_location("site_pages", ROOT / "docs/hooks/site_pages.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


HOOKS = _hooks()


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The site built once, strictly, into a temporary folder (about 25 s on two cores)."""
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    run = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    return out


@pytest.fixture(scope="module")
def api() -> list[griffe.Module]:
    """Every package as griffe reads it (statically), with inherited docstrings filled in as on the site."""
    extensions = griffe.load_extensions("griffe_inherited_docstrings")
    loader = griffe.GriffeLoader(
        extensions=extensions,
        search_paths=[str(p.src.parent) for p in HOOKS.packages()],
        allow_inspection=False,
    )
    modules = [loader.load(p.module) for p in HOOKS.packages()]
    loader.resolve_aliases(implicit=False, external=None)
    for module in modules:
        loader.extensions.call("on_package", pkg=module, loader=loader)
    return modules


def _public_objects(obj: griffe.Object) -> list[griffe.Object]:
    """Public functions, classes and methods defined (not re-exported) in public modules."""
    found = []
    for name, member in obj.members.items():
        if member.is_alias or name.startswith("_"):
            continue
        if member.is_module:
            found += _public_objects(member)
        elif member.is_class:
            found += [member, *_public_objects(member)]
        elif member.is_function:
            found.append(member)
    return found


def test_every_package_is_in_the_site(site):
    for package in HOOKS.packages():
        assert (site / "packages" / package.dist / "index.html").is_file(), package.dist
        assert (site / "api" / package.dist / "index.html").is_file(), package.dist


def test_every_public_function_and_class_appears_in_the_api_reference(site, api):
    anchors: set[str] = set()
    for page in (site / "api").rglob("*.html"):
        anchors |= set(re.findall(r'id="([\w.]+)"', page.read_text(encoding="utf-8")))
    objects = [o.path for module in api for o in _public_objects(module)]
    assert len(objects) > 1500  # the walk really saw the packages
    missing = [path for path in objects if path not in anchors]
    assert not missing, f"{len(missing)} public objects not in the API reference: {missing[:20]}"


def test_every_public_function_and_class_has_a_docstring(api):
    missing = [o.path for module in api for o in _public_objects(module) if not o.docstring]
    assert not missing, f"{len(missing)} public objects without a docstring:\n" + "\n".join(missing)


def _documented_names(obj: griffe.Function) -> list[str]:
    names = []
    for section in obj.docstring.parse("google", warnings=False) if obj.docstring else []:
        if section.kind is griffe.DocstringSectionKind.parameters:
            for parameter in section.value:
                names += [n.strip().lstrip("*") for n in re.split(r",|/| or ", parameter.name)]
    return [n for n in names if n]


def test_every_documented_argument_is_in_its_signature(api):
    """Our docstrings may document related arguments together (``mu1, mu2: ...``); each name must exist."""
    stale = []
    for module in api:
        for obj in _public_objects(module):
            if not obj.is_function:
                continue
            signature = {p.name for p in obj.parameters}
            stale += [f"{obj.path}: {n}" for n in _documented_names(obj) if n not in signature]
    assert not stale, "documented arguments missing from their signatures:\n" + "\n".join(stale)
