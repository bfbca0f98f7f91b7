"""Probe: does ``torch.compile`` of a torchao-quantised SD-2.1-sized U-Net finish, and what does eager quantised
inference cost? (issue #31; run when ``stream_bench.py --quantize`` stalls).

For each mode (``none``, ``int8-weight``, ``fp8-weight``) in its own process, so a stalled compile can be cut
by ``timeout``: the U-Net of ``sd2_unet_config`` (random weights, bf16, batch 1, 4 x 64 x 64 latent, a 77-token
context), ``diffcore.streaming.quantize_weights``, then the first call and the mean of 20 calls, eager or under
``torch.compile`` (argument 2: 1 = compile). Prints one line per stage and rewrites
``benchmarks/results/stream_quant_compile-<mode>-<eager|compile>-<device>.json`` after each, so a stage that never
ends leaves its field null. The first H100 run's printed output is kept in
``benchmarks/results/stream_quant_compile-h100.txt``.

    for m in none int8-weight fp8-weight; do timeout 25 python benchmarks/image/stream_quant_compile.py $m 0; done
    for m in fp8-weight int8-weight; do timeout 70 python benchmarks/image/stream_quant_compile.py $m 1; done
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from diffcore.nn.unet import UNet, sd2_unet_config
from diffcore.streaming import quantize_weights

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: the shared helpers
from results_io import write_result


def timed(fn: Callable[[], torch.Tensor], calls: int = 1) -> tuple[float, torch.Tensor]:
    """Seconds for ``calls`` calls of ``fn`` with the device synchronised around them, and the last output."""
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(calls):
        out = fn()
    torch.cuda.synchronize()
    return time.perf_counter() - start, out


def main() -> None:
    """Run one mode (``sys.argv[1]``), eager or compiled (``sys.argv[2]``: 0 or 1), and print its timings."""
    mode, compile_it = sys.argv[1], sys.argv[2] == "1"
    row: dict[str, Any] = {"mode": mode, "compile": compile_it, "quantize_s": None, "first_call_s": None,
                           "ms_per_call": None}  # fmt: skip
    variant = f"{mode}-{'compile' if compile_it else 'eager'}"

    def save() -> None:
        write_result(
            row, script="stream_quant_compile", variant=variant, device="cuda", packages=("diffcore",)
        )

    torch.manual_seed(0)
    config = sd2_unet_config()
    net = UNet(config).to("cuda", torch.bfloat16).eval()
    x = torch.randn(1, 4, 64, 64, device="cuda", dtype=torch.bfloat16)
    t = torch.full((1,), 0.9, device="cuda")
    context = torch.randn(1, 77, config.context_dim, device="cuda", dtype=torch.bfloat16)
    with torch.no_grad():
        if mode != "none":
            start = time.perf_counter()
            net = quantize_weights(net, mode)  # type: ignore[arg-type]
            row["quantize_s"] = time.perf_counter() - start
            print(f"{mode} quantize {row['quantize_s']:.1f}s", flush=True)
            save()
        fn = torch.compile(net) if compile_it else net
        row["first_call_s"], _ = timed(lambda: fn(x, t, context=context))
        print(f"{mode} compile={compile_it} first call {row['first_call_s']:.1f}s", flush=True)
        save()
        seconds, _ = timed(lambda: fn(x, t, context=context), 20)
        row["ms_per_call"] = 1000 * seconds / 20
        print(f"{mode} compile={compile_it} {row['ms_per_call']:.2f} ms/call", flush=True)
        save()


if __name__ == "__main__":
    main()
