"""Float8 against bf16 training loss: the same DiT run twice on digits, step by step.

Two runs of the :class:`~diffcore.training.Trainer` with the same weights, data order, noise and times (the
Trainer seeds them from ``TrainConfig.seed``): ``bf16`` (``mixed_precision="bf16"``) and ``float8``
(the same plus ``TrainConfig.float8``, torchao float8 in the block linears). Data: the sklearn digits
(``diff_image.data.DigitsDataset``, 1,437 training images, up-sampled to 32x32, one channel, 10 classes), so
DiT-XL/2 sees 256 tokens per image as on 32x32x4 latents. Objective: rectified flow, velocity prediction,
class-conditional with 10% label dropout. ``torch.compile`` on, EMA off, AdamW lr 1e-4.

Resumable in calls of bounded length: each call trains whichever run has fewer steps for at most
``--budget`` seconds in all (the Trainer's ``max_seconds``; a stopped run writes its checkpoint and the next
call resumes it exactly), and once both have reached ``--steps`` it compares their logged losses (the mean
of each ``--log-every`` window): per window the relative difference ``|float8 - bf16| / bf16``; ``passed``
when every window after the first 10% of the steps is within ``--tolerance`` (1%). Results: a table and
``benchmarks/results/float8_loss_equivalence-<variant>-<device>.json``; the runs live under ``--out-dir``.

    # DiT-XL/2, batch 192, 2,000 steps: repeat until it prints "passed" or "failed" (about 4 calls of 5 min)
    python benchmarks/core/float8_loss_equivalence.py --model XL/2 --batch 192 --steps 2000 --budget 300
    # DiT-B/2, batch 64, 2,000 steps: one or two calls
    python benchmarks/core/float8_loss_equivalence.py --model B/2 --batch 64 --steps 2000 --budget 300
    python benchmarks/core/float8_loss_equivalence.py --quick      # tiny DiT on the CPU (float8 falls back)
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import torch
from diff_image.data import DigitsDataset
from diffcore.nn.dit import DiT, DiTConfig, dit_config
from diffcore.training import TrainConfig, Trainer
from diffcore.training.checkpoint import latest_checkpoint
from diffcore.training.objectives import DiffusionObjective
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: the shared helpers
from results_io import write_result

RUNS = ("bf16", "float8")


class Labelled(Dataset):
    """Digits as ``{"x": image (1, 32, 32), "y": label}`` items."""

    def __init__(self, size: int) -> None:
        self.data = DigitsDataset("train", size, resize="bilinear")

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        image, label = self.data[i]
        return {"x": image, "y": torch.as_tensor(label)}


def model_config(name: str, quick: bool) -> DiTConfig:
    """``XL/2`` etc. on 32x32 one-channel digits with 10 classes; a tiny DiT for ``--quick``."""
    if quick:
        return dit_config("S", 2, depth=2, hidden_size=64, num_heads=4, input_size=(8, 8), in_channels=1,
                          num_classes=10)  # fmt: skip
    size, _, patch = name.partition("/")
    return dit_config(size, int(patch), input_size=(32, 32), in_channels=1, num_classes=10)


def steps_done(run_dir: Path) -> int:
    """Optimizer steps of the newest complete checkpoint under ``run_dir`` (0 when none)."""
    latest = latest_checkpoint(run_dir / "checkpoints")
    return int(latest.name.rsplit("-", 1)[1]) if latest is not None else 0


def train_for(run: str, args: argparse.Namespace, seconds: float) -> int:
    """Continue run ``run`` for at most ``seconds``; returns its steps."""
    cfg = model_config(args.model, args.quick)
    torch.manual_seed(0)  # the same initial weights in both runs (a resume loads its own)
    model = DiT(cfg)
    objective = DiffusionObjective(
        "rectified-flow", "velocity", cond_dropout=0.1, null_cond={"y": cfg.num_classes}
    )
    loader = DataLoader(Labelled(cfg.input_size[0]), batch_size=args.batch, shuffle=True, drop_last=True,
                        pin_memory=torch.cuda.is_available())  # fmt: skip
    config = TrainConfig(
        steps=args.steps,
        lr=1e-4,
        mixed_precision="bf16",
        float8=args.recipe if run == "float8" else "none",
        ema_decay=None,
        log_every=args.log_every,
        checkpoint_every=args.checkpoint_every,
        keep_last=1,
        output_dir=str(args.out_dir / run),
        resume="auto",
        seed=0,
        compile=not args.quick,
        tensorboard=False,
        max_seconds=max(seconds, 1.0),
        device="cpu" if args.quick else "auto",
    )
    with warnings.catch_warnings():
        warnings.simplefilter("default")  # the float8 fallback's one line is shown on the CPU
        summary = Trainer(model, objective, loader, config).fit()
    return summary.steps


def read_losses(run_dir: Path) -> dict[int, float]:
    """Logged window losses by step from ``run_dir/log.jsonl``."""
    losses = {}
    for line in (run_dir / "log.jsonl").read_text().splitlines():
        record = json.loads(line)
        if "loss" in record:
            losses[int(record["step"])] = float(record["loss"])
    return losses


def compare(args: argparse.Namespace) -> dict[str, Any]:
    """Per logged window, the float8 run's loss against the bf16 run's."""
    bf16, fp8 = (read_losses(args.out_dir / run) for run in RUNS)
    steps = sorted(set(bf16) & set(fp8))
    windows = [{"step": s, "bf16": bf16[s], "float8": fp8[s], "rel_diff": abs(fp8[s] - bf16[s]) / bf16[s]}
               for s in steps]  # fmt: skip
    judged = [w for w in windows if w["step"] > 0.1 * args.steps]
    worst = max((w["rel_diff"] for w in judged), default=math.nan)
    return {
        "windows": windows,
        "judged_from_step": int(0.1 * args.steps),
        "max_rel_diff": worst,
        "mean_rel_diff": sum(w["rel_diff"] for w in judged) / max(len(judged), 1),
        "final_rel_diff": windows[-1]["rel_diff"] if windows else math.nan,
        "tolerance": args.tolerance,
        "passed": bool(judged) and worst <= args.tolerance,
    }


def main(argv: list[str] | None = None) -> dict[str, Any] | None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="XL/2", help="paper size, e.g. XL/2, B/2")
    parser.add_argument("--batch", type=int, default=192)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--recipe", default="tensorwise", choices=["tensorwise", "rowwise"])
    parser.add_argument(
        "--budget", type=float, default=300.0, help="seconds of training in this call, in all"
    )
    parser.add_argument("--log-every", type=int, default=50, help="steps per compared loss window")
    parser.add_argument("--checkpoint-every", type=int, default=500)
    parser.add_argument("--tolerance", type=float, default=0.01, help="largest relative loss difference")
    parser.add_argument("--out-dir", type=Path, default=None, help="where the two runs live")
    parser.add_argument("--quick", action="store_true", help="tiny DiT on the CPU, 20 steps")
    args = parser.parse_args(argv)
    if args.quick:
        args.batch, args.steps, args.log_every, args.checkpoint_every = 16, 20, 5, 10
    variant = "quick" if args.quick else f"{args.model.lower().replace('/', '')}-b{args.batch}-{args.recipe}"
    args.out_dir = args.out_dir or Path("runs") / f"float8_loss_equivalence-{variant}"
    start = time.perf_counter()
    while True:
        done = {run: steps_done(args.out_dir / run) for run in RUNS}
        behind = min(RUNS, key=lambda run: done[run])
        left = args.budget - (time.perf_counter() - start)
        if done[behind] >= args.steps or left < 30:
            break
        print(f"training {behind} from step {done[behind]} for at most {left:.0f} s", flush=True)
        train_for(behind, args, left)
    print(f"steps: bf16 {done['bf16']}, float8 {done['float8']} of {args.steps}", flush=True)
    if min(done.values()) < args.steps:
        print("not finished: run the same command again to continue", flush=True)
        return None
    result = {"benchmark": "float8_loss_equivalence", "model": "tiny/2" if args.quick else args.model,
              "batch": args.batch, "steps": args.steps, "recipe": args.recipe, "data": "digits 32x32 (train)",
              "quick": args.quick, **compare(args)}  # fmt: skip
    print(f"{'step':>6} {'bf16':>10} {'float8':>10} {'rel diff':>9}")
    for w in result["windows"]:
        print(f"{w['step']:6d} {w['bf16']:10.5f} {w['float8']:10.5f} {100 * w['rel_diff']:8.3f}%")
    print(f"max {100 * result['max_rel_diff']:.3f}% after step {result['judged_from_step']}: "
          f"{'passed' if result['passed'] else 'failed'} (tolerance {100 * args.tolerance:.1f}%)")  # fmt: skip
    device = "cpu" if args.quick or not torch.cuda.is_available() else "cuda"
    out = write_result(result, script="float8_loss_equivalence", variant=variant, device=device)
    print(f"wrote {out}")
    return result


if __name__ == "__main__":
    main()
