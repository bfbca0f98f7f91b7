"""diff-image full benchmark (one GPU, < 25 minutes on an H100): every target of the diff-image issue.

1. digits: class-conditional DiT, CFG samples (w = 2) -> class accuracy by the independent classifier
   (target >= 0.97); Frechet distance in its feature space within 2x of the train-vs-test floor (the better of
   the guided and the unguided samples, ``digits_frechet_ratio_best``; both are reported).
2. shapes: text-to-image MMDiT with a CLIP text encoder trained from scratch, never shown the colour red ->
   caption adherence on one-object (target >= 0.90) and two-object captions with relations (target >= 0.70).
3. LoRA: an adapter trained on 8 images of red objects -> red appears in >= half of the samples for "a red ..."
   prompts, where the base shows it in none.

    uv run python benchmarks/image_full.py            # GPU
    uv run python benchmarks/image_full.py --quick    # tiny CPU run that checks the script works

Prints a table and writes benchmarks/results/image_full[_quick].json (and grids under --out).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from diff_image.bench import BenchSettings, digits_benchmark, lora_benchmark, shapes_benchmark

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
        shapes_steps=3, shapes_width=64, shapes_depth=1, shapes_batch=8, shapes_eval=4,
        lora_steps=2, device="cpu",
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
    args = parser.parse_args()
    settings = quick_settings() if args.quick else BenchSettings.full()
    if args.shapes_steps is not None:
        settings.shapes_steps = args.shapes_steps
    if not args.quick and not torch.cuda.is_available():
        parser.error("the full benchmark needs a GPU; use --quick on a CPU")
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    metrics: dict[str, float] = {}
    if not args.skip_digits:
        metrics.update(digits_benchmark(args.out, settings)[0])
    pipe, m, _ = shapes_benchmark(args.out, settings)
    metrics.update(m)
    metrics.update(lora_benchmark(pipe, args.out, settings)[0])
    metrics["total_seconds"] = time.perf_counter() - start
    device = torch.cuda.get_device_name() if torch.cuda.is_available() and not args.quick else "cpu"
    report = {"quick": args.quick, "device": device, "metrics": metrics, "targets": {}}
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
    results = Path(__file__).parent / "results"
    results.mkdir(exist_ok=True)
    path = results / f"image_full{'_quick' if args.quick else ''}.json"
    path.write_text(json.dumps(report, indent=2, allow_nan=True) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
