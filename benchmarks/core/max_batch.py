"""The largest training batch that fits on one GPU, with and without activation checkpointing.

Models: ``dit-xl2`` (DiT-XL/2 on 32x32x4 latents, 1000 classes, learned sigma: the throughput benchmarks'
model) and ``video-l`` (diff-video's spacetime DiT at Latte-L size, 16 frames of 32x32x4 latents, 1x2x2 patches,
factorised attention: 4,096 tokens a clip, ``benchmarks/video/video_throughput.py``'s model). Settings:
``plain``; ``ckpt`` (``gradient_checkpointing``: each block recomputed in the backward, what
``TrainConfig.activation_checkpointing`` switches on); ``float8`` and ``float8-ckpt`` (torchao float8 block
linears, :mod:`diffcore.precision.float8`). A batch fits when two eager AdamW steps (fp32 weights, bf16
autocast: the second step holds the optimizer state) run without a CUDA out-of-memory error. The batch is
doubled from ``--start`` until it fails and then bisected until the gap is below 1/16 of the batch (or
``--max-batch`` is reached); reported
per model and setting: the largest batch that fits, its peak memory and step time (images or clips per
second at that batch). Results: a table and ``benchmarks/results/max_batch[-<model>]-<device>.json``, rewritten
after every row (a run cut short keeps what it measured).

    python benchmarks/core/max_batch.py --models dit-xl2        # one H100, plain and ckpt
    python benchmarks/core/max_batch.py --models video-l
    python benchmarks/core/max_batch.py --models dit-xl2 --settings plain ckpt float8 float8-ckpt
    python benchmarks/core/max_batch.py --quick                 # tiny models on the CPU up to batch 8
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from diff_video.models import VideoDiT, video_dit_config
from diffcore.nn.dit import DiT, dit_config
from diffcore.precision.float8 import convert_to_float8
from diffcore.rng import seeded
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: the shared helpers
from results_io import write_result

SETTINGS = ("plain", "ckpt", "float8", "float8-ckpt")


@dataclasses.dataclass
class Case:
    """A model to probe: ``build(checkpointing) -> module`` and ``inputs(batch, device) -> (args, target)``."""

    build: Callable[[bool], nn.Module]
    inputs: Callable[[int, torch.device], tuple[tuple[Any, ...], Tensor]]


def dit_case(quick: bool) -> Case:
    """DiT-XL/2 on 32x32x4 latents (a tiny DiT for ``--quick``)."""
    cfg = dit_config("XL", 2, input_size=(32, 32), in_channels=4, learn_sigma=True)
    if quick:
        cfg = dit_config("S", 2, depth=2, hidden_size=64, num_heads=4, input_size=(8, 8), learn_sigma=True)

    def inputs(batch: int, device: torch.device) -> tuple[tuple[Any, ...], Tensor]:
        x = torch.randn(batch, cfg.in_channels, *cfg.input_size, device=device)
        y = torch.randint(0, cfg.num_classes, (batch,), device=device)
        return (x, torch.rand(batch, device=device), y), x

    return Case(lambda ckpt: DiT(dataclasses.replace(cfg, gradient_checkpointing=ckpt)), inputs)


def video_case(quick: bool) -> Case:
    """diff-video's DiT at Latte-L size on 16 x 32 x 32 x 4 latents (tiny for ``--quick``)."""
    shape = (4, 8, 8) if quick else (16, 32, 32)
    sizes = {"depth": 2, "hidden_size": 48, "num_heads": 4} if quick else {}
    cfg = video_dit_config(
        "S" if quick else "L", input_size=shape, patch_size=(1, 2, 2), in_channels=4, **sizes
    )

    def inputs(batch: int, device: torch.device) -> tuple[tuple[Any, ...], Tensor]:
        x = torch.randn(batch, 4, *shape, device=device)
        return (x, torch.rand(batch, device=device)), x

    return Case(lambda ckpt: VideoDiT(dataclasses.replace(cfg, gradient_checkpointing=ckpt)), inputs)


CASES: dict[str, Callable[[bool], Case]] = {"dit-xl2": dit_case, "video-l": video_case}


def is_oom(exc: BaseException) -> bool:
    """A CUDA out-of-memory error (a cuBLAS / cuDNN allocation failure reads as one too)."""
    text = str(exc)
    return isinstance(exc, torch.OutOfMemoryError) or "out of memory" in text or "CUBLAS_STATUS_ALLOC" in text


def try_batch(model: nn.Module, opt: torch.optim.Optimizer, case: Case, batch: int, device: torch.device):
    """Two AdamW steps at ``batch``: ``(seconds per step of the second, peak GiB)``, or ``None`` when out of
    memory."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    try:
        seconds = 0.0
        for _ in range(2):
            args, target = case.inputs(batch, device)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
            with torch.autocast(device.type, dtype=torch.bfloat16):
                out = model(*args)
            loss = (out[:, : target.shape[1]].float() - target).square().mean()
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            seconds = time.perf_counter() - start
            del args, target, out, loss
    except (RuntimeError, torch.OutOfMemoryError) as exc:
        if not is_oom(exc):
            raise
        opt.zero_grad(set_to_none=True)
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
        return None
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
    return seconds, peak


def largest_batch(
    case: Case, setting: str, device: torch.device, start: int, max_batch: int
) -> dict[str, Any]:
    """Double from ``start``, then bisect, the batch until the gap between fitting and failing is below 1/16."""
    with seeded(0):
        model = case.build(setting.endswith("ckpt")).to(device).train()
    if setting.startswith("float8"):
        convert_to_float8(model, "tensorwise", check_device=device.type == "cuda")
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device.type == "cuda")
    fits: dict[int, tuple[float, float]] = {}
    lo, hi, batch = 0, None, start
    while hi is None and batch <= max_batch:
        got = try_batch(model, opt, case, batch, device)
        print(f"    batch {batch}: {'fits' if got else 'out of memory'}", flush=True)
        if got is None:
            hi = batch
        else:
            fits[batch], lo, batch = got, batch, batch * 2
    while hi is not None and hi - lo > max(1, lo // 16):
        mid = (lo + hi) // 2
        got = try_batch(model, opt, case, mid, device)
        print(f"    batch {mid}: {'fits' if got else 'out of memory'}", flush=True)
        if got is None:
            hi = mid
        else:
            fits[mid], lo = got, mid
    del model, opt
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    seconds, peak = fits.get(lo, (float("nan"), float("nan")))
    return {
        "largest_batch": lo,
        "first_failing_batch": hi,
        "capped": hi is None,
        "peak_memory_gib": peak,
        "seconds_per_step": seconds,
        "samples_per_s": lo / seconds if lo else float("nan"),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--settings", nargs="+", default=["plain", "ckpt"], choices=SETTINGS)
    parser.add_argument("--start", type=int, default=8, help="first batch tried")
    parser.add_argument("--max-batch", type=int, default=16384, help="stop doubling here")
    parser.add_argument("--quick", action="store_true", help="tiny models on the CPU, batches up to 8")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    device = torch.device("cpu" if args.quick or not torch.cuda.is_available() else "cuda")
    if args.quick:
        args.start, args.max_batch = 1, 8
        args.settings = [s for s in args.settings if not s.startswith("float8")] or ["plain"]
    rows: list[dict[str, Any]] = []
    variant = "-".join(
        ([] if args.models == list(CASES) else args.models) + (["quick"] if args.quick else [])
    )
    result: dict[str, Any] = {
        "benchmark": "max_batch",
        "device": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else platform.processor() or "cpu",
        "torch": torch.__version__,
        "memory_gib": torch.cuda.get_device_properties(device).total_memory / 2**30
        if device.type == "cuda"
        else None,
        "dtype": "bf16 autocast, fp32 weights, fused AdamW, eager",
        "quick": args.quick,
        "rows": rows,
    }
    for name in args.models:
        case = CASES[name](args.quick)
        for setting in args.settings:
            print(f"  {name} {setting}", flush=True)
            found = largest_batch(case, setting, device, args.start, args.max_batch)
            rows.append({"model": name, "setting": setting, **found})
            out = write_result(result, script="max_batch", variant=variant or None, device=device,
                               packages=("diff-video",), path=args.out)  # fmt: skip
    print(
        f"{'model':9} {'setting':12} {'largest':>8} {'fails at':>9} {'peak GiB':>9} {'s/step':>8} {'samples/s':>10}"
    )
    for r in rows:
        fails = "-" if r["first_failing_batch"] is None else str(r["first_failing_batch"])
        print(f"{r['model']:9} {r['setting']:12} {r['largest_batch']:8d} {fails:>9} {r['peak_memory_gib']:9.2f} "
              f"{r['seconds_per_step']:8.3f} {r['samples_per_s']:10.1f}")  # fmt: skip
    print(f"wrote {out}")
    return result


if __name__ == "__main__":
    main()
