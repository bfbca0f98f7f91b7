"""Perplexity bound of BD3-LM for block sizes L' = 1 (AR), 4, 8, 16 and L (MDLM): same model, steps and data.

For every (corpus, seed, L') a model of the same size is trained through ``diffcore.training.Trainer`` for the
same number of steps on the same windows in the same order (the seed fixes the initialisation and the data
order), with warm-up + cosine learning rate, AR on the masking range [1, 1] for L' = 1, and BD3-LM's
clip-range search (Sec. 4.2) for L' > 1. Each model is evaluated on the WHOLE validation set (every
non-overlapping window) with the masked-count form of the NELBO and stratified draws
(``diff_language.metrics``): full time range, unbiased, with the standard error over windows and its
Monte-Carlo part. Consecutive block sizes are compared by paired differences over the same windows.
The summary gives mean +- s.e. over seeds and says for each neighbouring pair whether the gap is resolved.

    uv run python benchmarks/language/language_perplexity.py --corpus synthetic --seeds 0 --samples 0 \
        --variant synthetic                                 # the CPU pilot: language_perplexity-synthetic-cpu.json
    uv run python benchmarks/language/language_perplexity.py --quick                    # smoke run (CPU)
    uv run python benchmarks/language/language_perplexity.py --merge a.json b.json --out all.json  # combine runs

Writes benchmarks/results/language_perplexity[-<variant>]-<device>.json (``--variant``; ``quick`` for
``--quick``), rewritten after every model.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch
from diff_language.config import LanguageTrainConfig, SamplingConfig
from diff_language.data import SparseHMM, TokenCorpus, pydoc_documents, synthetic_corpus, text_corpus
from diff_language.metrics import (
    NelboEstimate,
    distinct_n,
    grammaticality,
    paired_difference,
    token_entropy,
    validation_nelbo,
)
from diff_language.models import BD3LM, BD3LMConfig
from diff_language.pipeline import train_model
from diff_language.sampling import generate
from diff_language.tokenizer import train_bpe
from diffcore.config import apply_overrides

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: the shared helpers
from results_io import result_path, write_result


def build_corpus(name: str, quick: bool) -> TokenCorpus:
    if name == "synthetic":
        hmm = SparseHMM(n_states=6, vocab_size=16, branching=3, emit=3, seed=0)
        return synthetic_corpus(hmm, train_tokens=50_000 if quick else 1_000_000, val_tokens=20_000)
    train_docs, val_docs = pydoc_documents()
    return text_corpus("pydoc-topics", train_docs, val_docs, train_bpe(train_docs, vocab_size=512))


def run_one(corpus: TokenCorpus, block_size: int, seed: int, args) -> tuple[dict, NelboEstimate]:
    config = BD3LMConfig(
        vocab_size=corpus.tokenizer.vocab_size + 1,
        seq_len=args.seq_len,
        block_size=block_size,
        dim=args.dim,
        n_layers=args.layers,
        n_heads=args.heads,
        attention=args.attention,
    )
    torch.manual_seed(seed)
    model = BD3LM(config)
    warmup = max(1, min(200, args.steps // 10))
    tc = apply_overrides(
        LanguageTrainConfig(),
        {
            "batch_size": args.batch_size,
            "clip_search_every": 0
            if args.no_clip_search
            else (args.clip_search_every or max(1, args.steps // 8)),
            "train": {
                "steps": args.steps,
                "lr": args.lr,
                # cosine after a linear warm-up; a run no longer than its warm-up keeps a constant rate
                "lr_schedule": "cosine" if args.steps > warmup else "constant",
                "warmup_steps": warmup if args.steps > warmup else 0,
                "seed": seed,
                "log_every": max(1, args.steps // 5),
                "device": args.device,
                "mixed_precision": args.mixed_precision,
            },
        },
    )
    model, res = train_model(model, corpus.train, tc, keep_run=False)
    ev = validation_nelbo(
        model, corpus.val, max_windows=args.eval_windows, repeats=args.eval_repeats, seed=1234
    )
    row = {
        "seed": seed,
        "corpus": corpus.name,
        "block_size": block_size,
        "seq_len": args.seq_len,
        "steps": args.steps,
        **ev.as_dict(),
        "windows": ev.per_window.numel(),
        "final_train_loss": res.losses[-1][1] if res.losses else math.nan,
        "train_seconds": res.seconds,
        "clips": res.clips,
        "params": sum(p.numel() for p in model.parameters()),
    }
    if corpus.hmm is not None and args.samples:
        g = torch.Generator(device=args.device).manual_seed(1)
        out = generate(
            model,
            args.seq_len,
            batch_size=args.samples,
            config=SamplingConfig(sampler="first-hitting"),
            generator=g,
        )
        samples = out.cpu().tolist()
        row.update(
            grammaticality=grammaticality(corpus.hmm, samples),
            sample_entropy=token_entropy(samples),
            distinct_2=distinct_n(samples, 2),
        )
    return row, ev


def summarize(rows: list[dict]) -> list[dict]:
    """Per (corpus, L'): mean +- s.e. over seeds, and the paired gap to the next larger block size."""
    out = []
    for corpus in sorted({r["corpus"] for r in rows}):
        sizes = sorted({r["block_size"] for r in rows if r["corpus"] == corpus})
        for i, b in enumerate(sizes):
            vals = torch.tensor([r["nelbo"] for r in rows if r["corpus"] == corpus and r["block_size"] == b])
            entry = {"corpus": corpus, "block_size": b, "seeds": len(vals), "nelbo_mean": float(vals.mean())}
            entry["nelbo_se"] = float(vals.std() / math.sqrt(len(vals))) if len(vals) > 1 else math.nan
            if i + 1 < len(sizes):
                gaps = [
                    r["gap_to_next"]
                    for r in rows
                    if r["corpus"] == corpus and r["block_size"] == b and "gap_to_next" in r
                ]
                if gaps:
                    g = torch.tensor(gaps)
                    entry["gap_to_next_mean"] = float(g.mean())
                    entry["gap_to_next_se"] = float(g.std() / math.sqrt(len(g))) if len(g) > 1 else math.nan
                    entry["ordered_every_seed"] = bool((g <= 0).all())
            out.append(entry)
    return out


def add_paired_gaps(rows: list[dict], estimates: dict[tuple[str, int, int], NelboEstimate]) -> None:
    """Paired (same windows) difference NELBO(L') - NELBO(next larger L') for every seed, with its s.e."""
    for r in rows:
        key = (r["corpus"], r["seed"], r["block_size"])
        larger = sorted(k[2] for k in estimates if k[:2] == key[:2] and k[2] > key[2])
        if key in estimates and larger:
            gap, se = paired_difference(estimates[key], estimates[(*key[:2], larger[0])])
            r["gap_to_next"], r["gap_to_next_se"] = gap, se


def print_table(results: dict) -> None:
    print(
        "\n| corpus | seed | L' | NELBO (nats/token) | +- s.e. (MC part) | PPL bound | gap to next L' | grammatical | train s |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in results["rows"]:
        gap = f"{r['gap_to_next']:+.4f} +- {r['gap_to_next_se']:.4f}" if "gap_to_next" in r else "-"
        g = f"{r['grammaticality']:.3f}" if "grammaticality" in r else "-"
        print(
            f"| {r['corpus']} | {r['seed']} | {r['block_size']} | {r['nelbo']:.4f} | {r['stderr']:.4f} "
            f"({r['mc_stderr']:.4f}) | {r['perplexity']:.3f} | {gap} | {g} | {r['train_seconds']:.0f} |"
        )
    print(
        "\n| corpus | L' | seeds | NELBO mean +- s.e. | paired gap to next L' (mean +- s.e.) | ordered for every seed |"
    )
    print("| --- | ---: | ---: | ---: | ---: | --- |")
    for s in results["summary"]:
        gap = f"{s['gap_to_next_mean']:+.4f} +- {s['gap_to_next_se']:.4f}" if "gap_to_next_mean" in s else "-"
        ordered = str(s.get("ordered_every_seed", "-"))
        print(
            f"| {s['corpus']} | {s['block_size']} | {s['seeds']} | {s['nelbo_mean']:.4f} +- {s['nelbo_se']:.4f} "
            f"| {gap} | {ordered} |"
        )
    for name, t in results.get("truth", {}).items():
        print(f"\n{name}: true window entropy {t['window_entropy']:.4f} +- {t['stderr']:.4f} nats/token")


def merge(paths: list[Path], out: Path) -> None:
    results = {"args": [], "rows": [], "truth": {}}
    for p in paths:
        part = json.loads(p.read_text())
        results["args"].append(part["args"])
        results["rows"] += part["rows"]
        results["truth"].update(part.get("truth", {}))
    results["summary"] = summarize(results["rows"])
    device = results["args"][0].get("device", "cpu") if results["args"] else "cpu"
    write_result(results, script="language_perplexity", device=device, packages=("diff-language",), path=out)
    print_table(results)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus", choices=["synthetic", "pydoc", "both"], default="both")
    p.add_argument("--block-sizes", default="1,4,8,16,full")
    p.add_argument("--seeds", default="0,1,2", help="model initialisation and data order, comma-separated")
    p.add_argument("--seq-len", type=int, default=32)
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--heads", type=int, default=2)
    p.add_argument("--attention", choices=["sdpa", "flex", "auto"], default="sdpa")
    p.add_argument("--steps", type=int, default=800)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--clip-search-every", type=int, default=0, help="0: steps // 8")
    p.add_argument(
        "--no-clip-search", action="store_true", help="control: train every L' > 1 on the full range [0, 1]"
    )
    p.add_argument("--eval-windows", type=int, default=None, help="default: the whole validation set")
    p.add_argument("--eval-repeats", type=int, default=32)
    p.add_argument("--samples", type=int, default=64)
    p.add_argument("--device", default="cpu")
    p.add_argument("--mixed-precision", choices=["no", "bf16"], default="no")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--quick", action="store_true", help="tiny smoke run")
    p.add_argument("--merge", type=Path, nargs="+", default=None, help="combine result files into --out")
    p.add_argument("--variant", default=None, help="result file variant, e.g. synthetic, pydoc-noclip")
    p.add_argument(
        "--out", type=Path, default=None, help="default benchmarks/results/language_perplexity-..."
    )
    args = p.parse_args()
    if args.merge:
        if args.out is None:
            p.error("--merge: name the combined file with --out")
        merge(args.merge, args.out)
        return
    torch.set_num_threads(args.threads)
    if args.quick:
        args.steps, args.eval_windows, args.eval_repeats, args.samples, args.seq_len = 20, 32, 4, 4, 16
        args.block_sizes, args.seeds, args.clip_search_every = "1,4,full", "0,1", 10
        args.variant = args.variant or "quick"
    if args.out is None:
        args.out = result_path("language_perplexity", args.variant, args.device)
    corpora = ["synthetic", "pydoc"] if args.corpus == "both" else [args.corpus]
    sizes = [args.seq_len if b == "full" else int(b) for b in args.block_sizes.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]
    results: dict = {"args": {k: str(v) for k, v in vars(args).items()}, "rows": [], "truth": {}}
    estimates: dict[tuple[str, int, int], NelboEstimate] = {}
    for name in corpora:
        start = time.perf_counter()
        corpus = build_corpus(name, args.quick)
        if corpus.hmm is not None:
            h, se = corpus.hmm.window_entropy(
                args.seq_len,
                samples=2000 if args.quick else 20000,
                generator=torch.Generator().manual_seed(2),
            )
            results["truth"][corpus.name] = {"window_entropy": h, "stderr": se}
        print(f"{corpus.name}: corpus ready in {time.perf_counter() - start:.1f} s", flush=True)
        for seed in seeds:
            for b in sizes:
                row, ev = run_one(corpus, b, seed, args)
                results["rows"].append(row)
                estimates[(corpus.name, seed, b)] = ev
                print(
                    f"  {corpus.name} seed {seed} L'={b}: NELBO {ev.nelbo:.4f} +- {ev.stderr:.4f} "
                    f"(MC {ev.mc_stderr:.4f}), {row['train_seconds']:.0f} s training",
                    flush=True,
                )
                add_paired_gaps(results["rows"], estimates)
                results["summary"] = summarize(results["rows"])
                write_result(
                    results,
                    script="language_perplexity",
                    variant=args.variant,
                    device=args.device,
                    packages=("diff-language",),
                    path=args.out,
                )
    print_table(results)


if __name__ == "__main__":
    main()
