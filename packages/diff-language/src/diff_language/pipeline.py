"""``train``, ``evaluate`` and run folders (model + tokeniser + metrics) for BD3-LM.

Training runs on :class:`diffcore.training.Trainer` (accelerate: CPU, one or several GPUs, mixed precision, EMA,
checkpoints and exact resume) with :class:`diff_language.objective.BD3Objective`; the data are all windows of
the training stream at a fixed stride, shuffled by the Trainer's seeded sampler, so every block size sees the
same windows in the same order for the same seed. For ``L' > 1`` :class:`diff_language.objective.ClipSearch`
re-chooses the masking-rate range every ``clip_search_every`` steps (BD3-LM Sec. 4.2); ``L' = 1`` trains on
``[1, 1]``, exactly the autoregressive loss. Evaluation always uses the full range
(:mod:`diff_language.evaluation`).
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from diffcore.training import TrainConfig as TrainerConfig
from diffcore.training import Trainer, read_run_log
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from diff_language.data import fixed_windows
from diff_language.evaluation import NelboEstimate, estimate_nelbo
from diff_language.model import BD3LM
from diff_language.objective import BD3Objective, ClipSearch, initial_clip
from diff_language.tokenizer import TextTokenizer, load_tokenizer

__all__ = ["StreamWindows", "TrainConfig", "TrainResult", "evaluate", "load_run", "save_run", "train"]


@dataclass
class TrainConfig:
    """Optimisation settings (a subset of :class:`diffcore.training.TrainConfig`).

    steps: optimizer steps (the same for every block size). lr: peak of a linear warm-up (``warmup``
    steps) then cosine decay to ``min_lr_ratio * lr``. clip_search_every: steps between clip-range searches
    for ``L' > 1`` (0: the full range [0, 1] throughout). stride: offset between training windows (default
    ``seq_len // 2``). output_dir: the Trainer's run folder (checkpoints, ``log.jsonl``); a temporary folder
    when ``None``. mixed_precision: ``"no"`` or ``"bf16"``.
    """

    steps: int = 2000
    batch_size: int = 32
    lr: float = 1e-3
    warmup: int = 100
    min_lr_ratio: float = 0.0
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    clip_search_every: int = 500
    clip_search_batches: int = 8
    ema_decay: float | None = None
    stride: int | None = None
    log_every: int = 100
    seed: int = 0
    device: str = "cpu"
    mixed_precision: str = "no"
    output_dir: str | None = None

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1:
            raise ValueError(f"steps, batch_size: expected >= 1, got {self.steps}, {self.batch_size}")
        if self.device not in ("cpu", "cuda") and not self.device.startswith("cuda:"):
            raise ValueError(f"device: expected 'cpu' or 'cuda', got {self.device!r}")


@dataclass
class TrainResult:
    """Logged ``(step, loss)``, the chosen clip ranges ``(step, low, high)``, wall time and the run folder."""

    losses: list[tuple[int, float]] = field(default_factory=list)
    clips: list[tuple[int, float, float]] = field(default_factory=list)
    seconds: float = 0.0
    output_dir: str = ""


class StreamWindows(Dataset):
    """Every window (seq_len,) of ``stream`` (rows, length) starting at a multiple of ``stride`` in its row."""

    def __init__(self, stream: Tensor, seq_len: int, stride: int) -> None:
        rows, length = stream.shape
        if length < seq_len or stride < 1:
            raise ValueError(
                f"seq_len, stride: expected seq_len <= row length {length} and stride >= 1, got {seq_len}, {stride}"
            )
        self.stream, self.seq_len = stream, seq_len
        self.starts = torch.arange(0, length - seq_len + 1, stride)
        self.rows = rows

    def __len__(self) -> int:
        return self.rows * len(self.starts)

    def __getitem__(self, i: int) -> Tensor:
        row, k = divmod(i, len(self.starts))
        start = int(self.starts[k])
        return self.stream[row, start : start + self.seq_len]


def _trainer_config(config: TrainConfig, output_dir: str) -> TrainerConfig:
    cosine = config.steps > config.warmup
    return TrainerConfig(
        steps=config.steps,
        lr=config.lr,
        betas=(0.9, 0.98),
        weight_decay=config.weight_decay,
        lr_schedule="cosine" if cosine else "constant",
        warmup_steps=config.warmup if cosine else 0,
        min_lr_ratio=config.min_lr_ratio,
        max_grad_norm=config.grad_clip,
        mixed_precision=config.mixed_precision,  # type: ignore[arg-type]
        ema_decay=config.ema_decay,
        log_every=config.log_every,
        checkpoint_every=None,
        keep_last=1,
        output_dir=output_dir,
        seed=config.seed,
        progress_bar=False,
        tensorboard=False,
        device="cpu" if config.device == "cpu" else "auto",
    )


def _read_losses(output_dir: str | Path) -> list[tuple[int, float]]:
    return [(int(r["step"]), float(r["loss"])) for r in read_run_log(output_dir)]


def train(model: BD3LM, stream: Tensor, config: TrainConfig) -> tuple[BD3LM, TrainResult]:
    """Train ``model`` on windows of ``stream`` (rows, length) with :class:`diffcore.training.Trainer`.

    Returns the trained model (the EMA copy when ``ema_decay`` is set), in eval mode, and the run record.
    """
    seq_len, block = model.config.seq_len, model.config.block_size
    dataset = StreamWindows(stream, seq_len, config.stride or max(1, seq_len // 2))
    loader = DataLoader(dataset, batch_size=config.batch_size, shuffle=True, drop_last=True)
    objective = BD3Objective(initial_clip(block))
    search = (
        [
            ClipSearch(
                objective,
                stream,
                every=config.clip_search_every,
                batch_size=config.batch_size,
                n_batches=config.clip_search_batches,
                seed=config.seed,
            )
        ]
        if config.clip_search_every and block > 1
        else []
    )
    with tempfile.TemporaryDirectory(prefix="bd3lm-") as tmp:
        out = config.output_dir or tmp
        trainer = Trainer(model, objective, loader, _trainer_config(config, out), callbacks=search)
        summary = trainer.fit()
        losses = _read_losses(out)
    trained = trainer.ema_model if trainer.ema_model is not None else trainer.unwrapped_model
    result = TrainResult(
        losses=losses,
        clips=search[0].history if search else [],
        seconds=summary.seconds,
        output_dir=config.output_dir or "",
    )
    return trained.eval(), result


def evaluate(
    model: BD3LM,
    stream: Tensor,
    *,
    max_windows: int | None = None,
    repeats: int = 32,
    batch_size: int = 256,
    seed: int = 0,
) -> NelboEstimate:
    """Validation NELBO (full time range) on the non-overlapping windows of ``stream`` (all by default)."""
    windows = fixed_windows(stream, model.config.seq_len, max_windows)
    return estimate_nelbo(model, windows, repeats=repeats, batch_size=batch_size, seed=seed)


def save_run(
    directory: str | Path, model: BD3LM, tokenizer: TextTokenizer, metrics: dict | None = None
) -> Path:
    """Write ``config.json`` + ``model.safetensors``, the tokeniser, and ``metrics.json`` into ``directory``."""
    out = Path(directory)
    model.save_pretrained(out)
    tokenizer.save(out)
    if metrics is not None:
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2, default=_jsonable))
    return out


def _jsonable(obj: object) -> object:
    return asdict(obj) if hasattr(obj, "__dataclass_fields__") else str(obj)


def load_run(directory: str | Path, device: str = "cpu") -> tuple[BD3LM, TextTokenizer]:
    """The model and tokeniser saved by :func:`save_run`."""
    return BD3LM.from_pretrained(directory, device=device).eval(), load_tokenizer(directory)
