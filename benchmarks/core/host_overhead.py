"""Host (Python and launch) cost of an eager DiT training step, with and without diffcore's fused kernels.

A training step is *host-bound* when the CPU takes longer to issue its kernels than the GPU takes to run
them: the GPU then idles between launches, and faster kernels buy nothing. Small models at small batches
in eager mode (no ``torch.compile``) are the usual case. For each variant this script times

- ``host ms``: issuing ``--steps`` steps with no device sync in between (the CPU's time per step),
- ``wall ms``: the same steps until the GPU has finished them,
- ``GPU ms``: the sum of the CUDA kernels' own times per step (``torch.profiler``; 0 on CPU),

and lists the operators with the most CPU self time in a profiled step. ``wall ~ host > GPU`` means
host-bound. Each step is the eps-prediction loss on random 32x32x4 latents, bf16 autocast over float32
weights, fused AdamW (the setting of ``dit_training_throughput.py``, eager). Results: a table on stdout
and ``benchmarks/results/host_overhead-<model>-b<batch>-<device>.json`` (``-quick-cpu``).

    python benchmarks/core/host_overhead.py --model B/2 --batch 64    # host_overhead-b2-b64-h100.json
    python benchmarks/core/host_overhead.py --quick     # tiny model on CPU: checks that the script runs
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from diffcore.nn.dit import DiT, DiTConfig, dit_config
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: the shared helpers
from results_io import write_result

VARIANTS = {"fused": True, "unfused": False}  # DiTConfig.fused_kernels


def build_config(args: argparse.Namespace) -> DiTConfig:
    if args.quick:
        return dit_config("S", 2, depth=2, hidden_size=64, num_heads=4, input_size=(8, 8), num_classes=10)
    size, _, patch = args.model.partition("/")
    return dit_config(size, int(patch), input_size=(32, 32), in_channels=4, learn_sigma=True)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(cfg: DiTConfig, args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    torch.manual_seed(0)
    model = DiT(cfg).to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device.type == "cuda")
    x0 = torch.randn(args.batch, cfg.in_channels, *cfg.input_size, device=device)
    y = torch.randint(0, cfg.num_classes, (args.batch,), device=device)

    def step() -> None:
        t = torch.rand(args.batch, device=device)
        eps = torch.randn_like(x0)
        angle = (t * math.pi / 2)[:, None, None, None]
        with torch.autocast(device.type, dtype=torch.bfloat16):
            out = model(torch.cos(angle) * x0 + torch.sin(angle) * eps, t, y=y)
        F.mse_loss(out[:, : cfg.in_channels].float(), eps).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    for _ in range(args.warmup):  # includes Triton autotuning and cuBLASLt plan timing on first use
        step()
    synchronize(device)
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    host = time.perf_counter() - start
    synchronize(device)
    wall = time.perf_counter() - start

    profiled = 3
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        for _ in range(profiled):
            step()
        synchronize(device)
    events = prof.key_averages()
    # Kernel rows only (operator rows repeat their kernels' time as their own "self device" time).
    gpu_us = sum(e.self_device_time_total for e in events if e.device_type == torch.autograd.DeviceType.CUDA)
    cpu_rows = sorted(
        (e for e in events if e.device_type == torch.autograd.DeviceType.CPU),
        key=lambda e: -e.self_cpu_time_total,
    )
    return {
        "host_ms_per_step": 1000 * host / args.steps,
        "wall_ms_per_step": 1000 * wall / args.steps,
        "gpu_kernel_ms_per_step": gpu_us / 1000 / profiled,
        "top_cpu_self_time": [
            {
                "name": e.key[:100],
                "self_cpu_us_per_step": e.self_cpu_time_total / profiled,
                "calls_per_step": e.count / profiled,
            }
            for e in cpu_rows[: args.top]
        ],
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="B/2", help="DiT size/patch, e.g. B/2, XL/2")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=20, help="timed steps")
    parser.add_argument("--warmup", type=int, default=10, help="untimed first steps")
    parser.add_argument("--top", type=int, default=15, help="operators listed by CPU self time")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--quick", action="store_true", help="tiny model on CPU, 3 steps")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.quick:
        args.batch, args.steps, args.warmup = 4, 3, 1
    for name in ("batch", "steps", "warmup"):
        if getattr(args, name) < 1:
            parser.error(f"--{name}: expected a positive integer, got {getattr(args, name)}")
    device = torch.device("cuda" if torch.cuda.is_available() and not args.quick else "cpu")
    cfg = build_config(args)
    rows = []
    for variant in args.variants:
        stats = measure(dataclasses.replace(cfg, fused_kernels=VARIANTS[variant]), args, device)
        rows.append({"variant": variant, **stats})
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    print(f"DiT-{'tiny' if args.quick else args.model}, batch {args.batch}, eager, on {where}")
    print(f"{'variant':<10}{'host ms':>10}{'wall ms':>10}{'GPU ms':>10}")
    for r in rows:
        print(
            f"{r['variant']:<10}{r['host_ms_per_step']:>10.1f}{r['wall_ms_per_step']:>10.1f}"
            f"{r['gpu_kernel_ms_per_step']:>10.1f}"
        )
    for r in rows:
        print(f"\n{r['variant']}: operators by CPU self time (us per step, calls per step)")
        for op in r["top_cpu_self_time"]:
            print(f"  {op['self_cpu_us_per_step']:>9.0f}  {op['calls_per_step']:>6.0f}  {op['name']}")
    result = {
        "benchmark": "host_overhead",
        "model": "tiny" if args.quick else args.model,
        "batch": args.batch,
        "steps": args.steps,
        "device": where,
        "torch": torch.__version__,
        "quick": args.quick,
        "rows": rows,
    }
    variant = "quick" if args.quick else f"{args.model.lower().replace('/', '')}-b{args.batch}"
    out = write_result(result, script="host_overhead", variant=variant, device=device, path=args.out)
    print(f"\nwrote {out}")
    return result


if __name__ == "__main__":
    main()
