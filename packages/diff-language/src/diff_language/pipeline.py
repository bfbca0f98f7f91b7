"""``LanguagePipeline`` (a BD3-LM and its tokeniser) and the three verbs every modality offers:
:func:`train`, :func:`sample`, :func:`evaluate`.

Training runs on :class:`diffcore.training.Trainer` (accelerate: CPU, one or several GPUs, mixed precision, EMA,
checkpoints and exact resume) with :class:`diff_language.objective.BD3Objective`; the data are all windows of
the training stream at a fixed stride, shuffled by the Trainer's seeded sampler, so every block size sees the
same windows in the same order for the same seed. For ``L' > 1`` :class:`diff_language.objective.ClipSearch`
re-chooses the masking-rate range every ``clip_search_every`` steps (BD3-LM Sec. 4.2); ``L' = 1`` trains on
``[1, 1]``, exactly the autoregressive loss. Evaluation always uses the full range
(:func:`diff_language.metrics.estimate_nelbo`).

A run folder (``config.train.output_dir``) holds the Trainer's ``checkpoints/``, ``log.jsonl`` and ``model/``,
then ``pipeline/`` (the saved :class:`LanguagePipeline`), ``metrics.json`` and ``train_config.json``.
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from diffcore.config import config_from_dict
from diffcore.device import resolve_device
from diffcore.io import write_json
from diffcore.pipeline import Pipeline
from diffcore.rng import make_generator, seeded
from torch import Tensor
from torch.utils.data import DataLoader

from diff_language.config import (
    CorpusConfig,
    LanguageEvaluateConfig,
    LanguageSampleConfig,
    LanguageTrainConfig,
)
from diff_language.data import StreamWindows, TokenCorpus, build_corpus, read_documents
from diff_language.io import load_tokenizer, save_tokenizer
from diff_language.metrics import validation_nelbo
from diff_language.models import BD3LM, BD3LMConfig
from diff_language.objective import BD3Objective, ClipSearch, initial_clip
from diff_language.sampling import generate, truncate_at_eos
from diff_language.tokenizer import TextTokenizer

__all__ = [
    "PIPELINE_DIR",
    "LanguagePipeline",
    "TrainResult",
    "cpu_threads",
    "evaluate",
    "sample",
    "train",
    "train_model",
]

PIPELINE_DIR = "pipeline"
"""The saved pipeline's folder inside a run folder."""


class LanguagePipeline(Pipeline):
    """A trained BD3-LM with its tokeniser, and the corpus it was trained on (to rebuild its validation split).

    ``model`` maps token ids (B, T) to logits (B, T, V) with ``V = tokenizer.vocab_size + 1``: the last id is
    ``[MASK]``. Saved as ``model/`` (``config.json`` + ``model.safetensors``) and ``tokenizer/`` (the
    tokeniser's file, :mod:`diff_language.io`); the corpus settings go into ``pipeline.json``.
    """

    def __init__(self, model: BD3LM, tokenizer: TextTokenizer, corpus: CorpusConfig | None = None) -> None:
        if model.config.vocab_size != tokenizer.vocab_size + 1:
            raise ValueError(
                f"model: expected vocab_size = tokenizer.vocab_size + 1 = {tokenizer.vocab_size + 1} "
                f"(the tokens and [MASK]), got {model.config.vocab_size}"
            )
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.corpus = corpus

    def components(self) -> dict[str, Any]:
        return {"model": self.model, "tokenizer": self.tokenizer}

    def pipeline_config(self) -> dict[str, Any]:
        return {"corpus": asdict(self.corpus) if self.corpus is not None else None}

    @classmethod
    def from_parts(cls, config: dict[str, Any], components: dict[str, Any]) -> LanguagePipeline:
        for name in ("model", "tokenizer"):
            if name not in components:
                raise ValueError(f"pipeline: expected a {name!r} component, got {sorted(components)}")
        corpus = config.get("corpus")
        return cls(
            components["model"],
            components["tokenizer"],
            config_from_dict(CorpusConfig, corpus) if corpus is not None else None,
        )

    def save_component(self, name: str, component: Any, folder: Path) -> None:
        if name == "tokenizer":
            save_tokenizer(component, folder)
        else:
            super().save_component(name, component, folder)

    @classmethod
    def load_component(cls, name: str, folder: Path, device: torch.device) -> Any:
        if name == "tokenizer":
            return load_tokenizer(folder)
        if name == "model":  # by class, so that folders saved before the 0.2 module names still load
            return BD3LM.from_pretrained(folder, device=device).eval()
        return super().load_component(name, folder, device)


@contextmanager
def cpu_threads(threads: int | None, device: torch.device) -> Iterator[None]:
    """Run a block with ``threads`` intra-op threads when ``device`` is the CPU; restores the count afterwards.

    ``None`` (or a GPU device) leaves torch's setting alone.
    """
    if threads is None or device.type != "cpu":
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


# ---------------------------------------------------------------------------------------------------- train


@dataclass
class TrainResult:
    """Logged ``(step, loss)``, the chosen clip ranges ``(step, low, high)``, wall time and the run folder."""

    losses: list[tuple[int, float]] = field(default_factory=list)
    clips: list[tuple[int, float, float]] = field(default_factory=list)
    seconds: float = 0.0
    output_dir: str = ""


def train_model(
    model: BD3LM, stream: Tensor, config: LanguageTrainConfig, *, keep_run: bool = True
) -> tuple[BD3LM, TrainResult]:
    """Train ``model`` on windows of ``stream`` (rows, length) with :class:`diffcore.training.Trainer`.

    ``config.model`` and ``config.corpus`` are not read (the model and the stream are given). The Trainer
    writes into ``config.train.output_dir``, or into a temporary folder removed afterwards when ``keep_run``
    is False. Returns the trained model (the EMA copy when ``train.ema_decay`` is set), in eval mode, and the
    run record.
    """
    from diffcore.training import Trainer, read_run_log

    seq_len, block = model.config.seq_len, model.config.block_size
    dataset = StreamWindows(stream, seq_len, config.stride or max(1, seq_len // 2))
    if len(dataset) < config.batch_size:
        raise ValueError(
            f"batch_size: expected at most the {len(dataset)} training windows of {seq_len} tokens, "
            f"got {config.batch_size} (use more text or a smaller batch)"
        )
    loader = DataLoader(dataset, batch_size=config.batch_size, shuffle=True, drop_last=True)
    objective = BD3Objective(initial_clip(block))
    search = []
    if config.clip_search_every and block > 1:
        search.append(
            ClipSearch(
                objective,
                stream,
                every=config.clip_search_every,
                batch_size=config.batch_size,
                n_batches=config.clip_search_batches,
                seed=config.train.seed,
            )
        )
    with tempfile.TemporaryDirectory(prefix="bd3lm-") as tmp:
        out = config.train.output_dir if keep_run else tmp
        trainer_config = dataclasses.replace(config.train, output_dir=out)
        trainer = Trainer(model, objective, loader, trainer_config, callbacks=search)
        summary = trainer.fit()
        losses = [(int(r["step"]), float(r["loss"])) for r in read_run_log(out)]
    trained = trainer.ema_model if trainer.ema_model is not None else trainer.unwrapped_model
    result = TrainResult(
        losses=losses,
        clips=search[0].history if search else [],
        seconds=summary.seconds,
        output_dir=out if keep_run else "",
    )
    return trained.eval(), result


def check_corpus_length(data: TokenCorpus, config: LanguageTrainConfig) -> None:
    """Raise a ValueError naming the corpus when its training or validation text is shorter than one window."""
    seq_len = config.model.seq_len
    source = ", ".join(map(str, config.corpus.paths)) if config.corpus.kind == "files" else config.corpus.kind
    for split, stream in (("training", data.train), ("validation", data.val)):
        if stream.shape[-1] < seq_len:
            raise ValueError(
                f"corpus: the {split} text of {source} is {stream.shape[-1]} tokens long, shorter than "
                f"model.seq_len = {seq_len} (use more text or a smaller seq_len)"
            )


def train(config: LanguageTrainConfig) -> LanguagePipeline:
    """Build the corpus, train a BD3-LM on it and score it on the validation split, as ``config`` says.

    Writes the run under ``config.train.output_dir``: the Trainer's files, ``pipeline/`` (the returned
    pipeline, saved), ``metrics.json`` (validation NELBO of ``eval_windows`` x ``eval_repeats``, training
    seconds, logged losses, chosen clip ranges) and ``train_config.json``. The model's initialisation is
    seeded by ``config.train.seed``.
    """
    out = Path(config.train.output_dir)
    with cpu_threads(config.cpu_threads, resolve_device(config.train.device)):
        data = build_corpus(config.corpus)
        check_corpus_length(data, config)
        model_config = BD3LMConfig(vocab_size=data.tokenizer.vocab_size + 1, **asdict(config.model))
        with seeded(config.train.seed):
            model = BD3LM(model_config)
        model, result = train_model(model, data.train, config)
        validation = validation_nelbo(
            model,
            data.val,
            max_windows=config.eval_windows,
            repeats=config.eval_repeats,
            seed=config.train.seed,
        )
    pipe = LanguagePipeline(model, data.tokenizer, config.corpus)
    pipe.card.record_training(config)
    if _is_main_process():  # under `accelerate launch`, one process writes the run's files
        pipe.save_pretrained(out / PIPELINE_DIR)
        metrics = {
            "validation": validation.as_dict(),
            "train_seconds": result.seconds,
            "losses": result.losses,
            "clips": result.clips,
        }
        write_json(metrics, out / "metrics.json")
        write_json(config, out / "train_config.json")
    return pipe


def _is_main_process() -> bool:
    from accelerate import PartialState

    return PartialState().is_main_process


# ---------------------------------------------------------------------------------------------------- sample


def sample(
    pipeline: LanguagePipeline, config: LanguageSampleConfig, *, generator: torch.Generator | None = None
) -> list[str]:
    """Generate ``config.num_samples`` texts of up to ``config.num_tokens`` new tokens each, block by block.

    Each text is the prompt's tokens followed by the continuation (cut at the first EOS with ``stop_at_eos``),
    decoded together (so a word-level vocabulary puts a space between them). The noise comes from ``generator``
    (on the pipeline's device), else from a generator seeded by ``config.seed``.
    """
    device = resolve_device(config.device)
    pipeline.to(device)
    tok = pipeline.tokenizer
    with cpu_threads(config.cpu_threads, device):
        ids = tok.encode(config.prompt) if config.prompt else []
        prompt = torch.tensor([ids] * config.num_samples, dtype=torch.long, device=device) if ids else None
        tokens = generate(
            pipeline.model,
            config.num_tokens,
            batch_size=config.num_samples,
            prompt=prompt,
            config=config.sampling,
            eos_id=tok.eos_id if config.stop_at_eos else None,
            generator=make_generator(generator if generator is not None else config.seed, device),
        )
    new = tokens[:, len(ids) :]
    rows = truncate_at_eos(new, tok.eos_id) if config.stop_at_eos else new.tolist()
    return [tok.decode(ids + row) for row in rows]


# ---------------------------------------------------------------------------------------------------- evaluate


def evaluate(pipeline: LanguagePipeline, config: LanguageEvaluateConfig) -> dict[str, float]:
    """The NELBO per token (full time range) and its perplexity bound on held-out text.

    The text is the validation split of the pipeline's corpus, or ``config.paths``. Returns ``nelbo``,
    ``perplexity``, ``stderr``, ``mc_stderr``, ``tokens``, ``repeats`` (:class:`~diff_language.metrics.
    NelboEstimate`), and for the synthetic language ``true_window_entropy`` and ``true_entropy_stderr``,
    the entropy per token of the windows (what a perfect model's NELBO would be).
    """
    device = resolve_device(config.device)
    pipeline.to(device)
    model, tok = pipeline.model, pipeline.tokenizer
    with cpu_threads(config.cpu_threads, device):
        hmm = None
        if config.paths:
            stream = torch.tensor(tok.encode_documents(read_documents(config.paths)), dtype=torch.long)[None]
        elif pipeline.corpus is None:
            raise ValueError("paths: this pipeline records no corpus; give the .txt / .jsonl files to score")
        else:
            data = build_corpus(pipeline.corpus, tokenizer=tok)
            stream, hmm = data.val, data.hmm
        estimate = validation_nelbo(
            model,
            stream,
            max_windows=config.windows,
            repeats=config.repeats,
            batch_size=config.batch_size,
            seed=config.seed,
        )
        result: dict[str, float] = estimate.as_dict()
        if hmm is not None:
            h, se = hmm.window_entropy(model.config.seq_len, generator=make_generator(config.seed))
            result.update(true_window_entropy=h, true_entropy_stderr=se)
    return result
