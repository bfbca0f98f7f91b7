"""Every package builds as a wheel and each modality package installs alone, bringing diffcore and its
own field libraries and nothing of another package's field (e.g. diff-audio does not bring pymatgen)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _project_version(package: str) -> str:
    """The version a package's own pyproject.toml declares."""
    import tomllib

    return tomllib.loads((ROOT / "packages" / package / "pyproject.toml").read_text())["project"]["version"]

# import name of each field library -> the packages allowed to bring it
FIELD_LIBRARIES = {
    "torchaudio": {"diff-audio"},
    "soundfile": {"diff-audio"},
    "decord": {"diff-video"},
    "av": {"diff-video"},
    "gsplat": {"diff-3d"},
    "biotite": {"diff-protein"},
    "pymatgen": {"diff-materials"},
    "torch_geometric": {"diff-materials"},
    "transformers": {"diff-image", "diff-language", "diff-timeseries"},
    "sklearn": {"diff-image"},
}
MODALITY_OF = {
    "diff-image": "image",
    "diff-video": "video",
    "diff-audio": "audio",
    "diff-3d": "3d",
    "diff-protein": "protein",
    "diff-materials": "materials",
    "diff-language": "language",
    "diff-timeseries": "timeseries",
}

pytestmark = pytest.mark.slow


def _uv() -> str:
    uv = shutil.which("uv")
    if uv is None:
        pytest.fail("uv is not on PATH: the install test needs it (pip install uv)")
    return uv


@pytest.fixture(scope="module")
def wheels(tmp_path_factory) -> dict[str, Path]:
    dist = tmp_path_factory.mktemp("dist")
    subprocess.run([_uv(), "build", "--all-packages", "--wheel", "-o", str(dist), "-q"], cwd=ROOT, check=True)
    found = {p.name.split("-")[0].replace("_", "-"): p for p in dist.glob("*.whl")}
    assert set(found) == {"diffcore", *MODALITY_OF}, sorted(found)
    return found


@pytest.fixture(scope="module")
def constraints(tmp_path_factory) -> Path:
    # The same torch pair as the workspace (uv's cache then makes these installs cheap).
    path = tmp_path_factory.mktemp("c") / "constraints.txt"
    path.write_text("torch==2.9.1\ntorchaudio==2.9.1\n")
    return path


def _venv_with(tmp: Path, wheels: list[Path], constraints: Path) -> Path:
    venv = tmp / "venv"
    subprocess.run([_uv(), "venv", "-q", "--python", sys.executable, str(venv)], check=True)
    python = venv / "bin" / "python"
    env = {**os.environ, "VIRTUAL_ENV": str(venv)}
    env.pop("UV_PROJECT_ENVIRONMENT", None)
    subprocess.run(
        [_uv(), "pip", "install", "-q", "--python", str(python), "-c", str(constraints), *map(str, wheels)],
        check=True,
        env=env,
    )
    return python


def _importable(python: Path, names: list[str]) -> set[str]:
    code = (
        "import importlib.util, sys; print(' '.join(n for n in sys.argv[1:] if importlib.util.find_spec(n)))"
    )
    out = subprocess.run([str(python), "-c", code, *names], capture_output=True, text=True, check=True).stdout
    return set(out.split())


@pytest.mark.parametrize("package", sorted(MODALITY_OF))
def test_modality_package_installs_alone(package, wheels, constraints, tmp_path):
    python = _venv_with(tmp_path, [wheels[package], wheels["diffcore"]], constraints)
    module = package.replace("-", "_")
    version = subprocess.run(
        [str(python), "-c", f"import {module}; print({module}.__version__)"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert version == _project_version(package)
    present = _importable(python, sorted(FIELD_LIBRARIES))
    foreign = {lib for lib in present if package not in FIELD_LIBRARIES[lib]}
    assert not foreign, (
        f"installing {package} alone brought other packages' field libraries: {sorted(foreign)}"
    )
    listing = subprocess.run(
        [str(python.parent / "diffuse"), "list"], capture_output=True, text=True, check=True
    ).stdout
    others = [m for p, m in MODALITY_OF.items() if p != package and f" {m} " in listing]
    assert f" {MODALITY_OF[package]} " in listing and not others, listing


def test_diffcore_installs_alone_with_no_modality(wheels, constraints, tmp_path):
    python = _venv_with(tmp_path, [wheels["diffcore"]], constraints)
    assert not _importable(python, sorted(FIELD_LIBRARIES))
    listing = subprocess.run(
        [str(python.parent / "diffuse"), "list"], capture_output=True, text=True, check=True
    ).stdout
    assert "No modality package is installed" in listing
