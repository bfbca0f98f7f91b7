"""Hooks the Trainer calls at fixed points, e.g. to sample a preview image at every log step.

Subclass :class:`Callback` and override what you need. Hooks run on every process (so a hook may
use collective operations); guard work meant for one process with
``trainer.accelerator.is_main_process``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from diffcore.training.trainer import Trainer, TrainSummary


class Callback:
    """No-op base: every hook receives the running :class:`~diffcore.training.Trainer`."""

    def on_train_start(self, trainer: Trainer) -> None:
        """Before the first step (after any resume)."""

    def on_step_end(self, trainer: Trainer, step: int) -> None:
        """After optimizer step ``step`` (1-based) and its EMA update."""

    def on_log(self, trainer: Trainer, record: dict[str, Any]) -> None:
        """After a log record (``step``, ``loss``, ``lr``, ``grad_norm``, ``samples_per_sec``, ...) is written."""

    def on_checkpoint(self, trainer: Trainer, path: Path) -> None:
        """After the checkpoint at ``path`` is complete on disk."""

    def on_train_end(self, trainer: Trainer, summary: TrainSummary) -> None:
        """After the final models are saved."""
