"""diff-image full benchmark (one GPU, < 25 minutes on an H100): every target of the diff-image issue.

1. digits: class-conditional DiT, CFG samples (w = 2) -> class accuracy by the independent classifier
   (target >= 0.97); Frechet distance in its feature space within 2x of the train-vs-test floor (the better of
   the guided and the unguided samples, ``digits_frechet_ratio_best``; both are reported).
2. shapes: text-to-image MMDiT with a CLIP text encoder trained from scratch, never shown the colour red ->
   caption adherence on one-object (target >= 0.90) and two-object captions with relations (target >= 0.70).
3. LoRA: an adapter trained on 8 images of red objects -> red appears in >= half of the samples for "a red ..."
   prompts, where the base shows it in none.

    uv run python benchmarks/image/image_full.py            # GPU: digits, shapes and LoRA
    uv run python benchmarks/image/image_full.py --skip-digits --probe-every 2000 --out runs/image_full  # shapes + LoRA
    uv run python benchmarks/image/image_full.py --quick    # tiny CPU run that checks the script works

Prints a table and writes benchmarks/results/image_full[-shapes|-quick]-<device>.json (``-shapes`` with
``--skip-digits``; grids under --out). The trained shapes pipeline is saved in ``<out>/shapes_run/pipeline`` (``ImagePipeline.from_pretrained``).
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import asdict
from pathlib import Path

import torch
from diff_image.bench import BenchSettings, digits_benchmark, lora_benchmark, shapes_benchmark

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: the shared helpers
from results_io import write_result

TARGETS = {
    "digits_class_accuracy": (">=", 0.97),
    "digits_frechet_ratio_best": ("<=", 2.0),
    "shapes_adherence_one_object": (">=", 0.90),
    "shapes_adherence_two_object": (">=", 0.70),
    "lora_concept_rate_lora": (">=", 0.5),
    "lora_concept_rate_base": ("<=", 0.0),
}


def quick_settings() -> BenchSettings:
    return BenchSettings(
        digits_steps=20, digits_width=32, digits_depth=1, digits_samples=50,
        shapes_steps=4, shapes_width=64, shapes_depth=1, shapes_batch=8, shapes_eval=4, shapes_length=64,
        shapes_sample_steps=4, shapes_guidances=(2.0, 4.0), shapes_train_budget_s=3600.0, lora_steps=2,
        device="cpu",
    )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help="Tiny CPU run (checks the script, not the targets)."
    )
    parser.add_argument(
        "--out", type=Path, default=Path("runs/image_full"), help="Folder for runs and grids."
    )
    parser.add_argument("--skip-digits", action="store_true", help="Run only shapes + LoRA.")
    parser.add_argument("--shapes-steps", type=int, default=None, help="Override the shapes training steps.")
    parser.add_argument(
        "--shapes-budget-s",
        type=float,
        default=None,
        help="Seconds of shapes training (steps from a timed calibration, at most --shapes-steps; 0: exactly "
        "--shapes-steps).",
    )
    parser.add_argument(
        "--probe-every",
        type=int,
        default=None,
        help="Measure shapes adherence every N training steps (0: never).",
    )
    args = parser.parse_args()
    settings = quick_settings() if args.quick else BenchSettings.full()
    if args.shapes_steps is not None:
        settings.shapes_steps = args.shapes_steps
    if args.shapes_budget_s is not None:
        settings.shapes_train_budget_s = args.shapes_budget_s
    if args.probe_every is not None:
        settings.shapes_probe_every = args.probe_every
    elif args.quick:
        settings.shapes_probe_every = 2
    if not args.quick and not torch.cuda.is_available():
        parser.error("the full benchmark needs a GPU; use --quick on a CPU")
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    metrics: dict[str, float] = {}
    if not args.skip_digits:
        metrics.update(digits_benchmark(args.out, settings)[0])
    shapes_start = time.perf_counter()
    pipe, m, _ = shapes_benchmark(args.out, settings)
    metrics.update(m)
    lora_start = time.perf_counter()
    metrics.update(lora_benchmark(pipe, args.out, settings)[0])
    end = time.perf_counter()
    metrics.update(shapes_total_seconds=lora_start - shapes_start, lora_seconds=end - lora_start)
    metrics["shapes_and_lora_seconds"] = end - shapes_start
    metrics["total_seconds"] = end - start
    device = torch.cuda.get_device_name() if torch.cuda.is_available() and not args.quick else "cpu"
    report = {
        "quick": args.quick,
        "device": device,
        "skip_digits": args.skip_digits,
        "settings": asdict(settings),
        "shapes_pipeline": str(args.out / "shapes_run" / "pipeline"),
        "metrics": metrics,
        "targets": {},
    }
    print(f"{'metric':34s} {'value':>10s}  target")
    for key, value in sorted(metrics.items()):
        target = TARGETS.get(key)
        met = None
        if target is not None:
            op, bound = target
            met = value >= bound if op == ">=" else value <= bound
            report["targets"][key] = {"target": f"{op} {bound}", "met": met}
        note = "" if target is None else f"{target[0]} {target[1]}  {'met' if met else 'NOT met'}"
        print(f"{key:34s} {value:10.4f}  {note}")
    variant = "quick" if args.quick else ("shapes" if args.skip_digits else None)
    where = "cpu" if args.quick else "cuda"
    path = write_result(report, script="image_full", variant=variant, device=where, packages=("diff-image",))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
