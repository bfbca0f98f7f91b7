"""``train``, ``evaluate`` and ``sample`` for BD3-LM, and run folders (model + tokeniser + metrics).

A small training loop of its own (AdamW, linear warm-up then cosine decay, gradient clipping); the shared
``diffcore`` Trainer was still being written when this package was. Every few hundred steps the clip range
of the masking rate is re-chosen by :func:`diff_language.diffusion.search_clip_range` (BD3-LM Sec. 4.2).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from diff_language.data import fixed_windows, random_windows
from diff_language.diffusion import ClipRange, bd3_loss_terms, evaluate_nelbo, search_clip_range
from diff_language.model import BD3LM
from diff_language.tokenizer import TextTokenizer, load_tokenizer

__all__ = ["TrainConfig", "TrainResult", "evaluate", "load_run", "save_run", "train"]


@dataclass
class TrainConfig:
    """Optimisation settings. ``clip_search_every = 0`` trains on the full range [0, 1] throughout."""

    steps: int = 2000
    batch_size: int = 32
    lr: float = 1e-3
    warmup: int = 100
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    clip_search_every: int = 500
    clip_search_batches: int = 8
    log_every: int = 100
    seed: int = 0
    device: str = "cpu"

    def __post_init__(self) -> None:
        if self.steps < 1 or self.batch_size < 1:
            raise ValueError(f"steps, batch_size: expected >= 1, got {self.steps}, {self.batch_size}")


@dataclass
class TrainResult:
    """Loss history ``(step, loss)``, the chosen clip ranges ``(step, low, high)`` and wall time."""

    losses: list[tuple[int, float]] = field(default_factory=list)
    clips: list[tuple[int, float, float]] = field(default_factory=list)
    seconds: float = 0.0


def _lr_factor(step: int, config: TrainConfig) -> float:
    if step < config.warmup:
        return (step + 1) / config.warmup
    progress = (step - config.warmup) / max(1, config.steps - config.warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def train(
    model: BD3LM, stream: Tensor, config: TrainConfig, log: Callable[[str], None] | None = None
) -> TrainResult:
    """Train ``model`` on random windows of ``stream`` (rows, length) of token ids."""
    device = torch.device(config.device)
    model.to(device).train()
    g = torch.Generator().manual_seed(config.seed)
    torch.manual_seed(config.seed)
    opt = torch.optim.AdamW(
        model.parameters(), lr=config.lr, weight_decay=config.weight_decay, betas=(0.9, 0.98)
    )
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _lr_factor(s, config))
    seq_len, clip = model.config.seq_len, ClipRange()
    result, start, running = TrainResult(), time.perf_counter(), []
    for step in range(config.steps):
        if config.clip_search_every and step > 0 and step % config.clip_search_every == 0:
            batches = [
                random_windows(stream, seq_len, config.batch_size, g).to(device)
                for _ in range(config.clip_search_batches)
            ]
            clip, _ = search_clip_range(model, batches, generator=g)
            result.clips.append((step, clip.low, clip.high))
            if log:
                log(f"step {step}: clip range [{clip.low}, {clip.high}]")
        x0 = random_windows(stream, seq_len, config.batch_size, g).to(device)
        loss = bd3_loss_terms(model, x0, clip=clip, generator=g).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        opt.step()
        sched.step()
        running.append(float(loss.detach()))
        if (step + 1) % config.log_every == 0 or step + 1 == config.steps:
            mean = sum(running) / len(running)
            result.losses.append((step + 1, mean))
            running = []
            if log:
                log(
                    f"step {step + 1}/{config.steps}: loss {mean:.4f} nats/token ({time.perf_counter() - start:.0f} s)"
                )
    result.seconds = time.perf_counter() - start
    model.eval()
    return result


def evaluate(
    model: BD3LM,
    stream: Tensor,
    *,
    batch_size: int = 32,
    max_windows: int | None = 512,
    repeats: int = 4,
    seed: int = 0,
) -> dict[str, float]:
    """Validation NELBO (full time range) on non-overlapping windows of ``stream``; see ``evaluate_nelbo``."""
    device = next(model.parameters()).device
    windows = fixed_windows(stream, model.config.seq_len, max_windows)
    batches = [windows[i : i + batch_size].to(device) for i in range(0, len(windows), batch_size)]
    g = torch.Generator().manual_seed(seed)
    return evaluate_nelbo(model, batches, repeats=repeats, generator=g)


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
