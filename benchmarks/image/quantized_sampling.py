"""Quantised sampling on digits: class accuracy and Frechet distance of torchao-quantised samples against float.

A class-conditional digits DiT (``--pipeline`` a saved one, or trained here as in ``image_full.py``: 8x8
digits, width 64, depth 4, 1,200 steps) samples ``--samples`` digits with DPM-Solver++(2M), 20 steps, CFG 2
(``diff_image.pipeline.evaluate_digits``: labels cycling 0..9, scored by the independent digits classifier
and the Frechet distance in its feature space against the test split). Each quantisation mode
(``ImageEvaluateConfig.quantize`` -> ``ImagePipeline.quantized``; ``fp8`` only on a GPU of compute capability
8.9+) is scored on the same ``--seeds`` noise seeds as the float pipeline. The noise of a metric is its
standard deviation over the float pipeline's seeds; a mode is ``within_noise`` when its mean over the seeds
is within two of those standard deviations of the float mean, for both metrics. ``sample_rel_l2``: the
relative L2 distance of the mode's samples from the float samples of the same seed.

Results: a table and ``benchmarks/results/quantized_sampling[-quick]-<device>.json``.

    python benchmarks/image/quantized_sampling.py                     # one H100, every mode, ~1 min
    python benchmarks/image/quantized_sampling.py --device cpu        # the CPU modes (int8-weight, int8, fp8-weight)
    python benchmarks/image/quantized_sampling.py --quick             # 200 training steps, 200 samples, CPU
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from diff_image.config import ImageDataConfig, ImageEvaluateConfig, ImageModelConfig, ImageTrainConfig
from diff_image.pipeline import ImagePipeline, evaluate_and_sample, train
from diffcore.device import resolve_device
from diffcore.precision.quantize import QUANTIZATIONS, fp8_unavailable_reason

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: the shared helpers
from results_io import write_result

METRICS = ("class_accuracy", "frechet")


def train_digits(out_dir: Path, steps: int, device: str) -> ImagePipeline:
    """image_full.py's digits DiT, trained for ``steps`` steps under ``out_dir``."""
    base = ImageTrainConfig().train
    cfg = ImageTrainConfig(
        model=ImageModelConfig(backbone="dit", conditioning="class", width=64, depth=4, heads=4, patch_size=2),
        data=ImageDataConfig(dataset="digits", image_size=8), objective="v", schedule="vp-cosine",
        cond_dropout=0.1, batch_size=128,
        train=replace(base, steps=steps, warmup_steps=min(100, steps - 1), log_every=max(1, steps // 10),
                      output_dir=str(out_dir), lr=2e-3, ema_decay=0.995, device=device, seed=0, resume="auto",
                      tensorboard=False),
    )  # fmt: skip
    return train(cfg)


def score(pipe: ImagePipeline, mode: str, args: argparse.Namespace) -> dict[str, Any]:
    """The metrics of ``mode`` at every seed, and its samples at each seed."""
    per_seed, samples = [], []
    for seed in range(args.seeds):
        cfg = ImageEvaluateConfig(num_samples=args.samples, sampler="dpmpp_2m", steps=20, guidance=2.0, seed=seed,
                                  device=args.device, quantize=mode)  # fmt: skip
        metrics, images = evaluate_and_sample(pipe, cfg)
        per_seed.append({k: metrics[k] for k in METRICS})
        samples.append(images)
    summary = {k: statistics.fmean(m[k] for m in per_seed) for k in METRICS}
    spread = {k: statistics.stdev(m[k] for m in per_seed) if args.seeds > 1 else 0.0 for k in METRICS}
    return {"mode": mode, "per_seed": per_seed, "mean": summary, "std": spread, "_samples": samples}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--pipeline", type=Path, default=None, help="a saved digits pipeline (else trained here)"
    )
    parser.add_argument("--out", type=Path, default=Path("runs/quantized_sampling"), help="where to train")
    parser.add_argument("--train-steps", type=int, default=1200)
    parser.add_argument("--modes", default="int8-weight,int8,fp8-weight,fp8", help="comma-separated modes")
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--quick", action="store_true", help="200 training steps, 200 samples, 2 seeds, CPU")
    args = parser.parse_args(argv)
    if args.quick:
        args.train_steps, args.samples, args.seeds, args.device = 200, 200, 2, "cpu"
        args.out = args.out.with_name(args.out.name + "-quick")
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    bad = [m for m in modes if m not in QUANTIZATIONS[1:]]
    if bad:
        parser.error(f"--modes: expected modes of {QUANTIZATIONS[1:]}, got {bad}")
    device = resolve_device(args.device)
    skipped = {
        m: fp8_unavailable_reason(device) for m in modes if m == "fp8" and fp8_unavailable_reason(device)
    }
    modes = [m for m in modes if m not in skipped]
    start = time.perf_counter()
    if args.pipeline is not None:
        pipe = ImagePipeline.from_pretrained(args.pipeline, device=device)
    else:
        pipe = train_digits(args.out, args.train_steps, str(device))
    train_s = time.perf_counter() - start
    reference = score(pipe, "none", args)
    rows = [reference]
    for mode in modes:
        row = score(pipe, mode, args)
        row["delta"] = {k: row["mean"][k] - reference["mean"][k] for k in METRICS}
        row["within_noise"] = all(abs(row["delta"][k]) <= 2 * reference["std"][k] for k in METRICS)
        row["sample_rel_l2"] = statistics.fmean(
            float((a - b).norm() / b.norm())
            for a, b in zip(row["_samples"], reference["_samples"], strict=True)
        )
        rows.append(row)
    for row in rows:
        del row["_samples"]
    result = {
        "benchmark": "quantized_sampling",
        "device": str(device),
        "pipeline": str(args.pipeline) if args.pipeline else f"digits DiT trained {args.train_steps} steps",
        "train_seconds": train_s,
        "samples": args.samples,
        "seeds": args.seeds,
        "sampler": "dpmpp_2m, 20 steps, CFG 2",
        "skipped": skipped,
        "quick": args.quick,
        "rows": rows,
    }
    print(
        f"digits, {args.samples} samples x {args.seeds} seeds on {device} (noise: 1 std over the float seeds)"
    )
    print(f"{'mode':12} {'accuracy':>9} {'+-':>7} {'frechet':>9} {'+-':>7} {'sample dL2':>10} {'within':>7}")
    for r in rows:
        m, s = r["mean"], r["std"]
        print(f"{r['mode']:12} {m['class_accuracy']:9.4f} {s['class_accuracy']:7.4f} {m['frechet']:9.4f} "
              f"{s['frechet']:7.4f} {r.get('sample_rel_l2', 0.0):10.4f} {r.get('within_noise', '')!s:>7}")  # fmt: skip
    for mode, reason in skipped.items():
        print(f"{mode}: skipped ({reason})")
    out = write_result(result, script="quantized_sampling", variant="quick" if args.quick else None, device=device,
                       packages=("diff-image", "torchao"))  # fmt: skip
    print(f"wrote {out}")
    return result


if __name__ == "__main__":
    main()
