"""``diffuse bench language``: train a small BD3-LM on the synthetic HMM language, evaluate it, sample from it.

Quick mode (CPU, a few minutes): L = 32, L' = 4, a 2-layer width-64 model for 200 steps. It reports the
validation NELBO against the true entropy of the windows, sample grammaticality / entropy / distinct-n,
and the KV-cache speed-up (with identical tokens) on a 128-token generation.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch
from diffcore.modality import BenchResult

from diff_language.data import CorpusSpec, build_corpus
from diff_language.metrics import distinct_n, grammaticality, token_entropy
from diff_language.model import BD3LM, BD3LMConfig
from diff_language.pipeline import TrainConfig, evaluate, save_run, train
from diff_language.sampling import SamplingConfig, generate

__all__ = ["bench"]


def _timed_generation(model: BD3LM, n: int, cache: bool) -> tuple[torch.Tensor, float]:
    g = torch.Generator().manual_seed(0)
    start = time.perf_counter()
    out = generate(model, n, batch_size=1, config=SamplingConfig(use_kv_cache=cache), generator=g)
    return out, time.perf_counter() - start


def bench(out_dir: Path, quick: bool) -> BenchResult:
    """Train, evaluate and sample a BD3-LM; write ``model/``, ``samples.txt`` and ``metrics.json`` into ``out_dir``.

    On the CPU it runs on one thread (restored afterwards): the models are too small to gain from more, and
    on a shared machine several threads spin at every barrier (measured: 2-3 s per step instead of 0.1 s).
    """
    threads = torch.get_num_threads()
    if not torch.cuda.is_available():
        torch.set_num_threads(1)
    try:
        return _bench(out_dir, quick)
    finally:
        torch.set_num_threads(threads)


def _bench(out_dir: Path, quick: bool) -> BenchResult:
    start = time.perf_counter()
    out_dir.mkdir(parents=True, exist_ok=True)
    spec = CorpusSpec(kind="synthetic", train_tokens=100_000 if quick else 1_000_000)
    data = build_corpus(spec)
    seq_len, block = (32, 4) if quick else (64, 4)
    model = BD3LM(
        BD3LMConfig(
            vocab_size=data.tokenizer.vocab_size + 1,
            seq_len=seq_len,
            block_size=block,
            dim=64 if quick else 128,
            n_layers=2 if quick else 4,
            n_heads=2 if quick else 4,
        )
    )
    cfg = TrainConfig(
        steps=300 if quick else 3000,
        batch_size=32,
        lr=3e-3,
        warmup=30 if quick else 100,
        clip_search_every=100 if quick else 500,
        clip_search_batches=4 if quick else 8,
        log_every=100,
    )
    model, result = train(model, data.train, cfg)
    ev = evaluate(model, data.val, max_windows=128 if quick else None, repeats=4 if quick else 32)
    truth, _ = data.hmm.window_entropy(seq_len, samples=2000, generator=torch.Generator().manual_seed(0))

    g = torch.Generator().manual_seed(1)
    samples = generate(
        model, seq_len, batch_size=16 if quick else 64, config=SamplingConfig(), generator=g
    ).tolist()
    n_gen = 64 if quick else 512
    with_cache, t_cache = _timed_generation(model, n_gen, cache=True)
    without_cache, t_plain = _timed_generation(model, n_gen, cache=False)

    metrics = {
        "val_nelbo_nats_per_token": ev.nelbo,
        "val_nelbo_stderr": ev.stderr,
        "val_nelbo_mc_stderr": ev.mc_stderr,
        "val_perplexity_bound": ev.perplexity,
        "true_window_entropy": truth,
        "nelbo_over_entropy": ev.nelbo / truth,
        "grammaticality": grammaticality(data.hmm, samples),
        "sample_token_entropy": token_entropy(samples),
        "distinct_1": distinct_n(samples, 1),
        "distinct_2": distinct_n(samples, 2),
        "kv_cache_speedup": t_plain / t_cache,
        "kv_cache_same_tokens": float(torch.equal(with_cache, without_cache)),
        "train_seconds": result.seconds,
    }
    save_run(out_dir / "model", model, data.tokenizer, metrics)
    texts = [data.tokenizer.decode(s) for s in samples]
    (out_dir / "samples.txt").write_text("\n".join(texts) + "\n")
    (out_dir / "metrics.json").write_text(json.dumps({**metrics, "clips": result.clips}, indent=2))
    summary = (
        f"BD3-LM L'={block} on the HMM language: NELBO {ev.nelbo:.3f} vs true {truth:.3f} nats/token "
        f"({metrics['nelbo_over_entropy']:.3f}x), grammatical {metrics['grammaticality']:.2f}, "
        f"KV cache {metrics['kv_cache_speedup']:.1f}x faster on {n_gen} tokens"
    )
    return BenchResult(
        modality="language",
        status="ok",
        summary=summary,
        seconds=time.perf_counter() - start,
        metrics=metrics,
        files=["samples.txt", "metrics.json", "model/config.json"],
    )
