"""``diffuse language train | sample | evaluate`` and the ``diffuse bench language`` benchmark.

Registered with the ``diffuse`` command line through the entry point ``diffcore.modalities``.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import torch
import typer
from diffcore.modality import Modality

from diff_language.bench import bench
from diff_language.data import CorpusSpec, build_corpus
from diff_language.model import BD3LM, BD3LMConfig
from diff_language.pipeline import TrainConfig, evaluate, load_run, save_run, train
from diff_language.sampling import SamplingConfig, generate, truncate_at_eos

app = typer.Typer(
    no_args_is_help=True, add_completion=False, help="Block diffusion language models (BD3-LM)."
)

CORPUS_FILE = "corpus.json"


def _spec(corpus: str, paths: list[Path] | None, tokenizer: str, bpe_vocab: int) -> CorpusSpec:
    try:
        return CorpusSpec(
            kind=corpus, paths=tuple(str(p) for p in paths or []), tokenizer=tokenizer, bpe_vocab=bpe_vocab
        )
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc


@app.command("train")
def train_cmd(
    out: Path = typer.Option(..., "--out", help="Run folder: model, tokeniser, corpus.json, metrics.json."),
    corpus: str = typer.Option("synthetic", help="synthetic | pydoc | files"),
    paths: list[Path] = typer.Option(None, "--path", help=".txt / .jsonl files (corpus=files); repeatable."),
    tokenizer: str = typer.Option("bpe", help="bpe | bytes (text corpora)"),
    bpe_vocab: int = typer.Option(512, help="BPE vocabulary size."),
    block_size: int = typer.Option(4, help="L': 1 = autoregressive, seq-len = MDLM."),
    seq_len: int = typer.Option(64, help="Training context L."),
    dim: int = typer.Option(128),
    layers: int = typer.Option(4),
    heads: int = typer.Option(4),
    steps: int = typer.Option(2000),
    batch_size: int = typer.Option(32),
    lr: float = typer.Option(1e-3),
    clip_search_every: int = typer.Option(500, help="Steps between clip-range searches (0: full range)."),
    ema: float = typer.Option(0.0, help="EMA decay of the weights (0: no EMA)."),
    device: str = typer.Option("cpu"),
    seed: int = typer.Option(0),
) -> None:
    """Train a BD3-LM and write it, its tokeniser and its validation metrics into OUT."""
    spec = _spec(corpus, paths, tokenizer, bpe_vocab)
    data = build_corpus(spec)
    model = BD3LM(
        BD3LMConfig(
            vocab_size=data.tokenizer.vocab_size + 1,
            seq_len=seq_len,
            block_size=block_size,
            dim=dim,
            n_layers=layers,
            n_heads=heads,
        )
    )
    cfg = TrainConfig(
        steps=steps,
        batch_size=batch_size,
        lr=lr,
        clip_search_every=clip_search_every,
        ema_decay=ema or None,
        device=device,
        seed=seed,
        output_dir=str(out / "training"),
    )
    model, result = train(model, data.train, cfg)
    metrics = {
        "validation": evaluate(model, data.val, max_windows=512).as_dict(),
        "train_seconds": result.seconds,
        "losses": result.losses,
        "clips": result.clips,
    }
    save_run(out, model, data.tokenizer, metrics)
    (out / CORPUS_FILE).write_text(json.dumps(asdict(spec), indent=2))
    typer.echo(json.dumps(metrics["validation"], indent=2))


@app.command("sample")
def sample_cmd(
    run: Path = typer.Argument(..., help="Run folder written by `train`."),
    num_tokens: int = typer.Option(128, help="New tokens per sample (any length; the window slides)."),
    num_samples: int = typer.Option(4),
    prompt: str = typer.Option("", help="Text to continue."),
    sampler: str = typer.Option("ancestral", help="ancestral | first-hitting"),
    steps: int = typer.Option(0, help="Ancestral steps per block (0: 2 L')."),
    temperature: float = typer.Option(1.0),
    top_p: float = typer.Option(1.0),
    kv_cache: bool = typer.Option(True, "--kv-cache/--no-kv-cache"),
    stop_at_eos: bool = typer.Option(True, "--stop-at-eos/--no-stop-at-eos"),
    seed: int = typer.Option(0),
    device: str = typer.Option("cpu"),
    out: Path | None = typer.Option(None, help="Write the samples to this text file."),
) -> None:
    """Generate text block by block."""
    model, tok = load_run(run, device=device)
    cfg = SamplingConfig(
        sampler=sampler, steps=steps or None, temperature=temperature, top_p=top_p, use_kv_cache=kv_cache
    )
    ids = tok.encode(prompt) if prompt else []
    prompt_t = torch.tensor([ids] * num_samples, dtype=torch.long, device=device) if ids else None
    g = torch.Generator(device=device).manual_seed(seed)
    tokens = generate(
        model,
        num_tokens,
        batch_size=num_samples,
        prompt=prompt_t,
        config=cfg,
        eos_id=tok.eos_id if stop_at_eos else None,
        generator=g,
    )
    rows = (
        truncate_at_eos(tokens[:, len(ids) :], tok.eos_id) if stop_at_eos else tokens[:, len(ids) :].tolist()
    )
    texts = [prompt + tok.decode(r) for r in rows]
    body = "\n\n=====\n\n".join(texts)
    if out is not None:
        out.write_text(body + "\n")
    typer.echo(body)


@app.command("evaluate")
def evaluate_cmd(
    run: Path = typer.Argument(..., help="Run folder written by `train`."),
    windows: int = typer.Option(512, help="Validation windows."),
    repeats: int = typer.Option(32, help="Stratified noise draws per window (even)."),
    device: str = typer.Option("cpu"),
) -> None:
    """Validation NELBO / perplexity bound (full time range) on the run's corpus."""
    model, tok = load_run(run, device=device)
    spec_path = run / CORPUS_FILE
    if not spec_path.is_file():
        raise typer.BadParameter(f"{run} has no {CORPUS_FILE} (not a `diffuse language train` folder)")
    raw = json.loads(spec_path.read_text())
    raw["paths"] = tuple(raw.get("paths", ()))
    spec = CorpusSpec(**raw)
    data = build_corpus(spec, tokenizer=tok)
    result = evaluate(model, data.val, max_windows=windows, repeats=repeats).as_dict()
    if data.hmm is not None:
        h, se = data.hmm.window_entropy(model.config.seq_len, generator=torch.Generator().manual_seed(0))
        result.update(true_window_entropy=h, true_entropy_stderr=se)
    typer.echo(json.dumps(result, indent=2))


modality = Modality(
    name="language",
    description="Block diffusion language models (BD3-LM) on diffcore's masked discrete diffusion.",
    app=app,
    bench=bench,
)
