"""Fine-tune a trained backbone run on a window of training times only (by default the noisiest, t in [0.7, 1]).

An experiment on where a model's balance between topologies comes from (see
``benchmarks/protein/protein_mode_flips.py``). FrameFlow weights its translation loss ``1 / max(t, 0.1)^2``, so the
high-noise steps, where a chain's topology is chosen, get the least weight. This script continues a run
on the first ``--pool`` chains of the ``FULL`` synthetic set with ``BackboneObjectiveConfig(min_t, max_t)``,
everything else as the benchmark trains, and saves the result as a new pipeline folder. Score it with
``protein_mode_flips.py`` and ``protein_sampling_variants.py``. Writes the run's settings and time to
``benchmarks/results/protein_high_t_finetune[-<tag>]-<device>.json``; the committed
``protein_high_t_finetune-44k-cpu.json`` also holds those two scripts' scores of the model before and after.

    python benchmarks/protein/protein_high_t_finetune.py runs/p44k/backbone_model --steps 300 --out runs/high_t
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import torch
from diff_protein.bench import FULL, backbone_objective_config, synthetic_chains
from diff_protein.config import ProteinTrainConfig, default_train_config
from diff_protein.pipeline import ProteinPipeline, train_backbones
from diffcore.io import write_json

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: the shared helpers
from results_io import write_result

SAMPLING = ("rotation_schedule", "rotation_rate", "rotation_rate_t_max")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "run", type=Path, help="a saved backbone pipeline (or a diff-protein 0.1 run folder) to start from"
    )
    parser.add_argument("--min-t", type=float, default=0.7)
    parser.add_argument("--max-t", type=float, default=1.0)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--pool", type=int, default=256, help="first training chains to train on")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", type=Path, default=Path("runs/protein_high_t"), help="run folder")
    parser.add_argument("--tag", default=None, help="result file variant, e.g. the model: 44k")
    args = parser.parse_args()
    start = ProteinPipeline.from_pretrained(args.run)
    assert start.backbone is not None, f"{args.run} holds a {start.what} pipeline"
    data = synthetic_chains(FULL, args.pool)
    objective = dataclasses.replace(
        backbone_objective_config(FULL), min_t=args.min_t, max_t=args.max_t, cuda_graphs=False
    )
    warmup = min(20, args.steps // 10)
    train = default_train_config(
        steps=args.steps, lr=args.lr, warmup_steps=warmup, device=args.device, output_dir=str(args.out / "train"),
        lr_schedule="cosine" if args.steps > 2 * warmup + 10 else "constant", log_every=max(1, args.steps // 10),
    )  # fmt: skip
    sampling = {k: v for k, v in start.process_config.items() if k in SAMPLING}  # kept as the run had them
    config = ProteinTrainConfig(process=start.process_kind, batch_size=args.batch,  # type: ignore[arg-type]
                                backbone=start.backbone.config, init_from=str(args.run), train=train, **sampling)  # fmt: skip
    t0 = time.perf_counter()
    pipe = train_backbones(config, data, objective=objective)
    seconds = time.perf_counter() - t0
    pipe.save_pretrained(args.out / "model_run")
    info = {"start": str(args.run), "min_t": args.min_t, "max_t": args.max_t, "steps": args.steps,
            "batch": args.batch, "lr": args.lr, "pool": len(data), "device": args.device, "seconds": seconds}  # fmt: skip
    write_json(info, args.out / "finetune.json")  # beside the model it describes
    print(json.dumps(info, indent=2))
    write_result({"finetune": info}, script="protein_high_t_finetune", variant=args.tag, device=args.device,
                 packages=("diff-protein",))  # fmt: skip
    print(f"saved {args.out / 'model_run'}")


if __name__ == "__main__":
    main()
