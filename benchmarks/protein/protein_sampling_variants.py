"""Sample one trained backbone run with several samplers and compare the issue's metrics.

Loads a saved backbone pipeline (``--out/backbone_model`` of ``benchmarks/protein/protein_full.py``), draws the sample lengths as
the benchmark does (``diff_protein.bench.draw_sample_lengths``: 2 samples per drawn training length, ``--seed``, 0 by default), and for each variant samples and scores
CA-CA validity, clash-free fraction and the secondary-structure gap against a fresh synthetic reference
set of the ``FULL`` topologies (``--reference-chains``, 1024: the benchmark's training set). Variants: ``base`` (the run's own sampler), ``steps200``,
``clash_guided`` (:class:`diff_protein.diffusion.sampling.ClashGuidance`, defaults) and any
``--variant NAME:FIELD=VALUE,...`` (``steps``, ``rotation_rate``, or a ``ClashGuidance`` field prefixed
``guide_``). Prints a table and writes ``benchmarks/results/protein_sampling_variants[-<tag>]-seed<N>-<device>.json``
per seed (``--out`` for one seed elsewhere).

    python benchmarks/protein/protein_sampling_variants.py runs/p64k/backbone_model --num-samples 256 \
        --seed 0 1 2 --variant base: --tag 64k          # protein_sampling_variants-64k-seed{0,1,2}-h100.json
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from diff_protein.bench import FULL, draw_sample_lengths, synthetic_chains
from diff_protein.diffusion.sampling import ClashGuidance
from diff_protein.metrics import clash_count
from diff_protein.pipeline import ProteinPipeline, evaluate_backbones, sample_backbones
from diffcore.rng import make_generator

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: the shared helpers
from results_io import result_path, write_result

DEFAULT_VARIANTS = ("base:", "steps200:steps=200", "clash_guided:guide_t_min=0.1")


def parse_variant(text: str) -> tuple[str, dict[str, float]]:
    """``NAME:FIELD=VALUE,...`` -> ``(NAME, {FIELD: VALUE})``."""
    name, _, rest = text.partition(":")
    fields = {}
    for item in filter(None, rest.split(",")):
        key, _, value = item.partition("=")
        if not value:
            raise SystemExit(f"--variant: expected NAME:FIELD=VALUE,..., got {text!r}")
        fields[key] = float(value)
    return name, fields


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a saved backbone pipeline (or a diff-protein 0.1 run folder)")
    parser.add_argument("--num-samples", type=int, default=64)
    parser.add_argument("--reference-chains", type=int, default=1024, help="synthetic reference set size")
    parser.add_argument("--variant", action="append", default=None, help="NAME:FIELD=VALUE,... (repeatable)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--tag", default=None, help="result file variant before -seedN, e.g. the model: 64k")
    parser.add_argument(
        "--out", type=Path, default=None, help="result JSON of a single seed (default: see above)"
    )
    parser.add_argument(
        "--seed", type=int, nargs="+", default=[0],
        help="seeds of the drawn lengths and of the sampling noise; several write one JSON each (OUT-seedN.json)",
    )  # fmt: skip
    args = parser.parse_args()
    run = ProteinPipeline.from_pretrained(args.run)
    base_config = dict(run.process_config)
    reference = [b.atoms.numpy() for b in synthetic_chains(FULL, args.reference_chains).items]
    if args.out is not None and len(args.seed) > 1:
        parser.error("--out: names one file; several seeds write their default files")
    for seed in args.seed:
        variant = "-".join(p for p in (args.tag, f"seed{seed}") if p)
        out = args.out or result_path("protein_sampling_variants", variant, args.device)
        sample_variants(run, base_config, reference, args, seed, out, variant)


def sample_variants(
    run, base_config: dict, reference: list, args: argparse.Namespace, seed: int, out: Path, variant: str
) -> None:
    """Sample and score every variant on one draw of lengths and noise (``seed``); write ``out``."""
    lengths = draw_sample_lengths(run.lengths, args.num_samples, seed)
    results = {}
    for name, fields in map(parse_variant, args.variant or DEFAULT_VARIANTS):
        guide = {k.removeprefix("guide_"): v for k, v in fields.items() if k.startswith("guide_")}
        guide = {k: int(v) if k in ("iterations", "min_separation") else v for k, v in guide.items()}
        run.process_config = base_config | {k: v for k, v in fields.items() if k not in ("steps",)
                                            and not k.startswith("guide_")}  # fmt: skip
        t0 = time.perf_counter()
        samples = sample_backbones(
            run, lengths, steps=int(fields.get("steps", 100)), generator=make_generator(seed, args.device),
            device=args.device,
            clash_guidance=ClashGuidance(**guide) if guide else None,
        )  # fmt: skip
        metrics = evaluate_backbones(samples, reference)
        metrics["sample_s"] = time.perf_counter() - t0
        metrics["clashing_pairs"] = float(sum(clash_count(s) for s in samples))
        results[name] = {"fields": fields, "metrics": metrics}
        print(f"{name:>16}: CA-CA valid {metrics['ca_ca_valid']:.3f}  clash-free {metrics['clash_free']:.3f}  "
              f"SSE gap {metrics['sse_max_abs_diff']:.3f}  rg_vs_ref {metrics['rg_vs_ref']:.2f}  "
              f"({metrics['sample_s']:.0f} s)", flush=True)  # fmt: skip
    report = {"run": str(args.run), "seed": seed, "num_samples": len(lengths), "lengths": lengths,
              "variants": results}  # fmt: skip
    write_result(report, script="protein_sampling_variants", variant=variant, device=args.device,
                 packages=("diff-protein",), path=out)  # fmt: skip
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
