"""scripts/release.py: its dry run (the default) builds and checks one package and changes nothing else; every
package has a CHANGELOG.md whose first release is its version; --publish takes exactly one package."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "release.py"


def _release():
    if "release_script" not in sys.modules:
        spec = importlib.util.spec_from_file_location("release_script", SCRIPT)
        module = importlib.util.module_from_spec(spec)
        sys.modules["release_script"] = module  # dataclasses look their module up there
        spec.loader.exec_module(module)
    return sys.modules["release_script"]


def _tags() -> str:
    return subprocess.run(
        ["git", "tag", "--list"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout


@pytest.mark.slow
def test_dry_run_builds_and_checks_one_package(tmp_path):
    tags = _tags()
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--package", "diff-timeseries", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    version = _release().project("diff-timeseries")["version"]
    folder = tmp_path / f"diff-timeseries-{version}"
    assert sorted(p.name for p in folder.glob("diff_timeseries-*")) == [
        f"diff_timeseries-{version}-py3-none-any.whl",
        f"diff_timeseries-{version}.tar.gz",
    ]
    assert "ok   twine check" in done.stdout and "FAIL" not in done.stdout
    assert f"tag diff-timeseries-v{version}" in done.stdout
    assert "dry run: nothing uploaded, no tag created" in done.stdout
    assert _tags() == tags


def test_every_changelog_starts_at_the_package_version():
    release = _release()
    assert len(release.packages()) == 9
    for name in release.packages():
        text = (ROOT / "packages" / name / "CHANGELOG.md").read_text()
        assert release.changelog_version(text) == release.project(name)["version"], name
        if name != "diffcore":
            assert release.diffcore_range_ok(name)[0], name


def test_changelog_headings_and_tag_convention():
    release = _release()
    assert release.changelog_version("# Changelog\n\nintro\n\n## 0.3.0\n\n- x\n\n## 0.2.0\n") == "0.3.0"
    assert release.changelog_version("## [1.0.0rc1] - 2025-01-01\n") == "1.0.0rc1"
    assert release.changelog_version("# Changelog\n\n## Unreleased\n") is None
    assert release.tag_name("diff-audio", "0.1.0") == "diff-audio-v0.1.0"


def test_publish_needs_exactly_one_package():
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--publish"], capture_output=True, text=True, cwd=ROOT
    )
    assert done.returncode == 2 and "one package at a time" in done.stderr
