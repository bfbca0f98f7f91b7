"""diff-video benchmark: text-to-video on moving shapes, the issue's quick (CPU) or GPU targets.

    uv run python benchmarks/video/video_bench.py --quick                       # CPU, <= 5 min on two free cores
    uv run python benchmarks/video/video_bench.py --out runs/video_bench        # one H100, ~6 min (270 s training)
    uv run python benchmarks/video/video_bench.py --out runs/video_bench --resume   # continue a cut GPU run
    uv run python benchmarks/video/video_bench.py --tiny                        # seconds: checks the GPU path on CPU

Quick: 8 frames of 16x16, 4-direction captions; target motion-direction adherence >= 0.6 (chance 0.25).
Full: 16 frames of 32x32, 8 directions, 6 colours, 4 shapes; targets of the issue (direction, colour, shape
adherence >= 0.9, persistence >= 0.95, per-frame Frechet within 2x of its floor, image-to-video PSNR >= 35 dB and
direction adherence >= 0.8, 4x extension persistence >= 0.9). Prints a table; writes
benchmarks/results/video_bench[-quick|-tiny]-<device>.json (clips under --out).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

from diff_video.bench import TARGETS_FULL, TARGETS_QUICK, BenchSettings, run_benchmark

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: the shared helpers
from results_io import write_result


def tiny_settings() -> BenchSettings:
    """The full run's code path (feature net, 4x extension, data workers off; bf16 and compile off on CPU) in seconds."""
    return replace(BenchSettings.full(), frames=4, size=16, width=48, depth=2, heads=4, batch_size=4, steps=3,
                   train_seconds=60.0, samples=4, sample_steps=2, feature_steps=2, extend_factor=2,
                   mixed_precision="no", compile=False, device="cpu", num_workers=0)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--quick", action="store_true", help="The CPU benchmark (diffuse bench video --quick)."
    )
    group.add_argument("--tiny", action="store_true", help="Seconds on CPU: checks the full run's code path.")
    parser.add_argument(
        "--out", type=Path, default=Path("runs/video_bench"), help="Folder for the run and clips."
    )
    parser.add_argument(
        "--resume", action="store_true", help="Continue the run in --out from its last checkpoint."
    )
    parser.add_argument(
        "--train-seconds", type=float, default=None, help="Override the training wall-time guard."
    )
    args = parser.parse_args()
    settings = BenchSettings.quick() if args.quick else tiny_settings() if args.tiny else BenchSettings.full()
    if args.train_seconds is not None:
        settings.train_seconds = args.train_seconds
    if not args.resume:
        shutil.rmtree(args.out, ignore_errors=True)
    start = time.perf_counter()
    metrics, files = run_benchmark(args.out, settings, resume=args.resume)
    wall = time.perf_counter() - start
    targets = TARGETS_QUICK if args.quick else TARGETS_FULL
    print(f"{'metric':36s} {'value':>10s}  target")
    for name, value in sorted(metrics.items()):
        op, goal = targets.get(name, ("", ""))
        print(f"{name:36s} {value:10.4g}  {op} {goal}")
    print(f"{'wall_seconds':36s} {wall:10.1f}")
    variant = "quick" if args.quick else "tiny" if args.tiny else None
    result = {"settings": asdict(settings), "metrics": metrics, "wall_seconds": wall,
              "targets": {k: list(v) for k, v in targets.items()}, "files": files, "out": str(args.out)}  # fmt: skip
    path = write_result(
        result, script="video_bench", variant=variant, device=settings.device, packages=("diff-video",)
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
