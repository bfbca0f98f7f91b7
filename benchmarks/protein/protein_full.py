"""diff-protein on a GPU: FrameFlow backbones and TaxDiff sequences against the issue's targets.

Trains the IPA frame denoiser (FrameFlow: SE(3) flow matching with FrameFlow's auxiliary losses and
rotations sampled along the linear schedule sped up 20x; FrameDiff with --process diffusion) on the synthetic
backbone set and the taxonomy-conditioned sequence denoiser on the profile families, then reports every
target metric: CA-CA bonds within 0.1 A of 3.80 A (target >= 98 %), clash-free backbones (>= 90 %),
helix/strand/loop fractions within 0.1 of the training set, label adherence of CFG samples by an
independently trained classifier (>= 90 %) and by the exact Bayes classifier. With --real-dir it also
trains the same network on windows of the chains of a folder of PDB/mmCIF/BinaryCIF files (64-128 residues)
and reports the same backbone metrics against those chains (prefix ``real_``). Chain size is reported
twice: ``rg_ratio`` (Rg over the globule law 2.2 L^0.38; the synthetic training set itself scores ~1.7)
and ``rg_vs_ref`` (the same over the training set's value; 1 = as compact as the training chains).

    uv run python benchmarks/protein/protein_full.py --real-dir /work/shared/data/proteins   # one H100, ~6.5 min
    uv run python benchmarks/protein/protein_full.py --quick --real-dir /work/shared/data/proteins  # CPU smoke run

Prints a table and writes benchmarks/results/protein_full[-quick]-<device>.json (``--results`` elsewhere;
models, PDB and FASTA under --out).

Training seeds: ``--seeds 0 1 2`` trains and evaluates once per seed and reports each metric's mean and standard
error over the seeds (``metrics_se``; result file ``protein_full-seeds-<device>.json``). On one H100 in under six
minutes: ``--backbones-only --seeds 0 1 2 --set backbone_max_seconds=60 --set num_samples=128``.

Longer training than one command may run: ``--set backbone_legs=3`` plans the backbone training for three
times ``backbone_max_seconds``; each call trains one leg and stops with a checkpoint in
``--out/backbone_train`` (about 21 MB at the FULL sizes), and the call that finishes the plan evaluates. On
the device machine, carry that folder back between calls (e.g. ``tar cf - backbone_train | split -b 15M``).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np
import torch
from diff_protein.bench import FULL, QUICK, BenchSettings, backbone_train_config, run_bench
from diff_protein.data.windows import ChainWindows, WindowConfig
from diff_protein.pipeline import evaluate_backbones, sample_backbones, train_backbones
from diffcore.config import apply_overrides
from diffcore.device import resolve_device
from diffcore.rng import make_generator

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: the shared helpers
from results_io import write_result


def real_data_metrics(folder: Path, settings: BenchSettings, out: Path, steps: int) -> dict[str, float]:
    """Train on windows of the real chains of ``folder`` (``ChainWindows``: split at chain breaks, 64-128
    residues; 48 on CPU) and evaluate samples against them. ``protein_real_chains.py`` is the longer run."""
    cpu = settings.device == "cpu"
    window = WindowConfig(min_length=48 if cpu else 64, max_length=48 if cpu else 128, stride=16)
    data = ChainWindows(folder, window)
    if len(data) == 0:
        raise SystemExit(f"--real-dir: no usable chains in {folder}")
    config = backbone_train_config(settings, steps, out / "real_train")
    config = dataclasses.replace(
        config,
        batch_size=min(8, len(data)),
        init_from=None,
        train=dataclasses.replace(config.train, max_seconds=None if cpu else 60.0),
    )
    t0 = time.perf_counter()
    pipe = train_backbones(config, data)
    train_s = time.perf_counter() - t0
    device = resolve_device(settings.device)
    # Every training length, twice (quick: the shortest, twice); sample_backbones batches them together.
    lengths = sorted(set(pipe.lengths))[: 1 if cpu else None]
    t0 = time.perf_counter()
    samples = sample_backbones(
        pipe,
        [n for n in lengths for _ in range(2)],
        steps=settings.sample_steps,
        generator=make_generator(settings.seed, device),
        device=device,
    )
    sample_s = time.perf_counter() - t0
    reference = [data[i]["atoms"].numpy() for i in range(len(data))]
    metrics = {f"real_{k}": v for k, v in evaluate_backbones(samples, reference).items()}
    metrics |= {"real_num_chains": float(len(data)), "real_train_s": train_s, "real_sample_s": sample_s}
    return metrics


def seed_statistics(per_seed: list[dict[str, float]]) -> tuple[dict[str, float], dict[str, float]]:
    """Mean and standard error (sample standard deviation over sqrt(n); NaN for one seed) of every metric
    present in all runs of ``per_seed``."""
    keys = [k for k in per_seed[0] if all(k in m for m in per_seed)]
    mean, se = {}, {}
    for k in keys:
        values = np.array([m[k] for m in per_seed], dtype=np.float64)
        mean[k] = float(values.mean())
        se[k] = float(values.std(ddof=1) / np.sqrt(len(values))) if len(values) > 1 else float("nan")
    return mean, se


TABLE_KEYS = (
    "ca_ca_valid",
    "ca_ca_mean",
    "clash_free",
    "rg_ratio",
    "rg_vs_ref",
    "helix",
    "strand",
    "coil",
    "sse_max_abs_diff",
)


def print_table(metrics: dict[str, float]) -> None:
    """The backbone metrics (synthetic and real rows) and the sequence adherence, as Markdown."""
    print("| set | " + " | ".join(TABLE_KEYS) + " |")
    print("| --- |" + " --- |" * len(TABLE_KEYS))
    prefixes = [
        k[: -len("ca_ca_valid")]
        for k in metrics
        if k.endswith("ca_ca_valid") and not k.endswith("met_ca_ca_valid")  # not the met_* flags
    ]
    for prefix in sorted(p for p in prefixes if not p.startswith("motif_")):
        name = {"backbone_": "synthetic", "real_": "real"}.get(prefix, prefix.removeprefix("backbone_")[:-1])
        row = " | ".join(f"{metrics[prefix + k]:.3f}" for k in TABLE_KEYS)
        print(f"| {name} | {row} |")
    print("| targets | >= 0.98 | 3.80 | >= 0.90 | ref | ~1 | ref | ref | ref | <= 0.10 |")
    for key in sorted(metrics):
        if key.endswith(("adherence_classifier", "adherence_bayes")) or key.startswith(
            ("motif_", "backbone_ref_")
        ):
            print(f"{key}: {metrics[key]:.3f}")
    for key in ("backbone_train_s", "backbone_sample_s", "sequence_train_s", "real_train_s", "real_sample_s"):
        if key in metrics:
            print(f"{key}: {metrics[key]:.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help="tiny CPU run (the `diffuse bench protein --quick` settings)"
    )
    parser.add_argument("--process", choices=["diffusion", "flow"], default=None, help="default: flow")
    parser.add_argument("--backbone-steps", type=int, default=None, help="override the training steps")
    parser.add_argument("--seq-steps", type=int, default=None)
    parser.add_argument(
        "--real-dir",
        "--real-data",
        dest="real_dir",
        type=Path,
        default=None,
        help="folder of PDB/mmCIF/BinaryCIF files to train and evaluate on as well (optional)",
    )
    parser.add_argument("--real-steps", type=int, default=1000)
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="override a BenchSettings field, e.g. --set num_blocks=6 (repeatable; values are read as YAML)",
    )
    parser.add_argument("--backbones-only", action="store_true", help="skip the sequence part")
    parser.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        default=None,
        metavar="SEED",
        help="train and evaluate once per seed (each under --out/seed<N>) and report every metric's mean and "
        "standard error over the seeds (metrics_se); one leg per seed only",
    )
    parser.add_argument("--out", type=Path, default=Path("runs/protein_full"))
    parser.add_argument(
        "--results", type=Path, default=None, help="result JSON (default benchmarks/results/protein_full-...)"
    )
    args = parser.parse_args()

    settings = QUICK if args.quick else FULL
    overrides: dict[str, object] = {}
    if args.process:
        overrides["process"] = args.process
    if args.backbone_steps:
        overrides["backbone_steps"] = args.backbone_steps
    if args.seq_steps:
        overrides["seq_steps"] = args.seq_steps
    if not torch.cuda.is_available():
        overrides["device"] = "cpu"
    settings = apply_overrides(dataclasses.replace(settings, **overrides), args.overrides)
    t0 = time.perf_counter()
    if args.seeds:
        if settings.backbone_legs > 1:
            raise SystemExit(
                "error: --seeds: runs of several legs (backbone_legs > 1) take one seed per call"
            )
        per_seed = []
        for seed in args.seeds:
            run = run_bench(args.out / f"seed{seed}", dataclasses.replace(settings, seed=seed),
                            sequences=not args.backbones_only)  # fmt: skip
            print(f"seed {seed}: {run.summary}")
            per_seed.append(dict(run.metrics))
        metrics, metrics_se = seed_statistics(per_seed)
        summary = f"{len(args.seeds)} seeds: " + ", ".join(
            f"{k.removeprefix('backbone_')} {metrics[k]:.3f} +- {metrics_se[k]:.3f}"
            for k in ("backbone_ca_ca_valid", "backbone_clash_free", "backbone_sse_max_abs_diff")
            if k in metrics
        )
        extra = {"seeds": args.seeds, "metrics_se": metrics_se, "per_seed": per_seed}
    else:
        result = run_bench(args.out, settings, sequences=not args.backbones_only)
        metrics, summary, extra = dict(result.metrics), result.summary, {}
        if metrics.get("backbone_unfinished"):  # one leg of --set backbone_legs=N: nothing to evaluate yet
            print(result.summary)
            print(f"carry {args.out / 'backbone_train'} (checkpoint and plan) into the next call's --out")
            return
    if args.real_dir is not None:
        metrics |= real_data_metrics(args.real_dir, settings, args.out, 20 if args.quick else args.real_steps)
    report = {
        "seconds": time.perf_counter() - t0,
        "settings": dataclasses.asdict(settings),
        "summary": summary,
        "metrics": metrics,
        **extra,
    }
    device = "cuda" if settings.device != "cpu" and torch.cuda.is_available() else "cpu"
    variant = "-".join(v for v in ("quick" if args.quick else "", "seeds" if args.seeds else "") if v) or None
    path = write_result(
        report,
        script="protein_full",
        variant=variant,
        device=device,
        packages=("diff-protein",),
        path=args.results,
    )
    print_table(metrics)
    print(summary)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
