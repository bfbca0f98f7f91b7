"""Where benchmark results go and what every result file says about its run.

One file per measurement, ``benchmarks/results/<script>[-<variant>]-<device>.json`` (device: ``h100``,
``h200``, ``cpu``, ...), holding the current state of that measurement; git keeps the older versions.
:func:`write_result` puts a ``meta`` header first: script, variant, device name, torch / Python / package
versions, git commit, date (UTC) and the command line, so a file says how to reproduce it.

Every benchmark script imports this module; scripts in ``benchmarks/<area>/`` put ``benchmarks/`` on the
path first (two lines at their top), so ``python benchmarks/<area>/<script>.py`` works from the repository
root with nothing installed beyond the workspace.
"""

from __future__ import annotations

import datetime as _dt
import platform
import re
import shlex
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

BENCHMARKS = Path(__file__).resolve().parent
RESULTS = BENCHMARKS / "results"
ROOT = BENCHMARKS.parent

_GPU_TAGS = ("h200", "h100", "a100", "l40s", "a10g", "v100", "t4")


def device_tag(device: Any = None) -> str:
    """A short device name for result file names: ``cpu``, or the GPU model (``h100``, ``h200``, ...).

    ``device``: ``None`` (CUDA device 0 if CUDA is available, else ``cpu``), a ``torch.device`` or a string
    (``"cuda"``, ``"cuda:1"``, ``"cpu"``, or a GPU name such as ``"NVIDIA H100 80GB HBM3"``)."""
    name = _device_name(device)
    if name == "cpu":
        return "cpu"
    low = name.lower()
    for tag in _GPU_TAGS:
        if tag in low:
            return tag
    return re.sub(r"[^a-z0-9]+", "", low.replace("nvidia", "")) or "gpu"


def _device_name(device: Any = None) -> str:
    """``cpu`` or the CUDA device's name."""
    text = "auto" if device is None else str(device)
    if text == "cpu" or text.startswith("cpu:"):
        return "cpu"
    if text == "auto" or text.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            return "cpu"
        index = int(text.split(":")[1]) if ":" in text else 0
        return torch.cuda.get_device_name(index)
    return text  # already a device name


def result_path(script: str, variant: str | None = None, device: Any = None) -> Path:
    """``benchmarks/results/<script>[-<variant>]-<device>.json``; ``device`` as in :func:`device_tag`."""
    if not re.fullmatch(r"[a-z0-9_]+", script):
        raise ValueError(f"script: expected a script's file stem (lower case, digits, _), got {script!r}")
    if variant is not None and not re.fullmatch(r"[a-z0-9][a-z0-9_.-]*", variant):
        raise ValueError(f"variant: expected lower case, digits and . _ -, got {variant!r}")
    parts = [script, *([variant] if variant else []), device_tag(device)]
    return RESULTS / ("-".join(parts) + ".json")


def run_header(
    script: str, variant: str | None = None, device: Any = None, packages: tuple[str, ...] = ()
) -> dict[str, Any]:
    """The ``meta`` header of a result file (see the module docstring)."""
    versions = {"python": platform.python_version()}
    for name in ("torch", "diffcore", *packages):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    name = _device_name(device)
    return {
        "script": script,
        "variant": variant,
        "device": device_tag(name),
        "device_name": _cpu_name() if name == "cpu" else name,
        "versions": versions,
        "git_commit": _git_commit(),
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "command": shlex.join([sys.executable.rsplit("/", 1)[-1], *sys.argv]),
    }


def write_result(
    result: dict[str, Any],
    *,
    script: str,
    variant: str | None = None,
    device: Any = None,
    packages: tuple[str, ...] = (),
    path: Path | str | None = None,
) -> Path:
    """Write ``result`` with a ``meta`` header (:func:`run_header`) to ``path`` (default
    :func:`result_path`), atomically; returns the path. A ``meta`` key already in ``result`` is replaced."""
    from diffcore.io import write_json

    out = Path(path) if path is not None else result_path(script, variant, device)
    out.parent.mkdir(parents=True, exist_ok=True)
    body = {k: v for k, v in result.items() if k != "meta"}
    write_json({"meta": run_header(script, variant, device, packages), **body}, out)
    return out


def _git_commit() -> str | None:
    """The repository's HEAD commit (``+dirty`` when tracked files differ), or None outside a git checkout."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("+dirty" if dirty else "")


def _cpu_name() -> str:
    """The CPU's model name (Linux ``/proc/cpuinfo``), else ``platform.processor()``, else ``cpu``."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "cpu"
