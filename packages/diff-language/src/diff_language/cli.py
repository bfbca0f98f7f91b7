"""``diffuse language train | sample | evaluate``, registered through the entry point ``diffcore.modalities``.

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
from diff_language.config import LanguageEvaluateConfig, LanguageSampleConfig, LanguageTrainConfig

__all__ = ["app", "modality"]

DESCRIPTION = "Block diffusion language models (BD3-LM) on diffcore's masked discrete diffusion."

app = typer.Typer(no_args_is_help=True, add_completion=False, help=DESCRIPTION)
PIPELINE = "diff_language.pipeline:LanguagePipeline"

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


modality = Modality(name="language", description=DESCRIPTION, app=app, bench=bench)
