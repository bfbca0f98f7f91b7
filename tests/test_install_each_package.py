"""Every package builds as a wheel and each modality package installs alone, bringing diffcore and its
own field libraries and nothing of another package's field (e.g. diff-audio does not bring pymatgen), nor
what sits behind an extra (tensorboard, decord). One package is also installed the way a user outside the
workspace does it, with plain pip in a `python -m venv`; diff-audio's torch / torchaudio bounds admit only
matching pairs."""

from __future__ import annotations

import os
import re
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


# import name of each field library (or library behind an extra) -> the packages allowed to bring it
FIELD_LIBRARIES = {
    "torchaudio": {"diff-audio"},
    "soundfile": {"diff-audio"},
    "decord": set(),  # diff-video[decord] only; PyAV is diff-video's default reader
    "av": {"diff-video"},
    "gsplat": {"diff-3d"},
    "biotite": {"diff-protein"},
    "pymatgen": {"diff-materials"},
    "torch_geometric": {"diff-materials"},
    "smact": {"diff-materials"},
    "matminer": {"diff-materials"},
    "transformers": {"diff-image"},  # diffcore[text]: only where a package imports it
    "sentencepiece": {"diff-image"},
    "tokenizers": {"diff-image", "diff-language"},
    "sklearn": {"diff-image", "diff-video", "diff-materials"},  # diff-materials: through matminer
    "statsmodels": {"diff-timeseries"},
    "tensorboard": set(),  # diffcore[tensorboard] only
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

# The one allowed dependency between modality packages (docs/architecture.md): diff-3d uses diff-image as its 2D
# prior, so installing diff-3d brings diff-image, its field libraries and its command.
REQUIRES = {"diff-3d": ["diff-image"]}

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
    needed = REQUIRES.get(package, [])
    python = _venv_with(
        tmp_path, [wheels[package], *(wheels[p] for p in needed), wheels["diffcore"]], constraints
    )
    module = package.replace("-", "_")
    version = subprocess.run(
        [str(python), "-c", f"import {module}; print({module}.__version__)"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert version == _project_version(package)
    present = _importable(python, sorted(FIELD_LIBRARIES))
    foreign = {lib for lib in present if not FIELD_LIBRARIES[lib] & {package, *needed}}
    assert not foreign, (
        f"installing {package} alone brought other packages' field libraries or extras: {sorted(foreign)}"
    )
    listing = subprocess.run(
        [str(python.parent / "diffuse"), "list"], capture_output=True, text=True, check=True
    ).stdout
    others = [m for p, m in MODALITY_OF.items() if p not in (package, *needed) and f" {m} " in listing]
    assert f" {MODALITY_OF[package]} " in listing and not others, listing


def test_diffcore_installs_alone_with_no_modality(wheels, constraints, tmp_path):
    python = _venv_with(tmp_path, [wheels["diffcore"]], constraints)
    assert not _importable(python, sorted(FIELD_LIBRARIES))
    listing = subprocess.run(
        [str(python.parent / "diffuse"), "list"], capture_output=True, text=True, check=True
    ).stdout
    assert "No modality package is installed" in listing


def _distributions(python: Path) -> set[str]:
    code = "import importlib.metadata as m; print(' '.join(d.metadata['Name'] for d in m.distributions()))"
    out = subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=True).stdout
    return {re.sub(r"[-_.]+", "-", n).lower() for n in out.split()}


_TRAIN_WITH_DEFAULTS = """
import sys, torch
from diffcore.training import TrainConfig, Trainer, read_run_log
from torch.utils.data import DataLoader, TensorDataset
model = torch.nn.Linear(2, 2)
loader = DataLoader(TensorDataset(torch.randn(8, 2)), batch_size=4)
cfg = TrainConfig(steps=2, log_every=1, ema_decay=None, checkpoint_every=None, progress_bar=False,
                  device="cpu", output_dir=sys.argv[1])  # tensorboard=True, the default
Trainer(model, lambda m, b, generator=None: m(b[0]).pow(2).mean(), loader, cfg).fit()
print(len(read_run_log(sys.argv[1])))
"""


def test_plain_pip_installs_diff_language_from_wheels(wheels, tmp_path):
    """The README's way outside the workspace: a fresh `python -m venv`, then plain pip on the two wheels
    (pip takes diffcore from its wheel, as it would from ./packages/diffcore, and resolves the rest).

    torch and its own dependencies are put in first, by uv from its cache: through pip they would be a
    download of GBs (on Linux, the CUDA libraries) on every CI run, and a user installs torch first anyway
    on the CPU-only path (README). Everything else is resolved and installed by pip from the index.
    diff-language imports no text encoder and no TensorBoard, so neither may come with it, and its Trainer
    must run with TrainConfig's defaults (tensorboard on) without tensorboard installed."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "UV_PROJECT_ENVIRONMENT")}
    subprocess.run(
        [_uv(), "pip", "install", "-q", "--no-config", "--python", str(python), "torch==2.9.1"],
        check=True,
        env=env,
    )
    pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, str(wheels["diffcore"]), str(wheels["diff-language"])], check=True, env=env)
    subprocess.run([str(python), "-m", "pip", "check"], check=True, env=env)
    present = _distributions(python)
    assert {"diffcore", "diff-language", "torch", "tokenizers", "accelerate", "sympy"} <= present
    unwanted = {"transformers", "sentencepiece", "tensorboard", "grpcio", "protobuf"} & present
    assert not unwanted, f"plain pip install of diff-language brought {sorted(unwanted)}"
    listing = subprocess.run(
        [str(venv / "bin" / "diffuse"), "list"], capture_output=True, text=True, check=True
    ).stdout
    assert " language " in listing, listing
    run = subprocess.run(
        [str(python), "-c", _TRAIN_WITH_DEFAULTS, str(tmp_path / "run")], capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.split()[-1] == "2"  # both steps logged to log.jsonl
    assert "pip install 'diffcore[tensorboard]'" in run.stderr


@pytest.mark.parametrize(
    ("torch_pin", "want"),
    [(None, "2.11"), ("torch==2.9.1", "2.9"), ("torch==2.10.0", "2.10"), ("torch>=2.12", None)],
)
def test_diff_audio_pairs_torch_and_torchaudio_of_one_minor(torch_pin, want, wheels, tmp_path):
    """torchaudio is built for one torch minor, but 2.11.0 declares no torch and 2.11.1 only torch>=2.11:
    diff-audio's bounds must leave a resolver no mismatched pair (before them, torch==2.9.1 resolved
    with torchaudio 2.11.0, and a free resolution took torch 2.15 with torchaudio 2.11.1)."""
    reqs = tmp_path / "requirements.in"
    reqs.write_text("\n".join([str(wheels["diff-audio"]), str(wheels["diffcore"]), torch_pin or ""]) + "\n")
    out = subprocess.run(
        [_uv(), "pip", "compile", "-q", "--no-config", "--no-header", "--no-annotate", str(reqs)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    if want is None:
        assert out.returncode != 0, out.stdout
        return
    assert out.returncode == 0, out.stderr
    pins = dict(re.findall(r"^(torch|torchaudio)==(\d+\.\d+)\.", out.stdout, flags=re.M))
    assert pins == {"torch": want, "torchaudio": want}, out.stdout


def test_diffcore_with_the_ui_extra_alone_serves_the_web_ui(wheels, constraints, tmp_path):
    """``pip install diffcore[ui]`` is enough for ``diffuse serve``: the wheel ships the page and its assets, and
    with no modality installed the editor offers the core's nodes only."""
    import json
    import urllib.request

    python = _venv_with(tmp_path, [f"diffcore[ui] @ {wheels['diffcore'].as_uri()}"], constraints)
    proc = subprocess.Popen(
        [str(python.with_name("diffuse")), "serve", "--port", "0", "--root", str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        url = proc.stdout.readline().split()[2]
        pages = {p: urllib.request.urlopen(url + p).read() for p in ("", "static/app.js", "static/app.css")}
        assert b"/static/app.js" in pages[""] and b"function renderNodes" in pages["static/app.js"]
        names = {n["name"] for n in json.loads(urllib.request.urlopen(url + "api/nodes").read())}
        assert {"sampler", "guidance", "prompt", "lora", "save.image"} <= names
        assert not any(n.startswith("image.") for n in names)
    finally:
        proc.terminate()
        proc.wait(timeout=20)
