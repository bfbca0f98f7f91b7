"""diffcore's fused kernels against torch.compile's fusion of the same ops, at DiT-XL/2 training shapes.

adaLN (``diffcore.kernels.adaln``): one adaLN step (``x' = x + gate * y``, ``h = LayerNorm(x') * (1 + scale) + shift``; see
``diffcore.kernels.adaln``) forward and backward in bf16 on ``(B, N, D)`` tokens, timed three ways:
diffcore's Triton kernels, ``torch.compile`` of the plain ops (what a compiled model gets without
them), and the plain ops eagerly. Times are the GPU kernels' own (``torch.profiler``), not wall time:
inside a compiled model the host runs ahead, so launch overhead does not count there. The bytes each must move (bf16 tensors of B x N x D elements: forward
reads x, y and writes x', h; backward reads dh, dx', x', y and writes dx, dy) over the time gives the
achieved bandwidth, to compare with the card's copy bandwidth measured in the same run. Also checks the
Triton result against a float32 reference.

MLP (``diffcore.kernels.mlp``): ``fc2(gelu_tanh(fc1(x)))`` forward and backward under bf16 autocast with
float32 weights, cuBLASLt's GELU epilogues against torch.compile of the plain module, eager, with the
same float32 check, and against torch.compile of the same module with torchao float8 linears (tensorwise
and rowwise, :mod:`diffcore.precision.float8`): under float8 training the epilogue cannot run (a
``Float8Linear`` does its own matmul), so this is the alternative the kernel must beat.

Attention (``diffcore.kernels.attention``): self-attention from the (B, N, 3, H, Dh) q/k/v projection
(XL/2: 16 heads of 72), the Triton kernels against SDPA's cuDNN and flash backends on the q/k/v views, in
bf16, with the same float32 check.

Verdict (``verdicts`` in the JSON): per kernel, its forward + backward time against the fastest kernel-free
alternative of the same part (torch.compile, SDPA's backends, torch.compile + torchao float8); ``keep`` when
the kernel is at least ``--keep-margin`` (3%) faster, else ``delete``. The whole-model effect is measured by
``dit_training_throughput.py --impls diffcore diffcore-unfused diffcore-float8``.

Table on stdout, JSON in ``benchmarks/results/fused_kernels[-<variant>]-<device>.json``.

    python benchmarks/core/fused_kernels.py [--batch 128 --tokens 256 --dim 1152]   # fused_kernels-h100.json
    python benchmarks/core/fused_kernels.py --quick   # CPU, tiny shapes: the eager rows only (checks the script)
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from diffcore.kernels.adaln import adaln_modulate, adaln_reference
from diffcore.kernels.attention import qkv_attention, qkv_attention_reference
from diffcore.kernels.mlp import gelu_mlp, gelu_mlp_reference
from diffcore.precision.float8 import convert_to_float8
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: the shared helpers
from results_io import write_result


def inputs(b: int, n: int, d: int, dtype: torch.dtype, device: str) -> list[Tensor]:
    gen = torch.Generator(device).manual_seed(0)
    x, y = (torch.randn(b, n, d, device=device, dtype=dtype, generator=gen) for _ in range(2))
    mod = 0.5 * torch.randn(b, 1, 6 * d, device=device, dtype=dtype, generator=gen)
    gate, shift, scale = mod[..., :d], mod[..., d : 2 * d], mod[..., 2 * d : 3 * d]  # chunks, as in a block
    return [t.requires_grad_() for t in (x, y)] + [t.detach().requires_grad_() for t in (gate, shift, scale)]


ITERS = 20
DEVICE = "cuda"  # "cpu" under --quick
KERNEL_ROWS = {"adaln": "triton (diffcore)", "mlp": "cuBLASLt GELU epilogue (diffcore)",
               "attention": "triton qkv_attention (diffcore)"}  # fmt: skip


def kernel_ms(fn: Callable[[], object]) -> float:
    """GPU kernel time (ms) per call of ``fn``, summed over all kernels, from ``ITERS`` profiled calls (on the
    CPU, ``--quick``: wall time)."""
    from torch.profiler import ProfilerActivity, profile

    if DEVICE == "cpu":
        import time

        start = time.perf_counter()
        for _ in range(ITERS):
            fn()
        return (time.perf_counter() - start) * 1000 / ITERS

    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(ITERS):
            fn()
        torch.cuda.synchronize()
    total_us = 0.0
    for event in prof.key_averages():
        us = getattr(event, "self_device_time_total", None)
        total_us += us if us is not None else getattr(event, "self_cuda_time_total", 0.0)
    return total_us / 1000 / ITERS


def copy_bandwidth(device: str) -> float:
    """Bytes read plus written per second by a 1 GiB device-to-device copy."""
    from triton.testing import do_bench

    src = torch.empty(2**29, dtype=torch.bfloat16, device=device)
    dst = torch.empty_like(src)
    ms = do_bench(lambda: dst.copy_(src))
    return 2 * src.numel() * 2 / (ms / 1000)


def run_adaln(args: argparse.Namespace) -> dict[str, Any]:
    device = DEVICE
    b, n, d = args.batch, args.tokens, args.dim
    x, y, gate, shift, scale = inputs(b, n, d, torch.bfloat16, device)
    grads = [torch.randn_like(x), torch.randn_like(x)]

    def fused(*a: Tensor) -> tuple[Tensor, Tensor]:
        return adaln_modulate(a[0], a[3], a[4], residual=a[1], gate=a[2])

    compiled = torch.compile(adaln_reference)

    def plain_compiled(*a: Tensor) -> tuple[Tensor, Tensor]:
        return compiled(a[0], a[3], a[4], a[1], a[2])

    def plain_eager(*a: Tensor) -> tuple[Tensor, Tensor]:
        return adaln_reference(a[0], a[3], a[4], a[1], a[2])

    # Accuracy: bf16 Triton vs float32 reference on the same (bf16-rounded) inputs.
    ref_in = [t.detach().float().requires_grad_() for t in (x, y, gate, shift, scale)]
    ref_out = plain_eager(*ref_in)
    ref_grads = torch.autograd.grad(ref_out, ref_in, [g.float() for g in grads])
    out = fused(x, y, gate, shift, scale)
    got_grads = torch.autograd.grad(out, [x, y, gate, shift, scale], grads)
    errors = {
        name: float((a.float() - r).abs().max() / r.abs().max())
        for name, a, r in zip(
            ("x_new", "h", "dx", "dy", "dgate", "dshift", "dscale"),
            (*out, *got_grads),
            (*ref_out, *ref_grads),
            strict=True,
        )
    }

    unit = b * n * d * 2  # bytes of one bf16 (B, N, D) tensor
    rows = []
    impls = (("triton (diffcore)", fused), ("torch.compile", plain_compiled), ("eager", plain_eager))
    for name, fn in impls if DEVICE == "cuda" else impls[2:]:
        for _ in range(3):
            o = fn(x, y, gate, shift, scale)
            torch.autograd.backward(o, grads)
        fwd = kernel_ms(lambda fn=fn: fn(x, y, gate, shift, scale))
        outs = [fn(x, y, gate, shift, scale) for _ in range(ITERS)]
        bwd = kernel_ms(lambda outs=outs: torch.autograd.backward(outs.pop(), grads))
        rows.append(
            {
                "impl": name,
                "forward_ms": fwd,
                "backward_ms": bwd,
                "forward_tb_s": 4 * unit / (fwd / 1000) / 1e12,
                "backward_tb_s": 6 * unit / (bwd / 1000) / 1e12,
            }
        )
    return {"max_rel_error_vs_fp32": errors, "rows": rows}


def run_mlp(args: argparse.Namespace) -> dict[str, Any]:
    """The MLP at (B * N, D) -> 4D -> D tokens: fused (cuBLASLt epilogues), compiled, eager; bf16 autocast."""
    torch.manual_seed(0)
    d = args.dim
    fc1, fc2 = nn.Linear(d, 4 * d).to(DEVICE), nn.Linear(4 * d, d).to(DEVICE)
    params = [fc1.weight, fc1.bias, fc2.weight, fc2.bias]
    x = torch.randn(args.batch, args.tokens, d, device=DEVICE, dtype=torch.bfloat16, requires_grad=True)
    grad = torch.randn_like(x)
    compiled = torch.compile(gelu_mlp_reference)
    impls = {
        "cuBLASLt GELU epilogue (diffcore)": lambda: gelu_mlp(x, fc1, fc2),
        "torch.compile": lambda: compiled(x, fc1, fc2),
        "eager": lambda: gelu_mlp_reference(x, fc1, fc2),
    }
    recipes = ("tensorwise", "rowwise") if DEVICE == "cuda" else ("tensorwise",)
    for recipe in recipes:  # the same weights as torchao float8 linears
        pair = nn.Sequential(fc1, fc2)  # holds fc1 and fc2's parameters; converting swaps the modules in it
        convert_to_float8(pair, recipe, keep={}, check_device=False)
        if DEVICE == "cuda":
            impls[f"torch.compile + torchao float8 {recipe}"] = lambda pair=pair: compiled(
                x, pair[0], pair[1]
            )
        else:  # the CPU runs per-tensor float8 eagerly; neither the epilogue nor compiled rows here
            impls = {
                "eager": impls["eager"],
                "eager + torchao float8 tensorwise": lambda pair=pair: gelu_mlp_reference(x, *pair),
            }

    def grads_of(fn: Callable[[], Tensor]) -> list[Tensor]:
        with torch.autocast(DEVICE, dtype=torch.bfloat16):
            out = fn()
        return [out, *torch.autograd.grad(out, [x, *params], grad)]

    ref_x = x.detach().float().requires_grad_()
    ref_out = gelu_mlp_reference(ref_x, fc1, fc2)
    ref = [ref_out, *torch.autograd.grad(ref_out, [ref_x, *params], grad.float())]
    got = grads_of(impls.get("cuBLASLt GELU epilogue (diffcore)", impls["eager"]))
    names = ("y", "dx", "dw1", "db1", "dw2", "db2")
    errors = {
        n: float((a.float() - r).abs().max() / r.abs().max()) for n, a, r in zip(names, got, ref, strict=True)
    }
    rows = []
    for name, fn in impls.items():
        for _ in range(3):
            grads_of(fn)

        def forward(fn: Callable[[], Tensor] = fn) -> Tensor:
            with torch.autocast(DEVICE, dtype=torch.bfloat16):
                return fn()

        fwd = kernel_ms(forward)
        outs = [forward() for _ in range(ITERS)]
        bwd = kernel_ms(lambda outs=outs: torch.autograd.backward(outs.pop(), grad))
        for p in [x, *params]:
            p.grad = None
        rows.append({"impl": name, "forward_ms": fwd, "backward_ms": bwd})
    return {"max_rel_error_vs_fp32": errors, "rows": rows}


def run_attention(args: argparse.Namespace) -> dict[str, Any]:
    """Self-attention from a (B, N, 3, H, Dh) q/k/v projection: the Triton kernels against SDPA's backends on
    the q/k/v views (whose backward stacks the three gradients back into that layout), bf16."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    b, n, h = args.batch, args.tokens, args.heads
    dh = args.dim // h
    gen = torch.Generator(DEVICE).manual_seed(0)
    qkv = torch.randn(b, n, 3, h, dh, device=DEVICE, dtype=torch.bfloat16, generator=gen).requires_grad_()
    grad = torch.randn(b, n, h * dh, device=DEVICE, dtype=torch.bfloat16, generator=gen)
    compiled = torch.compile(qkv_attention_reference)

    def sdpa(
        backend: SDPBackend, fn: Callable[[Tensor], Tensor] = qkv_attention_reference
    ) -> Callable[[], Tensor]:
        def call() -> Tensor:
            with sdpa_kernel(backend):
                return fn(qkv)

        return call

    impls = {
        "triton qkv_attention (diffcore)": lambda: qkv_attention(qkv),
        "SDPA cuDNN": sdpa(SDPBackend.CUDNN_ATTENTION),
        "SDPA flash": sdpa(SDPBackend.FLASH_ATTENTION),
        "torch.compile, SDPA cuDNN": sdpa(SDPBackend.CUDNN_ATTENTION, compiled),
    }
    if DEVICE == "cpu":
        impls = {"SDPA (math)": sdpa(SDPBackend.MATH)}
    ref_in = qkv.detach().float().requires_grad_()
    ref = qkv_attention_reference(ref_in)
    (ref_grad,) = torch.autograd.grad(ref, ref_in, grad.float())
    out = impls.get("triton qkv_attention (diffcore)", next(iter(impls.values())))()
    (got_grad,) = torch.autograd.grad(out, qkv, grad)
    errors = {
        "out": float((out.float() - ref).abs().max() / ref.abs().max()),
        "dqkv": float((got_grad.float() - ref_grad).abs().max() / ref_grad.abs().max()),
    }
    flops = 4 * b * h * n * n * dh  # forward: two (N x N x Dh) products per head
    rows = []
    for name, fn in impls.items():
        for _ in range(3):
            torch.autograd.backward(fn(), grad)
        fwd = kernel_ms(fn)
        outs = [fn() for _ in range(ITERS)]
        bwd = kernel_ms(lambda outs=outs: torch.autograd.backward(outs.pop(), grad))
        qkv.grad = None
        rows.append(
            {
                "impl": name,
                "forward_ms": fwd,
                "backward_ms": bwd,
                "forward_tflop_s": flops / (fwd / 1000) / 1e12,
                "backward_tflop_s": 2.5 * flops / (bwd / 1000) / 1e12,
            }
        )
    return {"max_rel_error_vs_fp32": errors, "rows": rows}


def verdicts(result: dict[str, Any], margin: float) -> dict[str, Any]:
    """Per kernel: its forward + backward time against the fastest row without it; keep it when it is at least
    ``margin`` faster."""
    out = {}
    for part, kernel in KERNEL_ROWS.items():
        totals = {r["impl"]: r["forward_ms"] + r["backward_ms"] for r in result[part]["rows"]}
        if kernel not in totals:
            continue
        best_name, best = min(((n, t) for n, t in totals.items() if n != kernel), key=lambda nt: nt[1])
        out[part] = {
            "kernel": kernel,
            "kernel_ms": totals[kernel],
            "best_alternative": best_name,
            "best_alternative_ms": best,
            "speedup": best / totals[kernel],
            "verdict": "keep" if totals[kernel] <= (1 - margin) * best else "delete",
        }
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    result = {
        "benchmark": "fused_kernels",
        "device": torch.cuda.get_device_name() if DEVICE == "cuda" else "cpu",
        "torch": torch.__version__,
        "shape": [args.batch, args.tokens, args.dim],
        "dtype": "bf16",
        "copy_tb_s": copy_bandwidth("cuda") / 1e12 if DEVICE == "cuda" else None,
        "adaln": run_adaln(args),
        "mlp": run_mlp(args),
        "attention": run_attention(args),
    }
    result["keep_margin"] = args.keep_margin
    result["verdicts"] = verdicts(result, args.keep_margin)
    return result


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--dim", type=int, default=1152)
    parser.add_argument("--heads", type=int, default=16)
    parser.add_argument(
        "--keep-margin", type=float, default=0.03, help="how much faster a kept kernel must be"
    )
    parser.add_argument("--quick", action="store_true", help="CPU, tiny shapes, eager rows only")
    parser.add_argument("--variant", default=None, help="result file variant (e.g. a kernel under trial)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    global DEVICE
    if args.quick:
        DEVICE, args.batch, args.tokens, args.dim, args.heads = "cpu", 2, 16, 64, 4
    elif not torch.cuda.is_available():
        raise SystemExit(
            "fused_kernels.py needs a CUDA GPU (Triton and cuBLASLt kernels); --quick runs on the CPU"
        )
    result = run(args)
    print(
        f"device: {result['device']}  shape {result['shape']} bf16  copy {result['copy_tb_s'] or 0:.2f} TB/s"
    )
    for part in ("adaln", "mlp", "attention"):
        print(f"{part}: GPU kernel time per call")
        print(f"  {'impl':40} {'fwd ms':>8} {'bwd ms':>8} {'total':>8}")
        for r in result[part]["rows"]:
            total = r["forward_ms"] + r["backward_ms"]
            print(f"  {r['impl']:40} {r['forward_ms']:8.3f} {r['backward_ms']:8.3f} {total:8.3f}")
        errors = {k: f"{v:.1e}" for k, v in result[part]["max_rel_error_vs_fp32"].items()}
        print("  max relative error vs float32:", errors)
    for part, v in result["verdicts"].items():
        print(f"{part}: {v['verdict']} ({v['kernel']} {v['kernel_ms']:.3f} ms against {v['best_alternative']} "
              f"{v['best_alternative_ms']:.3f} ms, {v['speedup']:.3f}x)")  # fmt: skip
    variant = args.variant or ("quick" if args.quick else None)
    out = write_result(result, script="fused_kernels", variant=variant, device=DEVICE, path=args.out)
    print(f"wrote {out}")
    return result


if __name__ == "__main__":
    main()
