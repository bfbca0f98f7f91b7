"""Several Trainers in one process (e.g. an autoencoder in float32, then a diffusion model in bf16)."""

import torch
from diffcore.training import TrainConfig, Trainer
from torch.utils.data import DataLoader, TensorDataset


def _objective(model, batch, generator=None):
    x = batch[0]
    return ((model(x) - x) ** 2).mean()


def test_trainers_with_different_mixed_precision_run_one_after_another(tmp_path):
    data = DataLoader(TensorDataset(torch.randn(16, 4)), batch_size=8)
    for i, precision in enumerate(["no", "bf16", "no"]):
        config = TrainConfig(
            steps=2, mixed_precision=precision, output_dir=str(tmp_path / f"run{i}"), ema_decay=None,
            progress_bar=False, tensorboard=False, checkpoint_every=None,
        )  # fmt: skip
        trainer = Trainer(torch.nn.Linear(4, 4), _objective, data, config)
        assert trainer.accelerator.mixed_precision == precision
        summary = trainer.fit()
        assert summary.steps == 2 and torch.isfinite(torch.tensor(summary.final_loss))
