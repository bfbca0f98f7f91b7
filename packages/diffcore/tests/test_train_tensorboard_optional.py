"""TensorBoard is an extra (diffcore[tensorboard]): without it a Trainer with tensorboard on (the default) warns
once and trains, logging to log.jsonl only. The real missing-package case runs in
tests/test_install_each_package.py (diff-language installed alone with plain pip)."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
from diffcore.training import TrainConfig, Trainer, read_run_log, trainer
from diffcore.training._compat import reset_accelerate_state
from torch import nn
from torch.utils.data import DataLoader, TensorDataset


def _fit(tmp_path: Path, **kw) -> None:
    torch.manual_seed(0)
    model = nn.Linear(2, 2)
    loader = DataLoader(TensorDataset(torch.randn(8, 2)), batch_size=4)

    def objective(model, batch, generator=None):
        return model(batch[0]).pow(2).mean()

    cfg = TrainConfig(
        steps=2,
        log_every=1,
        checkpoint_every=None,
        ema_decay=None,
        progress_bar=False,
        device="cpu",
        output_dir=str(tmp_path),
        **kw,
    )
    try:
        Trainer(model, objective, loader, cfg).fit()
    finally:
        reset_accelerate_state(distributed=True)


def test_missing_tensorboard_warns_once_and_logs_jsonl_only(tmp_path, monkeypatch):
    monkeypatch.setattr(trainer, "_tensorboard_available", lambda: False)
    with pytest.warns(UserWarning, match=r"diffcore\[tensorboard\]") as caught:
        _fit(tmp_path)  # tensorboard=True is the default
    assert sum("tensorboard is not installed" in str(w.message) for w in caught) == 1
    assert [r["step"] for r in read_run_log(tmp_path)] == [1, 2]
    assert not (tmp_path / trainer.TENSORBOARD_DIR).exists()


def test_tensorboard_off_never_warns(tmp_path, monkeypatch):
    monkeypatch.setattr(trainer, "_tensorboard_available", lambda: False)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*tensorboard.*")
        _fit(tmp_path, tensorboard=False)
