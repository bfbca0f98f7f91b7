"""The first stage of latent video diffusion: the causal 3D VAE trained on the data (reconstruction + KL) with
diffcore's Trainer, then its latent scaling fitted to the data."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from diffcore.rng import seeded
from diffcore.training import Trainer
from torch import nn
from torch.utils.data import DataLoader

from diff_video.config import VideoTrainConfig
from diff_video.models.vae import CausalVAE, CausalVAEConfig, vae_loss

__all__ = ["VaeObjective", "train_vae"]


@dataclass
class VaeObjective:
    """:func:`~diff_video.models.vae.vae_loss` as a Trainer objective (captions and labels ignored)."""

    kl_weight: float

    def __call__(self, model: nn.Module, batch: Any, generator: torch.Generator | None = None) -> Any:
        return vae_loss(model, {"x": batch["x"]}, self.kl_weight, generator)


def train_vae(data: Any, config: VideoTrainConfig, run: Path, device: torch.device) -> CausalVAE:
    """Train the VAE of ``config.vae`` on ``data.dataset`` for ``config.vae.steps`` steps (the rest of the
    optimisation is ``config.train``'s, EMA off; run folder ``run``), fit its latent scaling to 256 clips, and return
    it in eval mode on ``device``."""
    v = config.vae
    cfg = CausalVAEConfig(
        data.clip_shape[0], v.latent_channels, v.channels, v.temporal_downsample, v.spatial_downsample
    )
    with seeded(config.train.seed):
        vae = CausalVAE(cfg)
    vae.latent_shape(data.clip_shape)  # a clip size the VAE cannot take is reported before training
    stage = dataclasses.replace(
        config.train, steps=v.steps, warmup_steps=min(config.train.warmup_steps, v.steps - 1), output_dir=str(run),
        ema_decay=None,
    )  # fmt: skip
    loader = DataLoader(data.dataset, batch_size=config.batch_size, shuffle=True, drop_last=True)
    trainer = Trainer(vae, VaeObjective(v.kl_weight), loader, stage)
    trainer.fit()
    vae = trainer.unwrapped_model.to(device).eval()  # type: ignore[assignment]
    clips = torch.stack([data.dataset[i]["x"] for i in range(min(256, len(data.dataset)))])
    vae.fit_scaling(clips)
    return vae
