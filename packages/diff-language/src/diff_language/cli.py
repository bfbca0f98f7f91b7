"""``diffuse language train | sample | evaluate | corpus``, registered through the entry point ``diffcore.modalities``.

Options come from the configuration dataclasses (:mod:`diff_language.config`) through
:func:`diffcore.cli.options.config_command`, the same way in every modality; every setting is also reachable
with ``--set key=value`` or a ``--config`` file. Model code is imported inside the commands only.
"""

from __future__ import annotations

from pathlib import Path

import typer
from diffcore.cli.options import config_command
from diffcore.modality import Modality

from diff_language.bench import bench
from diff_language.config import (
    LanguageEvaluateConfig,
    LanguageSampleConfig,
    LanguageTrainConfig,
    PythonCorpusConfig,
)

__all__ = ["app", "modality"]

DESCRIPTION = "Block diffusion language models (BD3-LM) on diffcore's masked discrete diffusion."

app = typer.Typer(no_args_is_help=True, add_completion=False, help=DESCRIPTION)
PIPELINE = "diff_language.pipeline:LanguagePipeline"
_CORPUS = PythonCorpusConfig()  # the corpus command's defaults, stated once in the dataclass

TRAIN_OPTIONS = {
    "corpus.kind": "--corpus",
    "corpus.paths": ("--path", "--data"),
    "corpus.tokenizer": "--tokenizer",
    "corpus.bpe_vocab": "--bpe-vocab",
    "model.block_size": "--block-size",
    "model.seq_len": "--seq-len",
    "model.dim": "--dim",
    "model.n_layers": "--layers",
    "model.n_heads": "--heads",
    "batch_size": "--batch-size",
    "clip_search_every": "--clip-search-every",
    "train.steps": "--steps",
    "train.lr": "--lr",
    "train.warmup_steps": "--warmup-steps",
    "train.ema_decay": "--ema-decay",
    "train.resume": "--resume",
    "train.mixed_precision": "--mixed-precision",
}
SAMPLE_OPTIONS = {
    "num_samples": "--num-samples",
    "num_tokens": "--num-tokens",
    "prompt": "--prompt",
    "stop_at_eos": "--stop-at-eos",
    "sampling.sampler": "--sampler",
    "sampling.steps": "--steps",
    "sampling.temperature": "--temperature",
    "sampling.top_p": "--top-p",
    "sampling.use_kv_cache": "--kv-cache",
}
EVALUATE_OPTIONS = {"windows": "--windows", "repeats": "--repeats", "paths": "--path"}


@config_command(app, "train", LanguageTrainConfig, options=TRAIN_OPTIONS)
def train_cmd(config: LanguageTrainConfig, out: Path) -> None:
    """Train a BD3-LM; write the run into OUT (checkpoints, log.jsonl, OUT/pipeline, metrics.json)."""
    import json

    from diff_language.pipeline import train

    train(config)
    validation = json.loads((out / "metrics.json").read_text())["validation"]
    typer.echo(json.dumps(validation, indent=2))


@config_command(app, "sample", LanguageSampleConfig, pipeline=PIPELINE, default_out="runs/language-samples",
                options=SAMPLE_OPTIONS)  # fmt: skip
def sample_cmd(config: LanguageSampleConfig, out: Path, pipeline: object) -> None:
    """Generate text from a saved pipeline; write OUT/samples.txt and OUT/samples.jsonl, and print it."""
    from diff_language.io import SAMPLE_SEPARATOR, write_samples_jsonl, write_samples_text
    from diff_language.pipeline import sample

    texts = sample(pipeline, config)  # type: ignore[arg-type]
    write_samples_text(texts, out / "samples.txt")
    write_samples_jsonl(texts, out / "samples.jsonl", prompt=config.prompt)
    typer.echo(SAMPLE_SEPARATOR.join(texts))


@config_command(app, "evaluate", LanguageEvaluateConfig, pipeline=PIPELINE, default_out="runs/language-eval",
                options=EVALUATE_OPTIONS)  # fmt: skip
def evaluate_cmd(config: LanguageEvaluateConfig, out: Path, pipeline: object) -> None:
    """NELBO / perplexity bound (full time range) of a saved pipeline; write OUT/metrics.json and print it."""
    import json

    from diffcore.io import write_json

    from diff_language.pipeline import evaluate

    metrics = evaluate(pipeline, config)  # type: ignore[arg-type]
    write_json(metrics, out / "metrics.json")
    typer.echo(json.dumps(metrics, indent=2))


@app.command("corpus")
def corpus_cmd(
    out: Path = typer.Option(..., "--out", help="the corpus folder to create (must not exist)"),
    sources: str = typer.Option(",".join(_CORPUS.sources), help="comma-separated: stdlib, site-packages, docs"),
    licences: str = typer.Option(_CORPUS.licences, help="permissive: only permissively licensed site-packages files; all"),
    site_packages_mb: float = typer.Option(_CORPUS.site_packages_mb, help="at most this much site-packages source"),
    max_file_kb: int = typer.Option(_CORPUS.max_file_kb, help="skip larger files"),
    val_fraction: float = typer.Option(_CORPUS.val_fraction, help="share of files in validation"),
    test_fraction: float = typer.Option(_CORPUS.test_fraction, help="share of files in test"),
    near_duplicate_threshold: float = typer.Option(_CORPUS.near_duplicate_threshold, help="MinHash Jaccard at which a file is a near duplicate"),
    bpe_vocab: int = typer.Option(_CORPUS.bpe_vocab, help="byte-level BPE vocabulary trained on the train split"),
    seed: int = typer.Option(_CORPUS.seed, help="decides each file's split and the site-packages sample"),
) -> None:  # fmt: skip
    """Build the offline Python corpus into OUT: standard-library and site-packages source (split by file,
    exact and near duplicates removed), CPython documentation text, a BPE tokenizer, token streams, a per-file
    licence manifest and LICENCES.md. Train on it with `diffuse language train --corpus python --path OUT`."""
    import json

    from diff_language.data.python_corpus import build_python_corpus

    try:
        config = PythonCorpusConfig(
            sources=tuple(s.strip() for s in sources.split(",") if s.strip()),
            licences=licences,  # type: ignore[arg-type]
            site_packages_mb=site_packages_mb,
            max_file_kb=max_file_kb,
            val_fraction=val_fraction,
            test_fraction=test_fraction,
            near_duplicate_threshold=near_duplicate_threshold,
            bpe_vocab=bpe_vocab,
            seed=seed,
        )
        summary = build_python_corpus(config, out)
    except (ValueError, FileExistsError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(json.dumps({k: summary[k] for k in ("documents", "bytes", "tokens", "dropped")}, indent=2))


modality = Modality(name="language", description=DESCRIPTION, app=app, bench=bench)
