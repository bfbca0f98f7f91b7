"""AR, BD3-LM (L' = 4, 8, 16) and MDLM on the Python corpus: resumable training, NELBO, parse rate, long samples.

Every (model, seed) is one run folder under --run-dir, trained through ``diffcore.training.Trainer``
(``diff_language.pipeline.train_model``) on the same windows in the same order for the same seed, the same
steps, batch and learning rate (so the same tokens; every block size runs the same 2L-token training pass, so
the same compute). A call of this script works until --budget-seconds are spent and stops cleanly (the Trainer
ends at a step boundary and checkpoints); calling it again with the same arguments continues where it stopped
(``train.resume=latest``, the clip-search range restored with the checkpoint). Seeds go outermost, so seed 0 of
every model finishes first.

When a run has all its steps it is evaluated once (``eval.json`` in its folder):
- NELBO per token on the validation split (full time range, masked-count form, ``diff_language.metrics``);
- samples: --samples documents started at EOS, up to seq_len tokens (KV cache), cut at EOS; the fraction that
  parse with ``ast.parse`` (``python_parse_fraction``; documents cut at the limit lose their last line);
- variable-length generation past the training context: --long-samples sequences of up to
  --long-factor x seq_len tokens, stopped at EOS; their lengths, the fraction longer than seq_len, and the
  parse fraction of those (MDLM, L' = L, keeps no context from one window to the next: shown, not hidden).

The summary over seeds (mean +- s.e.): NELBO and perplexity bound, the perplexity ratio to AR paired by seed
against BD3-LM's LM1B ratios (BD3(4) / AR <= 28.23 / 22.83 = 1.24, MDLM / AR <= 31.78 / 22.83 = 1.39), the
ordering AR <= BD3(4) <= BD3(8) <= BD3(16) <= MDLM with paired gaps, the parse fractions against AR's.
Writes benchmarks/results/language_python[-<variant>]-<device>.json (rewritten by every call).

    uv run python benchmarks/language/language_python.py --quick           # CPU smoke run (~3 min): docs corpus
    diffuse language corpus --out data/python-corpus                        # once (CPU, minutes)
    python benchmarks/language/language_python.py --corpus data/python-corpus --run-dir runs/lang110m \\
        --device cuda --budget-seconds 540                                  # repeat until it says "all done"
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import shutil
import sys
import time
from pathlib import Path

import torch
from diff_language.config import LanguageTrainConfig, PythonCorpusConfig, SamplingConfig
from diff_language.data.python_corpus import build_python_corpus, load_python_corpus
from diff_language.metrics import python_parse_fraction, validation_nelbo
from diff_language.models import BD3LM, BD3LMConfig
from diff_language.pipeline import train_model
from diff_language.sampling import generate, truncate_at_eos
from diffcore.io import write_json
from diffcore.rng import make_generator, seeded

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: the shared helpers
import itertools

from results_io import write_result

PAPER_RATIO = {"bd3-4": 28.23 / 22.83, "mdlm": 31.78 / 22.83}  # BD3-LM Table 1 (LM1B), upper bounds
ORDER = ("ar", "bd3-4", "bd3-8", "bd3-16", "mdlm")


def block_size(name: str, seq_len: int) -> int:
    """L' of a model name: ar = 1, bd3-<n> = n, mdlm = seq_len."""
    if name == "ar":
        return 1
    if name == "mdlm":
        return seq_len
    if name.startswith("bd3-") and name[4:].isdigit():
        return int(name[4:])
    raise ValueError(f"--models: expected ar, bd3-<n> or mdlm, got {name!r}")


def train_config(
    args, run_dir: Path, seed: int, block: int, seconds: float, resume: bool
) -> LanguageTrainConfig:
    config = LanguageTrainConfig(batch_size=args.batch_size, clip_search_every=args.clip_search_every)
    config.train = dataclasses.replace(
        config.train,
        steps=args.steps,
        lr=args.lr,
        warmup_steps=args.warmup_steps,
        mixed_precision=args.mixed_precision,
        checkpoint_every=args.checkpoint_every,
        log_every=max(1, min(100, args.steps // 10)),
        output_dir=str(run_dir),
        resume="latest" if resume else None,
        seed=seed,
        device=args.device,
        max_seconds=max(1.0, seconds),
        progress_bar=False,
    )
    return config


def latest_step(run_dir: Path) -> int:
    found = sorted((run_dir / "checkpoints").glob("checkpoint-*")) if run_dir.is_dir() else []
    return int(found[-1].name.split("-")[1]) if found else 0


def new_model(args, vocab: int, block: int, seed: int) -> BD3LM:
    config = BD3LMConfig(
        vocab_size=vocab + 1, seq_len=args.seq_len, block_size=block, dim=args.dim, n_layers=args.layers,
        n_heads=args.heads,
    )  # fmt: skip
    with seeded(seed):
        return BD3LM(config)


def samples(
    model: BD3LM, tok, n: int, tokens: int, args, seed: int
) -> tuple[list[str], list[bool], list[int]]:
    """n documents started at EOS, up to ``tokens`` new tokens each: texts, whether each ended, lengths."""
    device = next(model.parameters()).device
    out: list[list[int]] = []
    ended: list[bool] = []
    g = make_generator(seed, device)
    config = SamplingConfig(top_p=args.top_p, cuda_graph=device.type == "cuda")
    for start in range(0, n, args.sample_batch):
        b = min(args.sample_batch, n - start)
        prompt = torch.full((b, 1), tok.eos_id, dtype=torch.long, device=device)
        ids = generate(model, tokens, prompt=prompt, config=config, eos_id=tok.eos_id, generator=g)[:, 1:]
        for row in ids.tolist():
            ended.append(tok.eos_id in row)
        out.extend(truncate_at_eos(ids, tok.eos_id))
    return [tok.decode(r) for r in out], ended, [len(r) for r in out]


def evaluate_run(model: BD3LM, data, args, seed: int) -> dict:
    est = validation_nelbo(model, data.val.to(next(model.parameters()).device), max_windows=args.eval_windows,
                           repeats=args.eval_repeats, batch_size=args.eval_batch, seed=seed)  # fmt: skip
    texts, ended, _ = samples(model, data.tokenizer, args.samples, args.seq_len, args, seed)
    long_texts, long_ended, lengths = samples(
        model, data.tokenizer, args.long_samples, args.long_factor * args.seq_len, args, seed + 1
    )
    beyond = [i for i, n in enumerate(lengths) if n > args.seq_len]
    return {
        "validation": est.as_dict(),
        "per_window": est.per_window.tolist(),
        "parse_fraction": python_parse_fraction(texts, ended),
        "ended_fraction": sum(ended) / len(ended),
        "long": {
            "max_tokens": args.long_factor * args.seq_len,
            "lengths": lengths,
            "mean_length": sum(lengths) / len(lengths),
            "fraction_beyond_context": len(beyond) / len(lengths),
            "parse_fraction_beyond_context": (
                python_parse_fraction([long_texts[i] for i in beyond], [long_ended[i] for i in beyond])
                if beyond else None
            ),
        },
        "sample_texts": texts[:4],
    }  # fmt: skip


def run_all(args, data, deadline: float) -> bool:
    """Train and evaluate every (seed, model) until the deadline; True when everything is done."""
    for seed in args.seed_list:
        for name in args.model_list:
            run_dir = args.run_dir / f"{name}-s{seed}"
            if (run_dir / "eval.json").is_file():
                continue
            left = deadline - time.perf_counter()
            if left < args.min_seconds:
                return False
            block = block_size(name, args.seq_len)
            step = latest_step(run_dir)
            if step == 0 and run_dir.exists():  # a run stopped before its first checkpoint: nothing to keep
                shutil.rmtree(run_dir)
            print(f"[{name} seed {seed}] from step {step} of {args.steps}, {left:.0f} s left", flush=True)
            config = train_config(args, run_dir, seed, block, left - args.eval_reserve, resume=step > 0)
            model = new_model(args, data.tokenizer.vocab_size, block, seed)
            model, result = train_model(model, data.train, config)
            if latest_step(run_dir) < args.steps:
                return False
            write_json({"seconds": result.seconds, "clips": result.clips}, run_dir / "train_result.json")
            model.to(args.device)
            evaluation = evaluate_run(model, data, args, seed)
            evaluation.update(
                model=name, seed=seed, block_size=block, params=sum(p.numel() for p in model.parameters())
            )
            write_json(evaluation, run_dir / "eval.json")
            v = evaluation["validation"]
            print(f"[{name} seed {seed}] NELBO {v['nelbo']:.4f} +- {v['stderr']:.4f}, parses "
                  f"{evaluation['parse_fraction']:.2f}, long mean {evaluation['long']['mean_length']:.0f}", flush=True)  # fmt: skip
    return True


def mean_se(values: list[float]) -> tuple[float, float | None]:
    m = sum(values) / len(values)
    if len(values) < 2:
        return m, None
    return m, math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1) / len(values))


def summarise(args) -> dict:
    """Mean +- s.e. over the seeds that finished, per model; ratios and gaps paired by seed."""
    evals: dict[str, dict[int, dict]] = {}
    for name in args.model_list:
        for seed in args.seed_list:
            path = args.run_dir / f"{name}-s{seed}" / "eval.json"
            if path.is_file():
                evals.setdefault(name, {})[seed] = json.loads(path.read_text())
    rows = []
    for i, name in enumerate(args.model_list):
        runs = evals.get(name, {})
        if not runs:
            continue
        seeds = sorted(runs)
        nelbo = [runs[s]["validation"]["nelbo"] for s in seeds]
        row = {"model": name, "block_size": block_size(name, args.seq_len), "seeds": seeds}
        row["nelbo_mean"], row["nelbo_se"] = mean_se(nelbo)
        row["perplexity_mean"] = math.exp(row["nelbo_mean"])
        row["parse_fraction_mean"], row["parse_fraction_se"] = mean_se(
            [runs[s]["parse_fraction"] for s in seeds]
        )
        row["long_mean_length"], _ = mean_se([runs[s]["long"]["mean_length"] for s in seeds])
        row["long_fraction_beyond_context"], _ = mean_se(
            [runs[s]["long"]["fraction_beyond_context"] for s in seeds]
        )
        ar = evals.get("ar", {})
        paired = [s for s in seeds if s in ar]
        if paired:
            ratios = [math.exp(runs[s]["validation"]["nelbo"] - ar[s]["validation"]["nelbo"]) for s in paired]
            row["ppl_ratio_to_ar_mean"], row["ppl_ratio_to_ar_se"] = mean_se(ratios)
            row["parse_fraction_minus_ar_mean"], _ = mean_se(
                [runs[s]["parse_fraction"] - ar[s]["parse_fraction"] for s in paired]
            )
            if name in PAPER_RATIO:
                row["paper_ratio_bound"] = PAPER_RATIO[name]
                row["within_paper_ratio"] = row["ppl_ratio_to_ar_mean"] <= PAPER_RATIO[name]
        nxt = args.model_list[i + 1] if i + 1 < len(args.model_list) else None
        if nxt and evals.get(nxt):
            both = [s for s in seeds if s in evals[nxt]]
            if both:
                gaps = [runs[s]["validation"]["nelbo"] - evals[nxt][s]["validation"]["nelbo"] for s in both]
                row["gap_to_next_mean"], row["gap_to_next_se"] = mean_se(gaps)
        rows.append(row)
    means = [r["nelbo_mean"] for r in rows]
    ordered = all(a <= b for a, b in itertools.pairwise(means)) if len(rows) == len(args.model_list) else None
    return {"rows": rows, "ordering_holds_at_mean": ordered, "complete": all(
        len(evals.get(n, {})) == len(args.seed_list) for n in args.model_list)}  # fmt: skip


def quick_corpus(run_dir: Path) -> Path:
    folder = run_dir / "corpus"
    if not (folder / "corpus.json").is_file():
        config = PythonCorpusConfig(sources=("docs",), bpe_vocab=512, val_fraction=0.1, test_fraction=0.05)
        build_python_corpus(config, folder, progress=False)
    return folder


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus", type=Path, help="a folder built by `diffuse language corpus`")
    p.add_argument("--run-dir", type=Path, default=Path("runs/language-python"))
    p.add_argument("--models", default=",".join(ORDER))
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--seq-len", type=int, default=1024)
    p.add_argument("--dim", type=int, default=768)
    p.add_argument("--layers", type=int, default=12)
    p.add_argument("--heads", type=int, default=12)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--steps", type=int, default=5000)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--warmup-steps", type=int, default=500)
    p.add_argument("--mixed-precision", default="bf16", choices=["no", "bf16", "fp16"])
    p.add_argument("--checkpoint-every", type=int, default=500)
    p.add_argument("--clip-search-every", type=int, default=500)
    p.add_argument("--eval-windows", type=int, default=256)
    p.add_argument("--eval-repeats", type=int, default=8)
    p.add_argument("--eval-batch", type=int, default=32)
    p.add_argument("--samples", type=int, default=64)
    p.add_argument("--long-samples", type=int, default=16)
    p.add_argument("--long-factor", type=int, default=3, help="long samples: up to this many contexts")
    p.add_argument("--sample-batch", type=int, default=32)
    p.add_argument("--top-p", type=float, default=0.95)
    p.add_argument("--budget-seconds", type=float, default=540, help="stop this call after about this long")
    p.add_argument(
        "--eval-reserve", type=float, default=90, help="seconds kept for evaluating a finished run"
    )
    p.add_argument("--min-seconds", type=float, default=60, help="start no run with less time left")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--quick", action="store_true", help="CPU smoke run: docs-only corpus, tiny models")
    p.add_argument("--variant", default=None)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    start = time.perf_counter()
    torch.set_num_threads(args.threads)
    if args.quick:
        args.run_dir = (
            args.run_dir
            if args.run_dir != Path("runs/language-python")
            else Path("runs/language-python-quick")
        )
        args.corpus = quick_corpus(args.run_dir)
        args.seq_len, args.dim, args.layers, args.heads, args.batch_size = 64, 64, 2, 2, 16
        args.steps, args.warmup_steps, args.checkpoint_every, args.clip_search_every = 60, 10, 20, 20
        args.eval_windows, args.eval_repeats, args.samples, args.long_samples, args.sample_batch = (
            32,
            2,
            8,
            4,
            8,
        )
        args.mixed_precision, args.device, args.eval_reserve, args.min_seconds = "no", "cpu", 5, 5
        args.variant = args.variant or "quick"
    if args.corpus is None:
        p.error("--corpus: expected a corpus folder (build one with `diffuse language corpus --out DIR`)")
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    args.model_list = [m.strip() for m in args.models.split(",")]
    args.seed_list = [int(s) for s in args.seeds.split(",")]
    for name in args.model_list:
        if args.seq_len % block_size(name, args.seq_len):
            p.error(f"--models: {name}'s block size does not divide --seq-len {args.seq_len}")
    data = load_python_corpus(args.corpus)
    done = run_all(args, data, start + args.budget_seconds)
    summary = summarise(args)
    settings = {k: str(v) for k, v in vars(args).items() if k not in ("model_list", "seed_list")}
    corpus_info = json.loads((args.corpus / "corpus.json").read_text())
    report = {"args": settings, "corpus": {k: corpus_info[k] for k in ("documents", "bytes", "tokens", "python")},
              **summary}  # fmt: skip
    path = write_result(report, script="language_python", variant=args.variant, device=args.device,
                        packages=("diff-language",), path=args.out)  # fmt: skip
    print(f"wrote {path}")
    print(
        "\n| model | L' | seeds | NELBO | PPL bound | PPL / AR | paper bound | parses | parses - AR | long: mean len, > L |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in summary["rows"]:
        se = f" +- {r['nelbo_se']:.4f}" if r["nelbo_se"] is not None else ""
        ratio = f"{r['ppl_ratio_to_ar_mean']:.3f}" if "ppl_ratio_to_ar_mean" in r else "-"
        bound = f"{r['paper_ratio_bound']:.2f}" if "paper_ratio_bound" in r else "-"
        diff = f"{r['parse_fraction_minus_ar_mean']:+.2f}" if "parse_fraction_minus_ar_mean" in r else "-"
        print(f"| {r['model']} | {r['block_size']} | {len(r['seeds'])} | {r['nelbo_mean']:.4f}{se} | "
              f"{r['perplexity_mean']:.2f} | {ratio} | {bound} | {r['parse_fraction_mean']:.2f} | {diff} | "
              f"{r['long_mean_length']:.0f}, {r['long_fraction_beyond_context']:.2f} |")  # fmt: skip
    print("all done" if done else "not finished: run the same command again to continue", flush=True)


if __name__ == "__main__":
    main()
