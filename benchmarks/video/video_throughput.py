"""Training throughput of the spacetime DiT, full 3D attention vs factorised spatial/temporal (Latte variant 1).

Latte-L-sized (depth 24, width 1024, 16 heads) on 16 frames of 32x32x4 latents with 1x2x2 patches (4,096 tokens per
clip), bf16 autocast, AdamW, optionally ``torch.compile``. Reports per attention form: clips/s, tokens/s, ms/step,
peak memory and

    MFU = 3 x forward FLOPs per clip x clips/s / peak bf16 FLOP/s

(forward FLOPs counted by ``diffcore.nn.flops.forward_cost``, attention included; the peak is the best measured
``n^3`` bf16 matmul on the device, and the H100 SXM datasheet's 989 TFLOP/s is reported beside it).

    uv run python benchmarks/video/video_throughput.py                  # one H100, ~2 minutes
    uv run python benchmarks/video/video_throughput.py --tiny           # CPU, seconds: checks the script

Writes benchmarks/results/video_throughput[-tiny]-<device>.json.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from diff_video.models import VideoDiT, video_dit_config
from diffcore.nn.flops import forward_cost, training_flops_per_sample
from diffcore.rng import seeded

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: the shared helpers
from results_io import write_result

H100_BF16_DENSE = 989.4e12


def peak_matmul_flops(device: torch.device, n: int, iters: int) -> float:
    """Best measured FLOP/s of an ``n x n`` bf16 matmul on ``device`` (the MFU denominator)."""
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    best = 0.0
    for _ in range(3):
        _sync(device)
        start = time.perf_counter()
        for _ in range(iters):
            a @ b
        _sync(device)
        best = max(best, 2 * n**3 * iters / (time.perf_counter() - start))
    return best


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(attention: str, args: argparse.Namespace, device: torch.device) -> dict[str, float]:
    frames, size, channels = args.frames, args.size, 4
    cfg = video_dit_config(
        args.model, input_size=(frames, size, size), patch_size=(1, 2, 2), in_channels=channels,
        attention=attention, gradient_checkpointing=args.checkpointing,
    )  # fmt: skip
    if args.tiny:
        cfg = video_dit_config("S", input_size=(frames, size, size), patch_size=(1, 2, 2), in_channels=channels,
                               attention=attention, depth=2, hidden_size=48, num_heads=4)  # fmt: skip
    with seeded(0):
        model = VideoDiT(cfg).to(device)
    x = torch.randn(args.batch, channels, frames, size, size, device=device)
    t = torch.rand(args.batch, device=device)
    with torch.autocast(device.type, dtype=torch.bfloat16):
        flops = forward_cost(model, x[:1], t[:1]).flops
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device.type == "cuda")
    step_fn = torch.compile(model) if args.compile else model

    def step() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16):
            loss = (step_fn(x, t).float() - x).square().mean()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    for _ in range(args.warmup):
        step()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    _sync(device)
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    _sync(device)
    seconds = (time.perf_counter() - start) / args.steps
    tokens = frames * (size // 2) ** 2
    clips_per_s = args.batch / seconds
    return {
        "params_m": sum(p.numel() for p in model.parameters()) / 1e6,
        "forward_gflops_per_clip": flops / 1e9,
        "ms_per_step": 1000 * seconds,
        "clips_per_s": clips_per_s,
        "tokens_per_s": clips_per_s * tokens,
        "train_tflops_per_s": training_flops_per_sample(flops, 1) * clips_per_s / 1e12,
        "peak_memory_gib": torch.cuda.max_memory_allocated(device) / 2**30
        if device.type == "cuda"
        else float("nan"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tiny", action="store_true", help="A tiny model on the CPU (checks the script).")
    parser.add_argument("--model", default="L", help="Latte size: S, B, L or XL.")
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=32, help="Latent height and width.")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--no-compile", dest="compile", action="store_false", help="Run eagerly.")
    parser.add_argument("--checkpointing", action="store_true", help="Gradient checkpointing.")
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() and not args.tiny else "cpu")
    if args.tiny:
        args.frames, args.size, args.batch, args.steps, args.warmup, args.compile = 4, 8, 2, 2, 1, False
    peak = peak_matmul_flops(device, 256 if args.tiny else 8192, 2 if args.tiny else 50)
    rows = {}
    for attention in ("full", "factorised"):
        rows[attention] = stats = measure(attention, args, device)
        stats["mfu_measured_peak"] = stats["train_tflops_per_s"] * 1e12 / peak
        stats["mfu_h100_datasheet"] = stats["train_tflops_per_s"] * 1e12 / H100_BF16_DENSE
        print(f"done {attention}", flush=True)
    print(f"peak bf16 matmul: {peak / 1e12:.1f} TFLOP/s")
    print(
        f"{'attention':11} {'params(M)':>9} {'GF/clip':>8} {'ms/step':>8} {'tokens/s':>10} {'MFU':>6} {'mem GiB':>8}"
    )
    for name, r in rows.items():
        print(f"{name:11} {r['params_m']:9.1f} {r['forward_gflops_per_clip']:8.1f} {r['ms_per_step']:8.1f} "
              f"{r['tokens_per_s']:10.0f} {100 * r['mfu_measured_peak']:5.1f}% {r['peak_memory_gib']:8.2f}")  # fmt: skip
    result = {"settings": vars(args), "peak_bf16_tflops": peak / 1e12, "results": rows}
    path = write_result(result, script="video_throughput", variant="tiny" if args.tiny else None, device=device,
                        packages=("diff-video",))  # fmt: skip
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
