"""Build, check and (when asked) publish one package of the workspace at a time.

    uv run python scripts/release.py                                  # dry run: build + check every package
    uv run python scripts/release.py --package diff-audio             # dry run of one package
    uv run python scripts/release.py --package diff-audio --publish   # upload to PyPI, then tag diff-audio-v0.1.0

A dry run (the default) changes nothing outside the output folder. For each package it

1. reads the version from ``packages/<name>/pyproject.toml`` and requires ``CHANGELOG.md``'s first release
   heading to be ``## <version>``;
2. checks that a modality package's ``diffcore`` range admits the workspace's diffcore version;
3. builds the sdist, then the wheel from it, with ``uv build --no-sources`` (as published: without the
   workspace's ``tool.uv.sources``) into ``<out>/<name>-<version>/`` (default ``dist/``, emptied first);
4. runs ``twine check --strict`` on both, and checks the wheel's name and version and that the sdist holds
   README.md and CHANGELOG.md;
5. reports whether the tag ``<name>-v<version>`` exists already (a release needs a new version).

``--publish`` (one ``--package`` only) also requires a clean worktree and an untagged version, uploads both
files with ``twine upload`` (credentials as twine reads them: ``TWINE_USERNAME`` / ``TWINE_PASSWORD``, a
token, or keyring; ``--repository testpypi`` for a trial), then creates the annotated tag locally; push it
yourself (``git push origin <tag>``). A modality package needs a published diffcore in its range: release
diffcore first when its version changed. Exit status 0 when every step passed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10 (diffcore depends on tomli there)
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
PACKAGES_DIR = ROOT / "packages"


@dataclass
class Report:
    package: str
    version: str
    ok: bool = True
    lines: list[str] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)

    def check(self, passed: bool, what: str) -> bool:
        self.lines.append(f"  {'ok  ' if passed else 'FAIL'} {what}")
        self.ok &= passed
        return passed


def packages() -> list[str]:
    return sorted(p.parent.name for p in PACKAGES_DIR.glob("*/pyproject.toml"))


def project(name: str) -> dict:
    return tomllib.loads((PACKAGES_DIR / name / "pyproject.toml").read_text())["project"]


def tag_name(name: str, version: str) -> str:
    """The release tag convention: ``<package>-v<version>``, e.g. ``diff-audio-v0.1.0``."""
    return f"{name}-v{version}"


def changelog_version(text: str) -> str | None:
    """The version of the first release heading (``## 0.2.0`` or ``## [0.2.0] - 2025-01-01``), or None."""
    for line in text.splitlines():
        m = re.match(r"^##\s+\[?v?([0-9][^\]\s]*)\]?", line)
        if m:
            return m.group(1)
    return None


def diffcore_range_ok(name: str) -> tuple[bool, str]:
    """Whether the package's diffcore requirement admits the workspace's diffcore version."""
    from packaging.requirements import Requirement

    version = project("diffcore")["version"]
    reqs = [Requirement(r) for r in project(name).get("dependencies", [])]
    core = [r for r in reqs if r.name == "diffcore"]
    if not core:
        return False, "no diffcore requirement"
    spec = core[0].specifier
    return spec.contains(version, prereleases=True), f"diffcore{spec} admits diffcore {version}"


def _run(cmd: list[str], report: Report, what: str) -> bool:
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    passed = report.check(done.returncode == 0, what)
    if not passed:
        tail = (done.stdout + done.stderr).strip().splitlines()[-15:]
        report.lines.extend(f"       {line}" for line in tail)
    return passed


def tag_exists(tag: str) -> bool:
    done = subprocess.run(["git", "tag", "--list", tag], cwd=ROOT, capture_output=True, text=True, check=True)
    return bool(done.stdout.strip())


def build_and_check(name: str, out: Path) -> Report:
    meta = project(name)
    version = meta["version"]
    report = Report(name, version)
    changelog = PACKAGES_DIR / name / "CHANGELOG.md"
    found = changelog_version(changelog.read_text()) if changelog.exists() else None
    report.check(found == version, f"CHANGELOG.md's first release is {found}, pyproject.toml says {version}")
    if name != "diffcore":
        admits, what = diffcore_range_ok(name)
        report.check(admits, what)
    folder = out / f"{name}-{version}"
    shutil.rmtree(folder, ignore_errors=True)
    # no --sdist/--wheel: uv builds the sdist, then the wheel from it (so a file missing from the sdist shows)
    cmd = ["uv", "build", "--package", name, "--no-sources", "-q", "-o", str(folder)]
    if not _run(cmd, report, f"uv build (sdist, wheel) into {folder}"):
        return report
    wheels, sdists = sorted(folder.glob("*.whl")), sorted(folder.glob("*.tar.gz"))
    report.files = [*sdists, *wheels]
    if not report.check(len(wheels) == 1 and len(sdists) == 1, "one wheel and one sdist"):
        return report
    _run([sys.executable, "-m", "twine", "check", "--strict", *map(str, report.files)], report, "twine check")
    with zipfile.ZipFile(wheels[0]) as whl:
        metadata = next(n for n in whl.namelist() if n.endswith(".dist-info/METADATA"))
        text = whl.read(metadata).decode()
    got = dict(re.findall(r"^(Name|Version): (.+)$", text, flags=re.M))
    report.check(
        got == {"Name": name, "Version": version}, f"wheel metadata {got.get('Name')} {got.get('Version')}"
    )
    with tarfile.open(sdists[0]) as sdist:
        names = {Path(n).name for n in sdist.getnames() if n.count("/") == 1}
    report.check({"README.md", "CHANGELOG.md"} <= names, "sdist holds README.md and CHANGELOG.md")
    tag = tag_name(name, version)
    taken = tag_exists(tag)
    report.lines.append(
        f"  {'note' if taken else 'ok  '} tag {tag} {'exists: raise the version' if taken else 'is free'}"
    )
    return report


def publish(report: Report, repository: str) -> bool:
    tag = tag_name(report.package, report.version)
    dirty = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True).stdout
    if not report.check(not dirty.strip(), "clean worktree") or not report.check(
        not tag_exists(tag), f"{tag} not tagged yet"
    ):
        return False
    upload = [sys.executable, "-m", "twine", "upload", "--repository", repository, *map(str, report.files)]
    if subprocess.run(upload, cwd=ROOT).returncode != 0:
        return report.check(False, f"twine upload to {repository}")
    report.check(True, f"uploaded to {repository}")
    message = f"{report.package} {report.version}"
    return _run(
        ["git", "tag", "-a", tag, "-m", message], report, f"tagged {tag} (push: git push origin {tag})"
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--package", action="append", choices=packages(), help="repeatable; default: all")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--dry-run", action="store_true", default=True, help="build and check only (default)")
    mode.add_argument("--publish", action="store_true", help="upload and tag one package")
    p.add_argument("--repository", default="pypi", help="twine repository for --publish (pypi, testpypi)")
    p.add_argument("--out", type=Path, default=ROOT / "dist", help="output folder (default: dist/)")
    args = p.parse_args(argv)
    names = args.package or packages()
    if args.publish and len(names) != 1:
        p.error("--publish releases one package at a time: name it with --package")
    if shutil.which("uv") is None:
        p.error("uv is not on PATH (pip install uv)")
    if subprocess.run([sys.executable, "-m", "twine", "--version"], capture_output=True).returncode != 0:
        p.error("twine is not installed here: run through `uv run` (the dev group has it)")
    ok = True
    for name in names:
        report = build_and_check(name, args.out.resolve())
        if args.publish and report.ok:
            publish(report, args.repository)
        print(f"{name} {report.version}: {'ok' if report.ok else 'FAILED'}")
        print("\n".join(report.lines))
        ok &= report.ok
    if not args.publish:
        print(f"dry run: nothing uploaded, no tag created; files under {args.out}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
