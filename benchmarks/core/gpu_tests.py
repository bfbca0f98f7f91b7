"""The CUDA-only tests (``pytest -m gpu``) of every installed package, run on a GPU, with the log kept.

Every test that needs CUDA carries the ``gpu`` marker (``tests/test_gpu_markers.py`` enforces it), so this runs
all of them: the fused kernels, CUDA graphs, the Trainer's no-sync step, FlexAttention, sync-free sampling, the
bf16 language model, the protein CUDA-graph objective. The log (pytest's summary, the device, torch and driver)
goes to ``benchmarks/results/gpu_tests-<device>.txt`` with a JSON header line (``results_io.run_header``).

    python benchmarks/core/gpu_tests.py                 # on a GPU machine, from the repository root
    python benchmarks/core/gpu_tests.py -- -k kernels   # extra pytest arguments after --

Exits with pytest's status (0: every gpu test passed).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: the shared helpers
from results_io import ROOT, result_path, run_header


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--timeout", type=int, default=300, help="per-test timeout in seconds (pytest-timeout)"
    )
    parser.add_argument("--out", type=Path, default=None, help="log file (default: the results folder)")
    parser.add_argument("pytest_args", nargs="*", help="extra pytest arguments (after --)")
    args = parser.parse_args()
    import torch

    if not torch.cuda.is_available():
        parser.error("needs a CUDA device: every test this runs is marked gpu")
    folders = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "packages").glob("*/tests"))
    command = [
        sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-rs", "-p", "no:cacheprovider",
        f"--timeout={args.timeout}", *folders, *args.pytest_args,
    ]  # fmt: skip
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    header = run_header("gpu_tests", device="cuda")
    header["pytest_exit_status"] = done.returncode
    header["driver"] = _driver()
    out = args.out or result_path("gpu_tests", device="cuda").with_suffix(".txt")
    from diffcore.io import write_text

    write_text(json.dumps(header) + "\n" + done.stdout + done.stderr, out)
    print(done.stdout[-3000:])
    print(f"wrote {out}")
    return done.returncode


def _driver() -> str | None:
    try:
        return subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


if __name__ == "__main__":
    raise SystemExit(main())
