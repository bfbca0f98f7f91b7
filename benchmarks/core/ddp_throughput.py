"""Training throughput (samples/s) of diffcore's Trainer on 1 or several processes.

Trains a model on synthetic data with diffcore's rectified-flow objective (velocity target, t = 0 data,
t = 1 noise, logit-normal t; a class-conditional DiT drops its label to the null class 10% of the time,
as in classifier-free-guidance training) and times the steps after a warm-up. Run it once per process
count and compare the JSON files:

    python benchmarks/core/ddp_throughput.py --batch-size 256                               # 1 GPU
    accelerate launch --multi_gpu --num_processes 2 benchmarks/core/ddp_throughput.py --batch-size 256  # 2 GPUs
    python benchmarks/core/ddp_throughput.py --quick                                        # tiny CPU check

``--model`` is ``mlp`` or the name of a factory in ``diffcore.nn.dit`` (``DiT_S_2``, ``DiT_B_2``,
``DiT_XL_2``, ...; default ``DiT_B_2`` on 32x32x4 latents with 1000 classes, as in DiT's ImageNet
256 setting). ``--batch-size`` is per process, so the global batch grows with the process count
(weak scaling). Results go to
``benchmarks/results/ddp_throughput-<model>-b<batch>-<eager|compile>[-ddpoptimizer][-unfused]-<K>proc-<device>.json``
(``--out`` elsewhere); a run of K > 1 processes whose 1-process file exists there records its speed-up and
scaling efficiency.
``--compile`` trains the ``torch.compile``d model (``TrainConfig.compile``); ``--unfused`` builds the DiT
without diffcore's fused kernels. DiT-B/2 at 64 images per GPU is host-bound (docs/diffcore.md): its
numbers follow the host's CPU, so compare variants on one machine, in alternating order, and judge DDP
scaling at a GPU-bound batch (``--batch-size 256``).
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import accelerate
import torch
from diffcore.pretrained import PretrainedModel
from diffcore.training import Callback, TrainConfig, Trainer
from diffcore.training.objectives import DiffusionObjective, rectified_flow
from torch import nn
from torch.utils.data import DataLoader, Dataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: the shared helpers
from results_io import result_path, write_result


@dataclass
class MLPConfig:
    dim: int = 256
    hidden: int = 1024
    depth: int = 4


class MLPDenoiser(PretrainedModel):
    """A residual MLP meeting the network contract ``net(x_t, t) -> shape of x_t`` on (B, dim) data."""

    config_class = MLPConfig

    def __init__(self, config: MLPConfig) -> None:
        super().__init__(config)
        self.inp = nn.Linear(config.dim + 1, config.hidden)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.LayerNorm(config.hidden), nn.Linear(config.hidden, config.hidden), nn.SiLU())
            for _ in range(config.depth)
        )
        self.out = nn.Linear(config.hidden, config.dim)

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        h = self.inp(torch.cat([x, t[:, None].to(x.dtype)], dim=1))
        for block in self.blocks:
            h = h + block(h)
        return self.out(h)


class SyntheticData(Dataset):
    """``size`` fixed random samples of ``shape`` with class labels (a stand-in for cached latents)."""

    def __init__(self, shape: tuple[int, ...], size: int, num_classes: int, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn((size, *shape), generator=g)
        self.y = torch.randint(0, max(num_classes, 1), (size,), generator=g)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"x": self.x[i], "y": self.y[i]}


def build_model(name: str, quick: bool, unfused: bool = False) -> tuple[nn.Module, tuple[int, ...], int]:
    """The model, its per-sample input shape and its number of classes."""
    if name.lower() == "mlp":
        cfg = MLPConfig(dim=16, hidden=32, depth=2) if quick else MLPConfig()
        return MLPDenoiser(cfg), (cfg.dim,), 0
    from diffcore.nn import dit

    factory = getattr(dit, name, None)
    if factory is None or not callable(factory):
        raise SystemExit(
            f"--model: expected 'mlp' or a factory of diffcore.nn.dit (e.g. DiT_B_2), got {name!r}"
        )
    tiny = {"input_size": (8, 8), "depth": 2, "hidden_size": 64, "num_heads": 4, "num_classes": 10}
    overrides: dict[str, Any] = dict(tiny) if quick else {}
    if unfused:
        overrides["fused_kernels"] = False
    model = factory(**overrides)
    return model, (model.config.in_channels, *model.config.input_size), model.config.num_classes


def objective_for(num_classes: int) -> DiffusionObjective:
    """Rectified flow; with classes, CFG training's label dropout to the null class ``num_classes``."""
    if num_classes == 0:
        return rectified_flow()
    return rectified_flow(cond_dropout=0.1, null_cond={"y": num_classes})


def default_model() -> str:
    try:
        from diffcore.nn import dit  # noqa: F401
    except ImportError:
        return "mlp"
    return "DiT_B_2"


class StepClock(Callback):
    """Times the optimizer steps after ``warmup`` (with a device sync at both ends)."""

    def __init__(self, warmup: int) -> None:
        self.warmup = warmup
        self.start: float | None = None
        self.end: float | None = None

    def _now(self) -> float:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        return time.perf_counter()

    def on_step_end(self, trainer: Trainer, step: int) -> None:
        if step == self.warmup:
            self.start = self._now()
        if step == trainer.config.steps:
            self.end = self._now()


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=None, help="'mlp' or a diffcore.nn.dit factory name (default DiT_B_2)")
    p.add_argument("--steps", type=int, default=60, help="optimizer steps in total")
    p.add_argument("--warmup", type=int, default=10, help="untimed first steps")
    p.add_argument("--batch-size", type=int, default=32, help="micro-batch per process")
    p.add_argument("--grad-accum", type=int, default=1)
    p.add_argument(
        "--mixed-precision", choices=["no", "bf16", "fp16"], default=None, help="default bf16 on GPU"
    )
    p.add_argument("--workdir", default="/tmp/diffcore-ddp-throughput", help="scratch output_dir (deleted)")
    p.add_argument("--out", default=None, help="result JSON (default benchmarks/results/...)")
    p.add_argument(
        "--compile", action="store_true", help="TrainConfig(compile=True): torch.compile the model (inductor)"
    )
    p.add_argument(
        "--compile-ddp-optimizer",
        action="store_true",
        help="with --compile: let dynamo's DDPOptimizer split the graph at gradient buckets (torch's default)",
    )
    p.add_argument(
        "--unfused", action="store_true", help="DiT with fused_kernels=False (plain torch ops; for A/B runs)"
    )
    p.add_argument("--quick", action="store_true", help="tiny model, few steps, CPU: checks the script runs")
    return p.parse_args()


def main() -> None:
    args = parse_args()
    name = args.model or default_model()
    if args.quick:
        args.steps, args.warmup, args.batch_size = 6, 2, 4
    if not 0 <= args.warmup < args.steps:
        raise SystemExit(f"--warmup: expected 0 <= warmup < steps ({args.steps}), got {args.warmup}")
    gpu = torch.cuda.is_available() and not args.quick
    precision = args.mixed_precision or ("bf16" if gpu else "no")
    torch.manual_seed(0)
    model, shape, num_classes = build_model(name, args.quick, args.unfused)
    params = sum(p.numel() for p in model.parameters())
    data = SyntheticData(shape, size=max(64, 8 * args.batch_size), num_classes=num_classes)
    loader = DataLoader(data, batch_size=args.batch_size, shuffle=True, drop_last=True, pin_memory=gpu)
    config = TrainConfig(
        steps=args.steps,
        lr=1e-4,
        grad_accum_steps=args.grad_accum,
        max_grad_norm=1.0,
        mixed_precision=precision,
        ema_decay=0.9999,
        log_every=args.steps,
        checkpoint_every=None,
        keep_last=1,
        output_dir=args.workdir,
        progress_bar=False,
        tensorboard=False,
        device="auto" if gpu else "cpu",
        compile=args.compile,
        compile_ddp_optimizer=args.compile_ddp_optimizer,
    )
    clock = StepClock(args.warmup)
    shutil.rmtree(args.workdir, ignore_errors=True)
    trainer = Trainer(model, objective_for(num_classes), loader, config, callbacks=[clock])
    acc = trainer.accelerator
    summary = trainer.fit()
    assert clock.end is not None
    start = clock.start if clock.start is not None else clock.end
    seconds = clock.end - start if args.warmup > 0 else summary.seconds
    timed = args.steps - args.warmup
    samples = timed * args.batch_size * args.grad_accum * acc.num_processes
    result = {
        "benchmark": "ddp_throughput",
        "model": name,
        "parameters": params,
        "num_processes": acc.num_processes,
        "batch_per_process": args.batch_size,
        "grad_accum_steps": args.grad_accum,
        "global_batch": args.batch_size * args.grad_accum * acc.num_processes,
        "mixed_precision": precision,
        "compile": args.compile,
        "compile_ddp_optimizer": args.compile and args.compile_ddp_optimizer,
        "fused_kernels": not args.unfused,
        "objective": "rectified_flow, logit-normal t" + (", label dropout 0.1" if num_classes else ""),
        "steps": args.steps,
        "timed_steps": timed,
        "seconds": seconds,
        "samples_per_sec": samples / max(seconds, 1e-9),
        "samples_per_sec_per_process": samples / max(seconds, 1e-9) / acc.num_processes,
        "final_loss": summary.final_loss,
        "peak_memory_gib": torch.cuda.max_memory_allocated() / 2**30 if gpu else None,
        "device": torch.cuda.get_device_name() if gpu else platform.processor() or "cpu",
        "torch": torch.__version__,
        "accelerate": accelerate.__version__,
        "quick": args.quick,
    }
    if acc.is_main_process:
        report(result, args)
        shutil.rmtree(args.workdir, ignore_errors=True)
    acc.wait_for_everyone()
    acc.end_training()


def variant(result: dict[str, Any], args: argparse.Namespace, processes: int | None = None) -> str:
    """``dit_b_2-b64-compile-2proc``: model, per-process batch, mode, DDPOptimizer, unfused, processes."""
    parts = ["quick"] if args.quick else [result["model"].lower(), f"b{result['batch_per_process']}"]
    parts.append("compile" if result["compile"] else "eager")
    if result["compile_ddp_optimizer"]:
        parts.append("ddpoptimizer")
    if not result["fused_kernels"]:
        parts.append("unfused")
    return "-".join([*parts, f"{processes or result['num_processes']}proc"])


def report(result: dict[str, Any], args: argparse.Namespace) -> None:
    device = "cpu" if result["peak_memory_gib"] is None else "cuda"
    out = Path(args.out) if args.out else result_path("ddp_throughput", variant(result, args), device)
    single = result_path("ddp_throughput", variant(result, args, processes=1), device)
    if result["num_processes"] > 1 and single.is_file():
        base = json.loads(single.read_text())
        if base.get("batch_per_process") == result["batch_per_process"]:
            speedup = result["samples_per_sec"] / base["samples_per_sec"]
            result["speedup_vs_1proc"] = speedup
            result["scaling_efficiency"] = speedup / result["num_processes"]
    name = variant(result, args)
    write_result(
        result, script="ddp_throughput", variant=name, device=device, packages=("accelerate",), path=out
    )
    width = max(len(k) for k in result)
    for key, value in result.items():
        shown = f"{value:.4g}" if isinstance(value, float) and math.isfinite(value) else value
        print(f"{key:<{width}}  {shown}")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
