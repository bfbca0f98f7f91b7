"""DiT training throughput and MFU on one GPU: diffcore's DiT vs diffusers' DiTTransformer2DModel.

Both models get the same configuration (DiT-XL/2 and DiT-B/2 on 32x32x4 latents, 1000 classes,
learned sigma), bf16 autocast over float32 weights, fused AdamW, SDPA attention, and the same
synthetic batch; ``--compile`` wraps both in ``torch.compile``. Weights are random (throughput does
not depend on them). For each model and implementation the script reports images/s, ms/step,
peak memory and

    MFU = 3 x forward FLOPs per image x images/s / peak bf16 FLOP/s,

with forward FLOPs counted by ``torch.utils.flop_counter`` on the meta device (diffcore.nn.flops)
for our DiT (diffusers' extra per-block label/time embedders add < 0.1%) and the peak measured in
the same run with an 8192^3 bf16 matmul. MFU is also given against the H100 SXM's nominal dense peaks,
989 TFLOP/s in bf16 (``mfu_bf16_peak``) and 1979 TFLOP/s in float8 (``mfu_fp8_peak``; the float8 matmul
measured the same way, through ``torch._scaled_mm``, is in ``peak_fp8_tflops``): the FLOPs are the same
whatever precision runs them, so a float8 run's ``mfu_fp8_peak`` says how much of the float8 tensor cores it
uses. ``speedup_vs_diffusers``: images/s over diffusers' (bf16) in the same run.

Implementations (``--impls``): ``diffcore`` (the fused kernels), ``diffcore-unfused`` (left to
torch.compile), ``diffcore-float8`` and ``diffcore-float8-rowwise`` (torchao float8 training of the block
linears, :mod:`diffcore.precision.float8`; the rest in bf16), ``diffcore-ckpt`` (activation checkpointing of
every block) and ``diffusers``. Results: a table on stdout and
``benchmarks/results/dit_training_throughput-<variant>-<device>.json`` (variant: ``--variant``, by default
the models and batch, e.g. ``xl2-b192``, ``-eager`` without ``--compile``, ``-profile`` with ``--profile``).

    python benchmarks/core/dit_training_throughput.py --models XL/2 --batch 192 --steps 20 --compile \
        --sdpa-backend cudnn --impls diffcore diffusers               # dit_training_throughput-xl2-b192-h100.json
    python benchmarks/core/dit_training_throughput.py --models XL/2 --batch 192 --steps 20 --compile \
        --sdpa-backend cudnn --impls diffcore diffcore-float8 diffusers   # ...-xl2-b192-float8-h100.json
    python benchmarks/core/dit_training_throughput.py --quick       # tiny model, CPU, 2 steps
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import platform
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from diffcore.nn.dit import DiT, DiTConfig, dit_config
from diffcore.nn.flops import forward_cost, training_flops_per_sample
from diffcore.precision.float8 import convert_to_float8
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: the shared helpers
from diffusers_reference import diffusers_dit
from results_io import write_result


class DiffusersDiT(nn.Module):
    """diffusers' DiTTransformer2DModel behind our contract ``net(x, t in [0, 1], y)``."""

    def __init__(self, cfg: DiTConfig) -> None:
        super().__init__()
        self.inner = diffusers_dit(cfg)

    def forward(self, x: Tensor, t: Tensor, y: Tensor) -> Tensor:
        return self.inner(x, timestep=t * 1000, class_labels=y).sample


H100_BF16_DENSE = 989e12  # nominal dense peaks of the H100 SXM (NVIDIA's datasheet, without sparsity)
H100_FP8_DENSE = 1979e12


def float8_dit(recipe: str) -> Callable[[DiTConfig], nn.Module]:
    """Our DiT with its block linears converted to torchao float8 training (``recipe``: tensorwise, rowwise)."""

    def build(cfg: DiTConfig) -> nn.Module:
        model = DiT(cfg)
        convert_to_float8(model, recipe, check_device=False)  # converted on the CPU, run on the GPU
        return model

    return build


def checkpointed_dit(cfg: DiTConfig) -> nn.Module:
    """Our DiT recomputing each block in the backward (activation checkpointing)."""
    return DiT(dataclasses.replace(cfg, gradient_checkpointing=True))


IMPLEMENTATIONS: dict[str, Callable[[DiTConfig], nn.Module]] = {
    "diffcore": DiT,
    # The same model with the adaLN steps left to torch.compile instead of diffcore's Triton kernels.
    "diffcore-unfused": lambda cfg: DiT(dataclasses.replace(cfg, fused_kernels=False)),
    "diffcore-float8": float8_dit("tensorwise"),
    "diffcore-float8-rowwise": float8_dit("rowwise"),
    "diffcore-ckpt": checkpointed_dit,
    "diffusers": DiffusersDiT,
}
DEFAULT_IMPLS = ["diffcore", "diffcore-unfused", "diffusers"]


def peak_fp8_matmul_flops(device: torch.device, n: int, iters: int, trials: int = 3) -> float | None:
    """Measured FLOP/s of an ``n^3`` float8 e4m3 matmul (``torch._scaled_mm``, bf16 out), or ``None`` where
    the device has no float8 matmul."""
    from diffcore.precision.quantize import fp8_unavailable_reason

    if fp8_unavailable_reason(device) is not None:
        return None
    a = torch.randn(n, n, device=device).to(torch.float8_e4m3fn)
    b = torch.randn(n, n, device=device).to(torch.float8_e4m3fn).t()  # column-major, as _scaled_mm needs
    one = torch.ones((), device=device)

    def mm() -> Tensor:
        return torch._scaled_mm(a, b, scale_a=one, scale_b=one, out_dtype=torch.bfloat16)

    for _ in range(3):
        mm()
    best = 0.0
    for _ in range(trials):
        synchronize(device)
        start = time.perf_counter()
        for _ in range(iters):
            mm()
        synchronize(device)
        best = max(best, 2 * n**3 * iters / (time.perf_counter() - start))
    return best


def model_configs(quick: bool, names: list[str]) -> dict[str, DiTConfig]:
    """Paper configurations by name (``XL/2``, ``B/2`` ...), or one tiny model for ``--quick``."""
    if quick:
        tiny = dit_config(
            "S", 2, depth=2, hidden_size=64, num_heads=4, input_size=(8, 8), num_classes=10, learn_sigma=True
        )
        return {"tiny/2": tiny}
    out = {}
    for name in names:
        size, _, patch = name.partition("/")
        out[name] = dit_config(size, int(patch), input_size=(32, 32), in_channels=4, learn_sigma=True)
    return out


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_matmul_flops(device: torch.device, dtype: torch.dtype, n: int, iters: int, trials: int = 3) -> float:
    """Measured FLOP/s of an ``n^3`` matmul in ``dtype`` (the MFU denominator): the best of ``trials``
    timings of ``iters`` back-to-back matmuls (clocks vary by a few percent from trial to trial)."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    best = 0.0
    for _ in range(trials):
        synchronize(device)
        start = time.perf_counter()
        for _ in range(iters):
            a @ b
        synchronize(device)
        best = max(best, 2 * n**3 * iters / (time.perf_counter() - start))
    return best


def forward_flops_per_image(cfg: DiTConfig) -> int:
    """Forward FLOPs of one image through our DiT, counted on the meta device."""
    with torch.device("meta"):
        model = DiT(cfg)
        x = torch.empty(1, cfg.in_channels, *cfg.input_size)
        t, y = torch.empty(1), torch.zeros(1, dtype=torch.long)
    return forward_cost(model, x, t, y=y).flops


KERNEL_CLASSES = (
    ("matmul", re.compile(r"gemm|nvjet|cutlass|sm90_xmma|sm80_xmma|matmul|_mm_|addmm", re.I)),
    ("attention", re.compile(r"flash|fmha|cudnn|attention|sdpa", re.I)),
    ("optimizer", re.compile(r"adam|multi_tensor|foreach", re.I)),
    ("fused elementwise (triton)", re.compile(r"^triton_", re.I)),
)


def kernel_breakdown(prof: Any, steps: int) -> dict[str, Any]:
    """CUDA kernel time per training step from a ``torch.profiler`` run: by class and the top kernels."""
    by_class: dict[str, float] = {}
    kernels: list[tuple[str, float, int]] = []
    for event in prof.key_averages():
        device_us = getattr(event, "self_device_time_total", None)
        if device_us is None:
            device_us = getattr(event, "self_cuda_time_total", 0.0)
        if device_us <= 0 or event.key.startswith(("ProfilerStep", "aten::", "cuda")):
            continue
        name = event.key
        cls = next((c for c, pattern in KERNEL_CLASSES if pattern.search(name)), "other")
        by_class[cls] = by_class.get(cls, 0.0) + device_us / 1000 / steps
        kernels.append((name, device_us / 1000 / steps, event.count // steps))
    kernels.sort(key=lambda k: -k[1])
    return {
        "ms_per_step_by_class": dict(sorted(by_class.items(), key=lambda kv: -kv[1])),
        "top_kernels": [
            {"name": n[:120], "ms_per_step": ms, "calls_per_step": c} for n, ms, c in kernels[:20]
        ],
    }


def time_training(
    model: nn.Module,
    cfg: DiTConfig,
    batch: int,
    steps: int,
    warmup: int,
    device: torch.device,
    compile: bool,
    compile_mode: str | None = None,
    profile: bool = False,
) -> dict[str, Any]:
    """Time ``steps`` AdamW steps of the eps-prediction loss after ``warmup`` steps; bf16 autocast."""
    model = model.to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device.type == "cuda")
    net = torch.compile(model, mode=compile_mode) if compile else model
    gen = torch.Generator(device).manual_seed(0)
    x0 = torch.randn(batch, cfg.in_channels, *cfg.input_size, device=device, generator=gen)
    y = torch.randint(0, cfg.num_classes, (batch,), device=device, generator=gen)

    def step() -> Tensor:
        t = torch.rand(batch, device=device, generator=gen)
        eps = torch.randn(x0.shape, device=device, generator=gen)
        angle = (t * math.pi / 2)[:, None, None, None]
        x_t = torch.cos(angle) * x0 + torch.sin(angle) * eps
        with torch.autocast(device.type, dtype=torch.bfloat16):
            out = net(x_t, t, y)
        loss = F.mse_loss(out[:, : cfg.in_channels].float(), eps)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.detach()

    compile_start = time.perf_counter()
    for _ in range(warmup):
        step()
    synchronize(device)
    warmup_s = time.perf_counter() - compile_start
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    for _ in range(steps):
        loss = step()
    synchronize(device)
    elapsed = time.perf_counter() - start
    if not torch.isfinite(loss):
        raise RuntimeError(f"training diverged: loss {loss.item()}")
    peak_gb = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
    stats: dict[str, Any] = {
        "images_per_s": batch * steps / elapsed,
        "ms_per_step": 1000 * elapsed / steps,
        "warmup_s": warmup_s,
        "peak_memory_gib": peak_gb,
        "final_loss": float(loss),
    }
    if profile and device.type == "cuda":
        from torch.profiler import ProfilerActivity
        from torch.profiler import profile as torch_profile

        profiled = 3
        with torch_profile(activities=[ProfilerActivity.CUDA]) as prof:
            for _ in range(profiled):
                step()
            synchronize(device)
        stats["kernels"] = kernel_breakdown(prof, profiled)
    return stats


def run(
    args: argparse.Namespace, save: Callable[[dict[str, Any]], Any] = lambda result: None
) -> dict[str, Any]:
    """Time every implementation on every model; ``save(result)`` after each row (a run cut short by a time
    limit keeps the rows it finished)."""
    device = torch.device("cpu" if args.quick or not torch.cuda.is_available() else "cuda")
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    if device.type == "cuda" and args.sdpa_backend != "auto":
        # Pin SDPA to one backend for the whole run (cuDNN attention is the fastest on Hopper in torch >= 2.5).
        from torch.nn.attention import SDPBackend, sdpa_kernel

        backend = {
            "cudnn": SDPBackend.CUDNN_ATTENTION,
            "flash": SDPBackend.FLASH_ATTENTION,
            "efficient": SDPBackend.EFFICIENT_ATTENTION,
        }[args.sdpa_backend]
        sdpa_kernel(backend).__enter__()
    n = 256 if device.type == "cpu" else 8192
    peak = peak_matmul_flops(device, torch.bfloat16, n, iters=3 if device.type == "cpu" else 50)
    peak_fp8 = peak_fp8_matmul_flops(device, n, iters=50)
    rows: list[dict[str, Any]] = []
    result = {
        "benchmark": "dit_training_throughput",
        "device": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else platform.processor() or "cpu",
        "torch": torch.__version__,
        "batch": args.batch,
        "steps": args.steps,
        "compile": args.compile,
        "compile_mode": args.compile_mode,
        "sdpa_backend": args.sdpa_backend,
        "dtype": "bf16 autocast, fp32 weights",
        "peak_bf16_tflops": peak / 1e12,
        "peak_fp8_tflops": peak_fp8 / 1e12 if peak_fp8 is not None else None,
        "nominal_peaks_tflops": {"bf16": H100_BF16_DENSE / 1e12, "fp8": H100_FP8_DENSE / 1e12},
        "quick": args.quick,
        "rows": rows,
    }
    for name, cfg in model_configs(args.quick, args.models).items():
        flops = forward_flops_per_image(cfg)
        for impl in args.impls:
            build = IMPLEMENTATIONS[impl]
            if impl == "diffcore-float8-rowwise" and device.type == "cpu":
                print(f"  skipped {name} {impl}: the CPU's float8 matmul is per-tensor only", flush=True)
                continue
            torch.manual_seed(0)
            model = build(cfg)
            params = sum(p.numel() for p in model.parameters())
            stats = time_training(
                model,
                cfg,
                args.batch,
                args.steps,
                args.warmup,
                device,
                args.compile,
                args.compile_mode,
                args.profile,
            )
            achieved = training_flops_per_sample(flops, batch_size=1) * stats["images_per_s"]
            mfu = achieved / peak
            rows.append(
                {
                    "model": name,
                    "impl": impl,
                    "params": params,
                    "fwd_gflops_per_image": flops / 1e9,
                    "mfu": mfu,
                    "achieved_tflops": achieved / 1e12,
                    "mfu_bf16_peak": achieved / H100_BF16_DENSE,
                    "mfu_fp8_peak": achieved / H100_FP8_DENSE,
                    **stats,
                }
            )
            print(
                f"  done {name} {impl}: {stats['images_per_s']:.1f} img/s, MFU {100 * mfu:.1f}%", flush=True
            )
            if "kernels" in stats:
                for cls, ms in stats["kernels"]["ms_per_step_by_class"].items():
                    print(f"    {cls:28s} {ms:8.2f} ms/step", flush=True)
                for k in stats["kernels"]["top_kernels"][:12]:
                    print(
                        f"    {k['ms_per_step']:8.2f} ms  x{k['calls_per_step']:<4d} {k['name'][:90]}",
                        flush=True,
                    )
            del model
            if device.type == "cuda":
                torch.cuda.empty_cache()
            add_speedups(rows)
            save(result)
    return result


def add_speedups(rows: list[dict[str, Any]]) -> None:
    """``speedup_vs_diffusers`` on every row of a model that diffusers also ran (images/s ratio)."""
    theirs = {r["model"]: r["images_per_s"] for r in rows if r["impl"] == "diffusers"}
    for r in rows:
        if r["model"] in theirs:
            r["speedup_vs_diffusers"] = r["images_per_s"] / theirs[r["model"]]


def print_table(result: dict[str, Any]) -> None:
    print(
        f"device: {result['device']}  peak bf16 matmul: {result['peak_bf16_tflops']:.3f} TFLOP/s  "
        f"batch {result['batch']}  compile={result['compile']}"
    )
    header = (
        f"{'model':8} {'impl':24} {'params(M)':>10} {'img/s':>9} {'ms/step':>9} {'MFU':>7} {'MFU989':>7} "
        f"{'MFU1979':>8} {'xdiffusers':>10} {'mem(GiB)':>9}"
    )
    print(header)
    print("-" * len(header))
    for r in result["rows"]:
        print(
            f"{r['model']:8} {r['impl']:24} {r['params'] / 1e6:10.1f} {r['images_per_s']:9.1f} "
            f"{r['ms_per_step']:9.1f} {100 * r['mfu']:6.1f}% {100 * r['mfu_bf16_peak']:6.1f}% "
            f"{100 * r['mfu_fp8_peak']:7.1f}% {r.get('speedup_vs_diffusers', float('nan')):10.3f} "
            f"{r['peak_memory_gib']:9.2f}"
        )


def default_variant(args: argparse.Namespace) -> str:
    """``quick``, or the models and batch (``xl2-b192``) with ``-eager`` / ``-<compile mode>`` / ``-profile`` and
    the implementations outside the default set (``-float8``, ``-float8-rowwise``, ``-ckpt``)."""
    if args.quick:
        return "quick"
    parts = ["-".join(m.lower().replace("/", "") for m in args.models), f"b{args.batch}"]
    if not args.compile:
        parts.append("eager")
    elif args.compile_mode not in (None, "default"):
        parts.append(args.compile_mode)
    if args.profile:
        parts.append("profile")
    # Implementations beyond the default set name the file, so a float8 run never replaces the bf16 baseline's.
    parts += [impl.removeprefix("diffcore-") for impl in args.impls if impl not in DEFAULT_IMPLS]
    return "-".join(parts)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["XL/2", "B/2"], help="paper sizes, e.g. XL/2 B/2")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--compile", action="store_true", help="torch.compile both implementations")
    parser.add_argument(
        "--compile-mode",
        default=None,
        choices=["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"],
        help="torch.compile mode (default: torch's default)",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="after timing, profile 3 steps and print CUDA time by kernel class",
    )
    parser.add_argument(
        "--impls",
        nargs="+",
        default=DEFAULT_IMPLS,
        choices=list(IMPLEMENTATIONS),
        help=f"implementations to time (default: {' '.join(DEFAULT_IMPLS)})",
    )
    parser.add_argument("--sdpa-backend", default="auto", choices=["auto", "cudnn", "flash", "efficient"])
    parser.add_argument("--quick", action="store_true", help="tiny model on CPU, 2 steps (a smoke test)")
    parser.add_argument("--variant", default=None, help="result file variant (default: models, batch, mode)")
    parser.add_argument("--out", type=Path, default=None, help="JSON path (default under benchmarks/results)")
    args = parser.parse_args(argv)
    if args.quick:
        args.batch, args.steps, args.warmup = min(args.batch, 4), 2, 1

    def save(result: dict[str, Any]) -> Path:
        return write_result(
            result,
            script="dit_training_throughput",
            variant=args.variant or default_variant(args),
            device="cpu" if args.quick else None,
            packages=("diffusers",),
            path=args.out,
        )

    result = run(args, save)
    print_table(result)
    print(f"wrote {save(result)}")
    return result


if __name__ == "__main__":
    main()
