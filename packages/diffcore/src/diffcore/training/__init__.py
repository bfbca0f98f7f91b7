"""Training: one accelerate-based :class:`Trainer` for every objective, with EMA, checkpoints and logs.

    from diffcore.training import Trainer, TrainConfig
    summary = Trainer(model, objective, loader, TrainConfig(steps=1000, output_dir="runs/x")).fit()

See :mod:`diffcore.training.trainer` for the objective contract and :mod:`diffcore.training.checkpoint`
for the on-disk checkpoint format. The objectives themselves (:mod:`~diffcore.training.objectives`), the
training-time ``t`` samplers (:mod:`~diffcore.training.time_sampling`), loss weightings
(:mod:`~diffcore.training.weighting`) and minibatch optimal transport (:mod:`~diffcore.training.ot`) live here
too.
"""

import importlib
from typing import TYPE_CHECKING, Any

from diffcore.training.config import TrainConfig

# Everything but the configuration loads on first use (PEP 562): the Trainer imports accelerate and the
# objectives torch, while a package's configuration needs only ``TrainConfig``.
_SUBMODULES = ("objectives", "ot", "time_sampling", "weighting")
_LAZY = {
    "Callback": "callbacks",
    "CheckpointError": "checkpoint",
    "latest_checkpoint": "checkpoint",
    "list_checkpoints": "checkpoint",
    "EMA": "ema",
    "read_run_log": "log_writers",
    "steady_samples_per_sec": "log_writers",
    "build_lr_scheduler": "lr_schedules",
    "lr_factor": "lr_schedules",
    "NonFiniteLossError": "trainer",
    "Objective": "trainer",
    "Trainer": "trainer",
    "TrainSummary": "trainer",
    "saves_itself": "trainer",
}


if TYPE_CHECKING:
    from diffcore.training import objectives, ot, time_sampling, weighting
    from diffcore.training.callbacks import Callback
    from diffcore.training.checkpoint import CheckpointError, latest_checkpoint, list_checkpoints
    from diffcore.training.ema import EMA
    from diffcore.training.log_writers import read_run_log, steady_samples_per_sec
    from diffcore.training.lr_schedules import build_lr_scheduler, lr_factor
    from diffcore.training.trainer import NonFiniteLossError, Objective, Trainer, TrainSummary, saves_itself


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        value = importlib.import_module(f"diffcore.training.{name}")
        globals()[name] = value
        return value
    if name in _LAZY:
        value = getattr(importlib.import_module(f"diffcore.training.{_LAZY[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'diffcore.training' has no attribute {name!r}")


__all__ = [
    "EMA",
    "Callback",
    "CheckpointError",
    "NonFiniteLossError",
    "Objective",
    "TrainConfig",
    "TrainSummary",
    "Trainer",
    "build_lr_scheduler",
    "latest_checkpoint",
    "list_checkpoints",
    "lr_factor",
    "objectives",
    "ot",
    "read_run_log",
    "saves_itself",
    "steady_samples_per_sec",
    "time_sampling",
    "weighting",
]
