"""CPU learning curve of the shapes text-to-image model: caption adherence against training steps.

A small MMDiT (width 96, depth 2, patch 2) on the 16x16 shapes set (``--image-size 32``: patch 4), probed with
:class:`diff_image.pipeline.ShapesAdherenceProbe` every ``--probe-every`` steps, then evaluated like the GPU
benchmark (``diff_image.bench.shapes_benchmark``). It shows that the data, model and sampler can learn the
task before a GPU run is spent on it; it does not aim at the GPU targets.

    OMP_NUM_THREADS=2 uv run python benchmarks/image/image_shapes_curve.py --steps 1500 --probe-every 300  # the committed curve
    OMP_NUM_THREADS=2 uv run python benchmarks/image/image_shapes_curve.py --quick     # seconds: checks the script

Prints the curve and writes benchmarks/results/image_shapes_curve[-quick]-cpu.json.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from diff_image.bench import BenchSettings, shapes_benchmark

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: the shared helpers
from results_io import write_result


def settings_for(steps: int, probe_every: int, quick: bool, image_size: int) -> BenchSettings:
    return BenchSettings(
        shapes_steps=steps, shapes_width=64 if quick else 96, shapes_depth=1 if quick else 2,
        shapes_patch=2 if image_size <= 16 else 4, shapes_image_size=image_size,
        shapes_batch=8 if quick else 32, shapes_lr=1e-3, shapes_warmup=min(50, steps // 4),
        shapes_ema=0.99, shapes_length=64 if quick else 10_000, shapes_eval=4 if quick else 32,
        shapes_sample_steps=4 if quick else 20, shapes_guidances=(4.0,), shapes_probe_every=probe_every,
        device="cpu",
    )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="Seconds-long run that checks the script.")
    parser.add_argument("--steps", type=int, default=300, help="Training steps.")
    parser.add_argument("--probe-every", type=int, default=75, help="Steps between adherence probes.")
    parser.add_argument(
        "--image-size", type=int, default=16, help="Scene side in pixels (16: patch 2; larger: patch 4)."
    )
    parser.add_argument("--out", type=Path, default=Path("runs/image_shapes_curve"), help="Run folder.")
    args = parser.parse_args()
    steps, every = (4, 2) if args.quick else (args.steps, args.probe_every)
    start = time.perf_counter()
    _, metrics, _ = shapes_benchmark(args.out, settings_for(steps, every, args.quick, args.image_size))
    metrics["total_seconds"] = time.perf_counter() - start
    print(f"{'step':>6s} {'one-object':>11s} {'two-object':>11s} {'colour found (one)':>19s}")
    for key in sorted((k for k in metrics if k.endswith("_one_object") and "probe_step" in k and "colours" not in k),
                      key=lambda k: int(k.split("probe_step")[1].split("_")[0])):  # fmt: skip
        step = key.split("probe_step")[1].split("_")[0]
        colour = metrics[key.replace("_one_object", "_colours_found_one_object")]
        print(
            f"{step:>6s} {metrics[key]:11.3f} {metrics[key.replace('one_object', 'two_object')]:11.3f} {colour:19.3f}"
        )
    print(f"{steps:>6d} {metrics['shapes_adherence_one_object']:11.3f} {metrics['shapes_adherence_two_object']:11.3f}"
          f" {metrics['shapes_colours_found_one_object']:19.3f}  (final, test captions)")  # fmt: skip
    report = {
        "quick": args.quick,
        "device": "cpu",
        "steps": steps,
        "image_size": args.image_size,
        "metrics": metrics,
    }
    variant = "quick" if args.quick else None
    path = write_result(
        report, script="image_shapes_curve", variant=variant, device="cpu", packages=("diff-image",)
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
