"""``diffuse bench language``: train a small BD3-LM on the synthetic HMM language, evaluate it, sample from it.

Quick mode (CPU, about a minute): L = 32, L' = 4, a 2-layer width-64 model for 300 steps. It reports the
validation NELBO against the true entropy of the windows, sample grammaticality / entropy / distinct-n,
and the KV-cache speed-up (with identical tokens) on a 64-token generation (512 in full mode).

Model code is imported when the benchmark runs, so that registering the command line stays light.
"""

from __future__ import annotations

import time
from pathlib import Path

from diffcore.modality import BenchResult

__all__ = ["bench"]


def bench(out_dir: Path, quick: bool) -> BenchResult:
    """Train, evaluate and sample a BD3-LM; write ``pipeline/``, ``samples.txt`` and ``metrics.json`` into
    ``out_dir``.

    On the CPU it runs on one thread (restored afterwards): the models are too small to gain from more, and
    on a shared machine several threads spin at every barrier (measured: 2-3 s per step instead of 0.1 s).
    """
    from diffcore.device import resolve_device

    from diff_language.pipeline import cpu_threads

    with cpu_threads(1, resolve_device("auto")):
        return _bench(out_dir, quick)


def _bench(out_dir: Path, quick: bool) -> BenchResult:
    import torch
    from diffcore.config import apply_overrides
    from diffcore.device import resolve_device
    from diffcore.io import write_json
    from diffcore.rng import make_generator, seeded

    from diff_language.config import CorpusConfig, LanguageTrainConfig, SamplingConfig
    from diff_language.data import build_corpus
    from diff_language.io import write_samples_text
    from diff_language.metrics import distinct_n, grammaticality, token_entropy, validation_nelbo
    from diff_language.models import BD3LM, BD3LMConfig
    from diff_language.pipeline import LanguagePipeline, train_model
    from diff_language.sampling import generate

    start = time.perf_counter()
    out_dir.mkdir(parents=True, exist_ok=True)
    corpus = CorpusConfig(kind="synthetic", train_tokens=100_000 if quick else 1_000_000)
    data = build_corpus(corpus)
    seq_len, block = (32, 4) if quick else (64, 4)
    device = resolve_device("auto")
    with seeded(0):
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
    config = apply_overrides(
        LanguageTrainConfig(),
        {
            "batch_size": 32,
            "clip_search_every": 100 if quick else 500,
            "clip_search_batches": 4 if quick else 8,
            "train": {
                "steps": 300 if quick else 3000,
                "lr": 3e-3,
                "warmup_steps": 30 if quick else 100,
                "log_every": 100,
                "device": device.type,
            },
        },
    )
    model, result = train_model(model, data.train, config, keep_run=False)
    ev = validation_nelbo(model, data.val, max_windows=128 if quick else None, repeats=4 if quick else 32)
    truth, _ = data.hmm.window_entropy(seq_len, samples=2000, generator=make_generator(0))

    g = make_generator(1, device)
    samples = (
        generate(model, seq_len, batch_size=16 if quick else 64, config=SamplingConfig(), generator=g)
        .cpu()
        .tolist()
    )
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
    LanguagePipeline(model, data.tokenizer, corpus).save_pretrained(out_dir / "pipeline")
    write_samples_text([data.tokenizer.decode(s) for s in samples], out_dir / "samples.txt")
    write_json({**metrics, "clips": result.clips}, out_dir / "metrics.json")
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
        files=["samples.txt", "metrics.json", "pipeline/pipeline.json"],
    )


def _timed_generation(model, n: int, cache: bool):
    """Generate ``n`` tokens for one sequence (seed 0); returns the tokens and the wall seconds."""
    import torch
    from diffcore.rng import make_generator

    from diff_language.config import SamplingConfig
    from diff_language.sampling import generate

    device = next(model.parameters()).device
    g = make_generator(0, device)
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    out = generate(model, n, batch_size=1, config=SamplingConfig(use_kv_cache=cache), generator=g)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return out, time.perf_counter() - start
