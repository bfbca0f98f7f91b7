"""Perplexity bound of BD3-LM for block sizes L' = 1 (AR), 4, 8, 16 and L (MDLM), same model and steps.

Trains one tiny model per (corpus, block size) on CPU or --device, evaluates the NELBO on the fixed
validation windows with the full time range (same windows, same noise seeds for every block size), and for
the synthetic HMM language compares with the true window entropy and measures sample grammaticality.
Prints a markdown table and writes benchmarks/results/language_perplexity.json (updated after each run).

    uv run python benchmarks/language_perplexity.py              # the README table (CPU, ~30 min)
    uv run python benchmarks/language_perplexity.py --quick      # a smoke run (seconds)
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from diff_language.data import pydoc_documents, synthetic_corpus, text_corpus
from diff_language.metrics import distinct_n, grammaticality, token_entropy
from diff_language.model import BD3LM, BD3LMConfig
from diff_language.pipeline import TrainConfig, evaluate, train
from diff_language.sampling import SamplingConfig, generate
from diff_language.synthetic import SparseHMM
from diff_language.tokenizer import train_bpe


def build_corpus(name: str, quick: bool):
    if name == "synthetic":
        hmm = SparseHMM(n_states=6, vocab_size=16, branching=3, emit=3, seed=0)
        return synthetic_corpus(hmm, train_tokens=50_000 if quick else 1_000_000, val_tokens=20_000)
    train_docs, val_docs = pydoc_documents()
    return text_corpus("pydoc-topics", train_docs, val_docs, train_bpe(train_docs, vocab_size=512))


def run_one(corpus, block_size: int, args) -> dict:
    seq_len = args.seq_len
    config = BD3LMConfig(
        vocab_size=corpus.tokenizer.vocab_size + 1,
        seq_len=seq_len,
        block_size=block_size,
        dim=args.dim,
        n_layers=args.layers,
        n_heads=args.heads,
        attention="auto",
    )
    torch.manual_seed(args.seed)
    model = BD3LM(config)
    tc = TrainConfig(
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        warmup=min(100, args.steps // 10),
        clip_search_every=args.clip_search_every,
        seed=args.seed,
        log_every=max(1, args.steps // 5),
        device=args.device,
    )
    res = train(
        model, corpus.train, tc, log=lambda s: print(f"  [{corpus.name} L'={block_size}] {s}", flush=True)
    )
    ev = evaluate(model, corpus.val, max_windows=args.eval_windows, repeats=args.eval_repeats)
    row = {
        "seed": args.seed,
        "corpus": corpus.name,
        "block_size": block_size,
        "seq_len": seq_len,
        "steps": args.steps,
        "nelbo": ev["nelbo"],
        "perplexity": ev["perplexity"],
        "stderr": ev["stderr"],
        "train_seconds": res.seconds,
        "clips": res.clips,
        "params": sum(p.numel() for p in model.parameters()),
    }
    if corpus.hmm is not None:
        g = torch.Generator().manual_seed(1)
        with torch.no_grad():
            out = generate(
                model,
                seq_len,
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
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus", choices=["synthetic", "pydoc", "both"], default="both")
    p.add_argument("--block-sizes", default="1,4,8,16,full")
    p.add_argument("--seq-len", type=int, default=32)
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--heads", type=int, default=2)
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--clip-search-every", type=int, default=0)
    p.add_argument("--eval-windows", type=int, default=512)
    p.add_argument("--eval-repeats", type=int, default=8)
    p.add_argument("--samples", type=int, default=64)
    p.add_argument("--seed", type=int, default=0, help="model initialisation and training data order")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--quick", action="store_true", help="tiny smoke run")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/language_perplexity.json"))
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if args.quick:
        args.steps, args.eval_windows, args.eval_repeats, args.samples, args.seq_len = 10, 32, 1, 4, 16
        args.block_sizes = "1,4,full"
        if args.out == p.get_default("out"):
            args.out = Path("benchmarks/results/language_perplexity_quick.json")
    corpora = ["synthetic", "pydoc"] if args.corpus == "both" else [args.corpus]
    sizes = [args.seq_len if b == "full" else int(b) for b in args.block_sizes.split(",")]
    results = {"args": {k: str(v) for k, v in vars(args).items()}, "rows": [], "truth": {}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for name in corpora:
        start = time.perf_counter()
        corpus = build_corpus(name, args.quick)
        if corpus.hmm is not None:
            h, se = corpus.hmm.window_entropy(
                args.seq_len,
                samples=2000 if args.quick else 20000,
                generator=torch.Generator().manual_seed(2),
            )
            results["truth"][corpus.name] = {
                "window_entropy": h,
                "stderr": se,
                "entropy_rate": corpus.hmm.entropy_rate(20000),
            }
            print(
                f"{corpus.name}: true entropy of {args.seq_len}-token windows {h:.4f} +- {se:.4f} nats/token"
            )
        print(f"{corpus.name}: corpus ready in {time.perf_counter() - start:.1f} s", flush=True)
        for b in sizes:
            results["rows"].append(run_one(corpus, b, args))
            r = results["rows"][-1]
            print(
                f"  -> L'={b}: NELBO {r['nelbo']:.4f} +- {r['stderr']:.4f}, PPL {r['perplexity']:.3f}",
                flush=True,
            )
            args.out.write_text(json.dumps(results, indent=2))
    print_table(results)


def print_table(results: dict) -> None:
    print(
        "\n| corpus | L' | NELBO (nats/token) | PPL bound | grammatical | sample entropy | distinct-2 | train s |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in results["rows"]:
        g = f"{r['grammaticality']:.3f}" if "grammaticality" in r else "-"
        e = f"{r['sample_entropy']:.3f}" if "sample_entropy" in r else "-"
        d = f"{r['distinct_2']:.3f}" if "distinct_2" in r else "-"
        lb = "full" if r["block_size"] == r["seq_len"] else r["block_size"]
        print(
            f"| {r['corpus']} | {lb} | {r['nelbo']:.4f} +- {r['stderr']:.4f} | {r['perplexity']:.3f} | {g} | {e} | "
            f"{d} | {r['train_seconds']:.0f} |"
        )
    for name, t in results["truth"].items():
        print(
            f"\n{name}: true window entropy {t['window_entropy']:.4f} nats/token, entropy rate {t['entropy_rate']:.4f}"
        )


if __name__ == "__main__":
    main()
