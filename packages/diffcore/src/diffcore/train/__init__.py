"""Training: one accelerate-based :class:`Trainer` for every objective, with EMA, checkpoints and logs.

    from diffcore.train import Trainer, TrainConfig
    summary = Trainer(model, objective, loader, TrainConfig(steps=1000, output_dir="runs/x")).fit()

See :mod:`diffcore.train.trainer` for the objective contract and :mod:`diffcore.train.checkpoint`
for the on-disk checkpoint format.
"""

from diffcore.train.callbacks import Callback
from diffcore.train.checkpoint import CheckpointError, latest_checkpoint, list_checkpoints
from diffcore.train.config import TrainConfig
from diffcore.train.ema import EMA
from diffcore.train.log_writers import read_run_log, steady_samples_per_sec
from diffcore.train.lr_schedules import build_lr_scheduler, lr_factor
from diffcore.train.trainer import NonFiniteLossError, Objective, Trainer, TrainSummary, saves_itself

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
    "read_run_log",
    "saves_itself",
    "steady_samples_per_sec",
]
