"""Sharded training (FSDP2) against DDP: memory per GPU, throughput and scaling with the GPU count.

Trains a DiT with diffcore's Trainer on synthetic 32x32x4 latents (rectified flow, as
``ddp_throughput.py``, whose data, objective and step clock it uses) under ``--sharding fsdp2``
(``TrainConfig.sharding``: one FSDP unit per DiT block, bf16 parameters with float32 gradient reduction and
master weights) or ``--sharding none`` (DDP), and records the peak memory of every GPU and the samples/s
after a warm-up. A run that does not fit one GPU records ``fits: false`` instead of a time.

    # DiT-XL/2: 1 GPU, then 2 GPUs with FSDP2 and with DDP (same per-GPU batch)
    python benchmarks/core/fsdp_scaling.py --model DiT_XL_2
    accelerate launch --multi_gpu --num_processes 2 benchmarks/core/fsdp_scaling.py --model DiT_XL_2 --sharding fsdp2
    accelerate launch --multi_gpu --num_processes 2 benchmarks/core/fsdp_scaling.py --model DiT_XL_2 --sharding none
    # a DiT of 2.1 B parameters (width 2048, depth 28): 1 GPU (expected not to fit), then 2, 4 and 8 GPUs
    python benchmarks/core/fsdp_scaling.py --model DiT_2B
    accelerate launch --multi_gpu --num_processes 2 benchmarks/core/fsdp_scaling.py --model DiT_2B
    # the script on CPU (a tiny DiT; two gloo processes shard it)
    torchrun --nproc_per_node 2 benchmarks/core/fsdp_scaling.py --quick

``--batch-size`` is per GPU (weak scaling: the global batch grows with the GPU count, as in practice), so
the scaling efficiency of K GPUs against the smallest count k that fits is
``(samples/s at K / K) / (samples/s at k / k)``; each run reads the results of smaller counts in
``benchmarks/results/`` and records it. Results:
``benchmarks/results/fsdp_scaling-<model>-<sharding>-b<batch>[-ac]-<K>proc-<device>.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import shutil
import sys
from pathlib import Path
from typing import Any

import accelerate
import torch
from accelerate import PartialState
from accelerate.utils import gather
from diffcore.nn import dit
from diffcore.training import TrainConfig, Trainer
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: the shared helpers
sys.path.insert(0, str(Path(__file__).resolve().parent))
from ddp_throughput import StepClock, SyntheticData, objective_for
from results_io import result_path, write_result

MODELS: dict[str, dict[str, Any]] = {
    "DiT_XL_2": {},  # 675 M parameters
    "DiT_2B": {"hidden_size": 2048, "num_heads": 16},  # DiT-XL/2's depth 28 at width 2048: 2.1 B
}
# Images per GPU by default: GPU-bound for DiT-XL/2; for the 2.1 B DiT, weights, gradients, AdamW moments and
# EMA in float32 (about 42 GB) plus its bf16 activations at this batch exceed one 80 GB GPU.
DEFAULT_BATCH = {"DiT_XL_2": 64, "DiT_2B": 96}
QUICK = {"input_size": (8, 8), "depth": 2, "hidden_size": 64, "num_heads": 4, "num_classes": 10}


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--model", choices=sorted(MODELS), default="DiT_XL_2", help="DiT_XL_2 (675 M) or DiT_2B (2.1 B)"
    )
    p.add_argument("--sharding", choices=["fsdp2", "none"], default="fsdp2", help="FSDP2, or none (DDP)")
    p.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="images per GPU per step (default: 64 DiT_XL_2, 96 DiT_2B)",
    )
    p.add_argument("--steps", type=int, default=40, help="optimizer steps in total")
    p.add_argument("--warmup", type=int, default=10, help="untimed first steps")
    p.add_argument(
        "--activation-checkpointing",
        action="store_true",
        help="recompute each block in the backward (DiTConfig.gradient_checkpointing; less activation memory)",
    )
    p.add_argument("--unfused", action="store_true", help="DiT without diffcore's fused kernels")
    p.add_argument("--workdir", default="/tmp/diffcore-fsdp-scaling", help="scratch output_dir (deleted)")
    p.add_argument("--out", default=None, help="result JSON (default benchmarks/results/...)")
    p.add_argument("--quick", action="store_true", help="tiny DiT, few steps, CPU: checks the script runs")
    return p.parse_args()


def build_model(args: argparse.Namespace) -> dit.DiT:
    overrides = dict(QUICK) if args.quick else dict(MODELS[args.model])
    if args.unfused or args.quick:
        overrides["fused_kernels"] = False
    # The DiT's own checkpointing (torch.utils.checkpoint around each block, fused form included).
    overrides["gradient_checkpointing"] = args.activation_checkpointing
    return dit.DiT_XL_2(**overrides)


def variant(args: argparse.Namespace, processes: int) -> str:
    parts = ["quick"] if args.quick else [args.model.lower()]
    parts += [args.sharding, f"b{args.batch_size}"]
    if args.activation_checkpointing:
        parts.append("ac")
    if args.unfused:
        parts.append("unfused")
    return "-".join([*parts, f"{processes}proc"])


def peak_memory_per_process(state: PartialState, gpu: bool) -> list[float] | None:
    """Every process's peak allocated GPU memory in GiB (gathered to all), or ``None`` on the CPU."""
    if not gpu:
        return None
    mine = torch.tensor([torch.cuda.max_memory_allocated() / 2**30], device=state.device)
    return gather(mine).tolist()


def main() -> None:
    args = parse_args()
    if args.quick:
        args.steps, args.warmup, args.batch_size = 6, 2, 4
    if args.batch_size is None:
        args.batch_size = DEFAULT_BATCH[args.model]
    if not 0 <= args.warmup < args.steps:
        raise SystemExit(f"--warmup: expected 0 <= warmup < steps ({args.steps}), got {args.warmup}")
    gpu = torch.cuda.is_available() and not args.quick
    torch.manual_seed(0)
    model = build_model(args)
    params = sum(p.numel() for p in model.parameters())
    shape = (model.config.in_channels, *model.config.input_size)
    data = SyntheticData(shape, size=max(64, 8 * args.batch_size), num_classes=model.config.num_classes)
    loader = DataLoader(data, batch_size=args.batch_size, shuffle=True, drop_last=True, pin_memory=gpu)
    config = TrainConfig(
        steps=args.steps,
        lr=1e-4,
        max_grad_norm=1.0,
        mixed_precision="bf16" if gpu else "no",
        ema_decay=0.9999,
        log_every=args.steps,
        checkpoint_every=None,
        keep_last=1,
        output_dir=args.workdir,
        progress_bar=False,
        tensorboard=False,
        device="auto" if gpu else "cpu",
        sharding=args.sharding,
    )
    clock = StepClock(args.warmup)
    shutil.rmtree(args.workdir, ignore_errors=True)
    result: dict[str, Any] = {
        "benchmark": "fsdp_scaling",
        "model": args.model if not args.quick else "quick",
        "parameters": params,
        "fsdp_units": sum(isinstance(m, dit.DiTBlock) for m in model.modules()),
        "batch_per_process": args.batch_size,
        "mixed_precision": config.mixed_precision,
        "activation_checkpointing": args.activation_checkpointing,
        "fused_kernels": not (args.unfused or args.quick),
        "ema": True,
        "optimizer": "AdamW (float32 moments)",
        "steps": args.steps,
        "timed_steps": args.steps - args.warmup,
    }
    state = PartialState(cpu=not gpu)  # the same process group the Trainer joins
    result.update(
        sharding=args.sharding if state.num_processes > 1 else "none (1 process)",
        num_processes=state.num_processes,
        global_batch=args.batch_size * state.num_processes,
    )
    try:  # one GPU: the model may not fit (several: an out-of-memory rank would leave the others waiting)
        trainer = Trainer(model, objective_for(model.config.num_classes), loader, config, callbacks=[clock])
        del model
        summary = trainer.fit()
    except torch.OutOfMemoryError as exc:
        result.update(fits=False, error=str(exc).splitlines()[0][:300])
    else:
        assert clock.end is not None
        start = clock.start if clock.start is not None else clock.end
        seconds = clock.end - start if args.warmup > 0 else summary.seconds
        samples = result["timed_steps"] * result["global_batch"]
        result.update(
            fits=True,
            sharded=trainer.sharded,
            seconds=seconds,
            samples_per_sec=samples / max(seconds, 1e-9),
            samples_per_sec_per_process=samples / max(seconds, 1e-9) / state.num_processes,
            final_loss=summary.final_loss,
        )
    peaks = peak_memory_per_process(state, gpu)
    result.update(
        peak_memory_gib_per_process=peaks,
        peak_memory_gib=max(peaks) if peaks else None,
        device=torch.cuda.get_device_name() if gpu else platform.processor() or "cpu",
        torch=torch.__version__,
        accelerate=accelerate.__version__,
        quick=args.quick,
    )
    if state.is_main_process:
        report(result, args, "cuda" if gpu else "cpu")
        shutil.rmtree(args.workdir, ignore_errors=True)
    state.wait_for_everyone()
    state.destroy_process_group()


def add_scaling(result: dict[str, Any], args: argparse.Namespace, device: str) -> None:
    """Speed-up and efficiency against the smallest process count with a result that fits (same settings)."""
    k = result["num_processes"]
    for smaller in range(1, k):
        path = result_path("fsdp_scaling", variant(args, smaller), device)
        if smaller == 1 and not path.is_file():  # one process is a plain run under either --sharding
            other = argparse.Namespace(
                **{**vars(args), "sharding": "none" if args.sharding == "fsdp2" else "fsdp2"}
            )
            path = result_path("fsdp_scaling", variant(other, 1), device)
        if not path.is_file():
            continue
        base = json.loads(path.read_text())
        if not base.get("fits") or not result.get("fits"):
            continue
        per_process = result["samples_per_sec_per_process"] / base["samples_per_sec_per_process"]
        result.update(
            baseline_processes=smaller, scaling_efficiency=per_process, speedup=per_process * k / smaller
        )
        return


def report(result: dict[str, Any], args: argparse.Namespace, device: str) -> None:
    name = variant(args, result["num_processes"])
    add_scaling(result, args, device)
    out = Path(args.out) if args.out else result_path("fsdp_scaling", name, device)
    write_result(
        result, script="fsdp_scaling", variant=name, device=device, packages=("accelerate",), path=out
    )
    width = max(len(k) for k in result)
    for key, value in result.items():
        shown = f"{value:.4g}" if isinstance(value, float) and math.isfinite(value) else value
        print(f"{key:<{width}}  {shown}")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
