"""Fine-tune a trained backbone run on a window of training times only (by default the noisiest, t in [0.7, 1]).

An experiment on where a model's balance between topologies comes from (see
``benchmarks/protein_mode_flips.py``). FrameFlow weights its translation loss ``1 / max(t, 0.1)^2``, so the
high-noise steps, where a chain's topology is chosen, get the least weight. This script continues a run
on the first ``--pool`` chains of the ``FULL`` synthetic set with ``BackboneObjectiveConfig(min_t, max_t)``,
everything else as the benchmark trains, and saves the result as a new run folder. Score it with
``protein_mode_flips.py`` and ``protein_sampling_variants.py``.

    python benchmarks/protein_high_t_finetune.py RUN_DIR --steps 300 --out runs/high_t
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import torch
from diff_protein.bench import FULL, backbone_objective_config, synthetic_chains
from diff_protein.pipeline import FitConfig, load_backbone_run, train_backbones


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a backbone run folder (run.json + model/) to start from")
    parser.add_argument("--min-t", type=float, default=0.7)
    parser.add_argument("--max-t", type=float, default=1.0)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--pool", type=int, default=256, help="first training chains to train on")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", type=Path, default=Path("runs/protein_high_t"))
    args = parser.parse_args()
    start = load_backbone_run(args.run)
    data = synthetic_chains(FULL, args.pool)
    objective = dataclasses.replace(
        backbone_objective_config(FULL), min_t=args.min_t, max_t=args.max_t, cuda_graphs=False
    )
    fit_cfg = FitConfig(steps=args.steps, batch_size=args.batch, lr=args.lr, warmup_steps=min(20, args.steps // 10),
                        cpu=args.device == "cpu", output_dir=str(args.out / "train"), log_every=max(1, args.steps // 10))  # fmt: skip
    t0 = time.perf_counter()
    run = train_backbones(data, start.model.config, fit_cfg, start.process_kind, start.process_config, objective,
                          init_from=args.run)  # fmt: skip
    seconds = time.perf_counter() - t0
    run.save(args.out / "model_run")
    info = {"start": str(args.run), "min_t": args.min_t, "max_t": args.max_t, "steps": args.steps,
            "batch": args.batch, "lr": args.lr, "pool": len(data), "device": args.device, "seconds": seconds}  # fmt: skip
    (args.out / "finetune.json").write_text(json.dumps(info, indent=2))
    print(json.dumps(info, indent=2))
    print(f"saved {args.out / 'model_run'}")


if __name__ == "__main__":
    main()
