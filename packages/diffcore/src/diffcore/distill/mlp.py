"""A small MLP denoiser for low-dimensional data (2-D toy distributions, tabular features).

It meets the network contract ``net(x_t, t, **cond) -> tensor shaped like x_t`` with ``x_t: (B, D)`` and
``t: (B,)`` in [0, 1] (0 = data), and optionally takes a class label ``y: (B,)`` (long, ``num_classes``
is the null label of classifier-free guidance) and a guidance scale ``w: (B,)`` (LCM's guidance-scale
embedding, Luo et al. 2023, Sec. 4.2). Its linear layers sit under ``mlp`` so that
:func:`diffcore.nn.lora.add_lora` finds them; the embedders are not LoRA targets.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from diffcore.nn.embeddings import timestep_embedding
from diffcore.pretrained import PretrainedModel


@dataclass
class MLPDenoiserConfig:
    """dim: data dimension D; width/depth: hidden width and number of hidden layers; time_features:
    sinusoidal features of ``t``; num_classes: class labels (0 = unconditional; label ``num_classes`` is
    the null label); guidance_embedding: take a guidance scale ``w`` as input (LCM); guidance_scale_max:
    the largest ``w`` the embedding is scaled for."""

    dim: int = 2
    width: int = 128
    depth: int = 3
    time_features: int = 64
    num_classes: int = 0
    guidance_embedding: bool = False
    guidance_scale_max: float = 8.0


class MLPDenoiser(PretrainedModel):
    """``net(x, t, y=None, w=None) -> (B, D)``: an MLP on ``[x, emb(t) (+ emb(y)) (+ emb(w))]``."""

    config_class = MLPDenoiserConfig

    def __init__(self, config: MLPDenoiserConfig) -> None:
        super().__init__(config)
        for name in ("dim", "width", "depth", "time_features"):
            if getattr(config, name) < 1:
                raise ValueError(f"{name}: expected an integer >= 1, got {getattr(config, name)}")
        c = config
        self.time_embed = nn.Sequential(nn.Linear(c.time_features, c.width), nn.SiLU())
        self.label_embed = nn.Embedding(c.num_classes + 1, c.width) if c.num_classes > 0 else None
        self.guidance_embed = (
            nn.Sequential(nn.Linear(c.time_features, c.width), nn.SiLU()) if c.guidance_embedding else None
        )
        layers: list[nn.Module] = [nn.Linear(c.dim + c.width, c.width), nn.SiLU()]
        for _ in range(c.depth - 1):
            layers += [nn.Linear(c.width, c.width), nn.SiLU()]
        layers.append(nn.Linear(c.width, c.dim))
        self.mlp = nn.Sequential(*layers)

    def forward(self, x: Tensor, t: Tensor, y: Tensor | None = None, w: Tensor | None = None) -> Tensor:
        """x: (B, D); t: (B,) in [0, 1]; y: (B,) labels; w: (B,) guidance scales. Returns (B, D)."""
        if x.ndim != 2 or x.shape[1] != self.config.dim:
            raise ValueError(f"x: expected shape (B, {self.config.dim}), got {tuple(x.shape)}")
        h = self.time_embed(timestep_embedding(t, self.config.time_features).to(x.dtype))
        if self.label_embed is not None:
            if y is None:
                raise ValueError("y: this model is class-conditional; pass labels (num_classes = null label)")
            h = h + self.label_embed(y.long())
        if self.guidance_embed is not None:
            if w is None:
                raise ValueError("w: this model embeds the guidance scale; pass w of shape (B,)")
            w_unit = w.to(torch.float32) / self.config.guidance_scale_max  # same frequencies as t in [0, 1]
            h = h + self.guidance_embed(timestep_embedding(w_unit, self.config.time_features).to(x.dtype))
        return self.mlp(torch.cat([x, h], dim=-1))
