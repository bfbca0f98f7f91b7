"""diff-3d benchmark: class-conditional splat latent diffusion, the issue's quick (CPU) setting.

    OMP_NUM_THREADS=1 uv run python benchmarks/3d/splat_bench.py --quick     # CPU, <= 5 min on two cores
    uv run python benchmarks/3d/splat_bench.py --tiny                        # seconds: checks the code path

Quick: fits a few primitives to 3DGS with the CPU renderer (render PSNR, target >= 25 dB), trains a tiny L3DG
latent model (a 3D-conv VAE of 16^3 voxel grids) on Gaussians sampled on the primitives' surfaces (100 s autoencoder,
60 s denoiser), writes PLY files, a render grid and a turntable, and records COV / MMD-CD / 1-NNA and class
adherence. Writes
benchmarks/results/splat_bench[-quick|-tiny]-cpu.json (files under --out). The GPU run is splat_full.py.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

from diff_3d.bench import TARGETS_QUICK, BenchSettings, run_benchmark

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: the shared helpers
from results_io import write_result


def tiny_settings() -> BenchSettings:
    """The quick run's code path in seconds."""
    return replace(BenchSettings.quick(), num_objects=12, budget=64, field_width=32, queries=64, width=32, depth=1,
                   autoencoder_steps=3, steps=3, samples=4, reference=4, points=32, sample_steps=2,
                   classifier_steps=2, image_size=16, views=1, fit_objects=1, fit_steps=2, fit_size=16,
                   write_samples=2, grid_size=8, conv_channels=8, latent_channels=4)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--quick", action="store_true", help="The CPU benchmark (diffuse bench 3d --quick).")
    group.add_argument("--tiny", action="store_true", help="Seconds on CPU: checks the code path.")
    parser.add_argument(
        "--out", type=Path, default=Path("runs/splat_bench"), help="Folder for the run and samples."
    )
    args = parser.parse_args()
    settings = BenchSettings.quick() if args.quick else tiny_settings()
    shutil.rmtree(args.out, ignore_errors=True)
    start = time.perf_counter()
    metrics, files = run_benchmark(args.out, settings)
    wall = time.perf_counter() - start
    print(f"{'metric':28s} {'value':>10s}  target")
    for name, value in sorted(metrics.items()):
        op, goal = TARGETS_QUICK.get(name, ("", ""))
        print(f"{name:28s} {value:10.4g}  {op} {goal}")
    print(f"{'wall_seconds':28s} {wall:10.1f}")
    result = {"settings": asdict(settings), "metrics": metrics, "wall_seconds": wall,
              "targets": {k: list(v) for k, v in TARGETS_QUICK.items()}, "files": files, "out": str(args.out)}  # fmt: skip
    variant = "quick" if args.quick else "tiny"
    path = write_result(result, script="splat_bench", variant=variant, device="cpu", packages=("diff-3d",))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
