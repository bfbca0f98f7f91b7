"""Structural validity of ab initio samples of trained pipelines, over sampling seeds: a measurement with a
standard error (the quick bench draws 32 samples once), for comparing sampler settings on one network and
networks trained with different settings (``materials_quick.py --set ...``) on the same sampler.

    uv run python benchmarks/materials/materials_sampler.py --pipeline runs/materials-quick/pipeline \\
        --label default --variant base:steps=200,step_lr=0 --variant corrector:steps=200,step_lr=1e-5

For each pipeline and variant: ``--samples`` crystals for each of ``--seeds``; prints the mean share of
structurally valid samples (all of them: none is dropped), its standard error over the seeds, and the share
of the invalid ones whose composition is not ABX3-like (``A B X3`` with three atoms of one element); writes
benchmarks/results/materials_sampler-<device>[-<variant>].json.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

from diff_materials import metrics as M
from diff_materials.pipeline import CrystalPipeline, generate
from diffcore.rng import make_generator

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: the shared helpers
from results_io import write_result


def _variant(text: str) -> tuple[str, dict[str, float]]:
    name, sep, rest = text.partition(":")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"--variant: expected NAME:steps=S,step_lr=L, got {text!r}")
    kwargs: dict[str, float] = {}
    for item in filter(None, rest.split(",")):
        key, eq, value = item.partition("=")
        if key not in ("steps", "step_lr") or not eq:
            raise argparse.ArgumentTypeError(f"--variant: keys are steps and step_lr, got {item!r}")
        kwargs[key] = int(value) if key == "steps" else float(value)
    return name, kwargs


def _abx3_like(numbers) -> bool:
    counts = sorted(Counter(numbers.tolist()).values())
    return len(numbers) == 5 and counts == [1, 1, 3]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--pipeline", type=Path, action="append", required=True, help="a saved pipeline (repeat)"
    )
    parser.add_argument("--label", action="append", default=[], help="a name for each --pipeline, in order")
    parser.add_argument("--variant", type=_variant, action="append", default=[],
                        help="NAME:steps=S,step_lr=L (repeat; default base:steps=200,step_lr=0)")  # fmt: skip
    parser.add_argument("--samples", type=int, default=128, help="crystals per seed")
    parser.add_argument("--seeds", default="1,2,3", help="comma-separated sampling seeds")
    parser.add_argument("--result-variant", default=None, help="suffix of the result file name")
    args = parser.parse_args()
    labels = args.label or [p.parent.name for p in args.pipeline]
    if len(labels) != len(args.pipeline):
        parser.error(f"--label: expected one per --pipeline ({len(args.pipeline)}), got {len(labels)}")
    variants = args.variant or [("base", {"steps": 200, "step_lr": 0.0})]
    seeds = [int(s) for s in args.seeds.split(",")]
    if args.samples < 1 or len(seeds) < 2:
        parser.error("--samples: expected >= 1 and --seeds: at least two seeds (for a standard error)")
    rows = []
    for label, path in zip(labels, args.pipeline):
        pipe = CrystalPipeline.from_pretrained(path)
        for name, kwargs in variants:
            t0 = time.perf_counter()
            shares, odd, invalid = [], 0, 0
            for seed in seeds:
                samples = generate(pipe, args.samples, generator=make_generator(seed, "cpu"), progress=False,
                                   **kwargs)  # fmt: skip
                ok = [M.structure_valid(c) for c in samples]
                shares.append(sum(ok) / len(samples))
                bad = [c for c, v in zip(samples, ok) if not v]
                invalid += len(bad)
                odd += sum(not _abx3_like(c.numbers) for c in bad)
            mean = statistics.fmean(shares)
            se = statistics.stdev(shares) / math.sqrt(len(shares))
            row = {"pipeline": label, "variant": name, **kwargs, "structure_validity": mean,
                   "structure_validity_se": se, "per_seed": shares, "samples_per_seed": args.samples,
                   "seeds": seeds, "invalid_not_abx3": odd / invalid if invalid else 0.0,
                   "seconds": time.perf_counter() - t0}  # fmt: skip
            rows.append(row)
            print(f"{label:14s} {name:12s} validity {mean:.4f} +- {se:.4f}  per seed {[round(s, 4) for s in shares]}"
                  f"  invalid not ABX3 {row['invalid_not_abx3']:.2f}  {row['seconds']:.0f} s", flush=True)  # fmt: skip
    path = write_result({"rows": rows}, script="materials_sampler", variant=args.result_variant, device="cpu",
                        packages=("diff-materials",))  # fmt: skip
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
