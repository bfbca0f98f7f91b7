"""KV cache of BD3-LM sampling: same tokens with and without the cache, and the speed-up.

Generates --tokens tokens block by block with a randomly initialised BD3-LM whose context holds the whole
generation, once with the exact KV cache over finished blocks and once recomputing the prefix at every
denoiser call, from the same random numbers. Prints a table and writes
benchmarks/results/language_kv_cache[-<variant>]-<device>.json (variant ``quick``, or ``b<batch>`` above 1
sequence on a GPU).

    uv run python benchmarks/language/language_kv_cache.py               # 512 tokens on CPU
    uv run python benchmarks/language/language_kv_cache.py --vocab 16384 --profile --variant profile
                                                                         # + where the cached path's time goes
    uv run python benchmarks/language/language_kv_cache.py --device cuda --hidden 768 --layers 12 --heads 12 \
        --vocab 16384 --cuda-graph [--batch-size 8]                      # 110 M parameters (12 x 768), GPU
    uv run python benchmarks/language/language_kv_cache.py --quick       # smoke run

``--profile`` runs the cached generation once more under cProfile and stores the functions that take the most
time (``profile_cached`` in each row).

Each configuration is run once untimed first (warm-up: CUDA context, kernel selection, graph capture paths);
with ``--repeats N`` the two paths are timed N times each, interleaved, and the fastest run of each counts.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import time
from pathlib import Path

import torch
from diff_language.models import BD3LM, BD3LMConfig
from diff_language.sampling import SamplingConfig, generate

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: the shared helpers
from results_io import write_result


def timed(model: BD3LM, args, cache: bool, tokens: int | None = None) -> tuple[torch.Tensor, float]:
    device = torch.device(args.device)
    g = torch.Generator(device=device).manual_seed(0)
    cfg = SamplingConfig(sampler=args.sampler, use_kv_cache=cache, cuda_graph=args.cuda_graph)
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    out = generate(model, tokens or args.tokens, batch_size=args.batch_size, config=cfg, generator=g)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return out, time.perf_counter() - start


def profile_cached(model: BD3LM, args, top: int = 12) -> list[dict]:
    """The ``top`` functions by own time in one cached generation: name, calls, seconds (own and cumulative)."""
    profiler = cProfile.Profile()
    profiler.enable()
    timed(model, args, cache=True)
    profiler.disable()
    stats = pstats.Stats(profiler).sort_stats("tottime")
    rows = []
    for (file, line, name), (_, calls, own, cumulative, _) in list(stats.stats.items()):
        rows.append({"function": f"{Path(file).name}:{line}({name})", "calls": calls, "own_s": own,
                     "cumulative_s": cumulative})  # fmt: skip
    return sorted(rows, key=lambda r: -r["own_s"])[:top]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tokens", type=int, default=512)
    p.add_argument("--block-sizes", default="4,8,16")
    p.add_argument("--hidden", "--dim", dest="dim", type=int, default=128, help="model width")
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--vocab", type=int, default=512)
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--sampler", choices=["ancestral", "first-hitting"], default="ancestral")
    p.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32")
    p.add_argument("--cuda-graph", action="store_true", help="replay each cached block call as a CUDA graph")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument(
        "--repeats", type=int, default=1, help="timed runs of each path (interleaved); the fastest counts"
    )
    p.add_argument("--profile", action="store_true", help="also profile the cached generation (cProfile)")
    p.add_argument(
        "--variant", default=None, help="result file variant (default: quick, or b<batch> on a GPU)"
    )
    p.add_argument("--quick", action="store_true")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if args.quick:
        args.tokens, args.dim, args.layers, args.block_sizes = 64, 32, 2, "4"
    on_gpu = torch.device(args.device).type == "cuda"
    variant = args.variant or ("quick" if args.quick else (f"b{args.batch_size}" if on_gpu else None))
    rows = []
    for block in map(int, args.block_sizes.split(",")):
        seq_len = -(-args.tokens // block) * block
        torch.manual_seed(0)
        model = (
            BD3LM(
                BD3LMConfig(
                    vocab_size=args.vocab + 1,
                    seq_len=seq_len,
                    block_size=block,
                    dim=args.dim,
                    n_layers=args.layers,
                    n_heads=args.heads,
                    attention="sdpa",
                )
            )
            .to(args.device, dtype=torch.bfloat16 if args.dtype == "bf16" else torch.float32)
            .eval()
        )
        for cache in (True, False):  # warm-up, untimed
            timed(model, args, cache=cache, tokens=min(args.tokens, 8 * block))
        t_cache = t_plain = float("inf")
        for _ in range(args.repeats):  # interleaved, the fastest of each: robust to a shared machine's load
            with_cache, seconds = timed(model, args, cache=True)
            t_cache = min(t_cache, seconds)
            without, seconds = timed(model, args, cache=False)
            t_plain = min(t_plain, seconds)
        rows.append(
            {
                "block_size": block,
                "tokens": args.tokens,
                "device": str(args.device),
                "gpu": torch.cuda.get_device_name() if torch.device(args.device).type == "cuda" else None,
                "params": sum(p.numel() for p in model.parameters()),
                "seconds_with_cache": t_cache,
                "seconds_without_cache": t_plain,
                "speedup": t_plain / t_cache,
                "same_tokens": bool(torch.equal(with_cache, without)),
            }
        )
        if args.profile:
            rows[-1]["profile_cached"] = profile_cached(model, args)
        r = rows[-1]
        print(
            f"L'={block}: {t_cache:.2f} s with cache, {t_plain:.2f} s without, {r['speedup']:.1f}x, "
            f"same tokens: {r['same_tokens']}",
            flush=True,
        )
    report = {"args": {k: str(v) for k, v in vars(args).items()}, "rows": rows}
    out_path = write_result(
        report,
        script="language_kv_cache",
        variant=variant,
        device=args.device,
        packages=("diff-language",),
        path=args.out,
    )
    print(f"wrote {out_path}")
    print("\n| L' | tokens | device | with cache (s) | without (s) | speed-up | same tokens |")
    print("| ---: | ---: | --- | ---: | ---: | ---: | --- |")
    for r in rows:
        print(
            f"| {r['block_size']} | {r['tokens']} | {r['device']} | {r['seconds_with_cache']:.2f} | "
            f"{r['seconds_without_cache']:.2f} | {r['speedup']:.1f}x | {r['same_tokens']} |"
        )


if __name__ == "__main__":
    main()
