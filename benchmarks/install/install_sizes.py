"""Installed size of each package alone: the whole environment, torch's part and the package's own part.

Builds every wheel (``uv build --all-packages --wheel``), then for each named package creates a fresh
virtual environment, installs the given torch first and then the package's wheel with diffcore's wheel
(everything else resolved from PyPI, as a user outside the workspace gets it), and sums the installed files
of each distribution (their RECORD). Prints a table and writes
benchmarks/results/install_sizes[-LABEL]-cpu.json (it runs on a CPU machine; LABEL names the torch build).

    uv run python benchmarks/install/install_sizes.py --label torch2.9.1_cuda   # every package, torch==2.9.1 from PyPI
    uv run python benchmarks/install/install_sizes.py --torch 'torch==2.9.1+cpu' \\
        --index https://download.pytorch.org/whl/cpu --label torch2.9.1_cpu    # the CPU-only install path
    uv run python benchmarks/install/install_sizes.py \\
        --torch ./torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl --label torch2.13.0_cpu  # a CPU wheel

Columns: ``total`` is every distribution in the environment (pip and setuptools excluded); ``torch part``
is torch and everything only reachable through torch's requirements (sympy, networkx, the CUDA libraries,
triton, ...), of which ``CUDA`` is nvidia-* and triton; ``own part`` is the rest: diffcore's and the
package's dependency closure without torch. ``extras`` adds extras to the package (``--extras tensorboard``
on diffcore shows what the tensorboard extra costs). Installs use uv (its cache makes repeated torch
installs cheap); the sizes are those of the installed files, whichever installer put them there.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: the shared helpers
from results_io import ROOT, write_result

PACKAGES = [
    "diffcore",
    "diff-image",
    "diff-video",
    "diff-audio",
    "diff-3d",
    "diff-protein",
    "diff-materials",
    "diff-language",
    "diff-timeseries",
]
# Prints {name: {"bytes": int, "requires": [str], "version": str}} for every distribution of the interpreter that runs it.
_DUMP = r"""
import importlib.metadata as md, json, os
out = {}
for d in md.distributions():
    size = 0
    for f in d.files or []:
        try:
            size += os.path.getsize(f.locate())
        except OSError:
            pass
    out[d.metadata["Name"]] = {"bytes": size, "requires": d.requires or [], "version": d.version}
print(json.dumps(out))
"""


def measure(package: str, wheels: dict[str, Path], torch: str, index: str | None, extras: str) -> dict:
    name = package + (f"[{extras}]" if extras else "")
    with tempfile.TemporaryDirectory(prefix="install-size-") as tmp:
        venv = Path(tmp) / "venv"
        subprocess.run(["uv", "venv", "-q", "--no-config", "--python", sys.executable, str(venv)], check=True)
        python = venv / "bin" / "python"
        env = {**os.environ, "VIRTUAL_ENV": str(venv)}
        env.pop("UV_PROJECT_ENVIRONMENT", None)
        uv_install = ["uv", "pip", "install", "-q", "--no-config", "--python", str(python)]
        first = [*uv_install, *torch.split()]
        if index:
            first += ["--index-url", index, "--extra-index-url", "https://pypi.org/simple"]
        subprocess.run(first, check=True, env=env)
        # what was installed first stays (a resolver may otherwise replace torch by a newer one from PyPI)
        dump = [str(python), "-c", _DUMP]
        before = json.loads(subprocess.run(dump, capture_output=True, text=True, check=True).stdout)
        pins = Path(tmp) / "constraints.txt"
        pins.write_text("".join(f"{k}=={v['version']}\n" for k, v in before.items() if k.startswith("torch")))
        target = f"{package}[{extras}] @ {wheels[package].as_uri()}" if extras else str(wheels[package])
        reqs = sorted({target, str(wheels["diffcore"])})
        done = subprocess.run([*uv_install, "-c", str(pins), *reqs], capture_output=True, text=True, env=env)
        if done.returncode != 0:
            why = " ".join(done.stderr.split())
            return {"package": name, "torch": torch, "error": why[:400]}
        raw = json.loads(subprocess.run(dump, capture_output=True, text=True, check=True).stdout)
    dists = {
        canonicalize_name(k): v for k, v in raw.items() if canonicalize_name(k) not in ("pip", "setuptools")
    }
    # the own part: everything reachable from outside torch's closure without passing through torch
    outside = set(dists) - _closure("torch", dists)
    rest = set().union(*(_closure(n, dists, stop={"torch"}) for n in outside))
    torch_part = set(dists) - rest
    cuda = {n for n in torch_part if n.startswith("nvidia-") or n == "triton"}
    largest = sorted(rest, key=lambda n: -dists[n]["bytes"])[:8]
    return {
        "package": name,
        "torch": dists.get("torch", {}).get("version"),
        "total_mb": _mb(dists, dists),
        "torch_part_mb": _mb(dists, torch_part),
        "cuda_mb": _mb(dists, cuda),
        "own_part_mb": _mb(dists, rest),
        "distributions": len(dists),
        "own_distributions": {n: dists[n]["version"] for n in sorted(rest)},
        "largest_own_mb": {n: round(dists[n]["bytes"] / 1e6, 1) for n in largest},
    }


def _mb(dists: dict[str, dict], names) -> float:
    return round(sum(dists[n]["bytes"] for n in names) / 1e6, 1)


def _direct(name: str, dists: dict[str, dict]) -> set[str]:
    out = set()
    for spec in dists[name]["requires"]:
        req = Requirement(spec)
        if req.marker is None or req.marker.evaluate({"extra": ""}):
            out.add(canonicalize_name(req.name))
    return out


def _closure(start: str, dists: dict[str, dict], stop: set[str] = frozenset()) -> set[str]:
    seen, todo = set(), [canonicalize_name(start)]
    while todo:
        name = todo.pop()
        if name not in seen and name in dists and name not in stop:
            seen.add(name)
            todo.extend(_direct(name, dists))
    return seen


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("packages", nargs="*", default=PACKAGES)
    p.add_argument(
        "--torch",
        default="torch==2.9.1",
        help="requirements or wheel paths installed first (space-separated)",
    )
    p.add_argument("--index", default=None, help="index for the torch requirement (e.g. PyTorch's CPU index)")
    p.add_argument("--extras", default="", help="extras of the measured package, comma-separated")
    p.add_argument("--wheels", type=Path, default=None, help="folder of built wheels (default: build them)")
    p.add_argument("--label", default="", help="result file variant: the torch build, e.g. torch2.9.1_cuda")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="install-size-dist-") as dist:
        folder = args.wheels or Path(dist)
        if args.wheels is None:
            subprocess.run(
                ["uv", "build", "--all-packages", "--wheel", "-q", "-o", dist], cwd=ROOT, check=True
            )
        wheels = {w.name.split("-")[0].replace("_", "-"): w for w in folder.glob("*.whl")}
        rows = [measure(pkg, wheels, args.torch, args.index, args.extras) for pkg in args.packages]
    print(
        f"{'package':<26}{'torch':>14}{'total MB':>10}{'torch part':>12}{'CUDA':>9}{'own part':>10}  largest own"
    )
    for r in rows:
        if "error" in r:
            print(f"{r['package']:<26}{'unresolvable with ' + r['torch']:>40}")
            continue
        big = ", ".join(f"{n} {v:g}" for n, v in list(r["largest_own_mb"].items())[:4])
        print(
            f"{r['package']:<26}{r['torch'] or '-':>14}{r['total_mb']:>10.1f}{r['torch_part_mb']:>12.1f}{r['cuda_mb']:>9.1f}"
            f"{r['own_part_mb']:>10.1f}  {big}"
        )
    payload = {"torch": args.torch, "index": args.index, "python": sys.version.split()[0], "rows": rows}
    out = write_result(payload, script="install_sizes", variant=args.label or None, device="cpu")
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
