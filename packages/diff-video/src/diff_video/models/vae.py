"""A causal 3D VAE (MAGVIT-v2 / Open-Sora 1.2 style): video -> compact spacetime latent, an image is a 1-frame video.

Every convolution is causal in time: it pads only with copies of the first frame before the clip, so latent frame
``k`` depends on pixel frames ``<= 4k`` only, and the first frame is encoded alone (``T = 1 + 4n`` frames give
``1 + n`` latent frames with ``temporal_downsample = 4``). Spatially each level halves ``H`` and ``W``. The decoder
mirrors the encoder; its causal temporal up-sampling repeats each latent frame and drops the first copy
(``T' -> 2 T' - 1``).

Latents are scaled by ``scale`` (and shifted by ``shift``) fitted from data (:meth:`CausalVAE.fit_scaling`), as
latent diffusion scales its latents to unit variance.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from diffcore.pretrained import PretrainedModel
from torch import Tensor, nn

__all__ = ["CausalConv3d", "CausalVAE", "CausalVAEConfig", "vae_loss"]


class CausalConv3d(nn.Module):
    """3D convolution, causal in time (left padding with the first frame), ``same`` padding in space."""

    def __init__(
        self, cin: int, cout: int, kernel: int = 3, stride: tuple[int, int, int] = (1, 1, 1)
    ) -> None:
        super().__init__()
        self.time_pad, self.space_pad = kernel - 1, kernel // 2
        self.conv = nn.Conv3d(cin, cout, kernel, stride=stride)

    def forward(self, x: Tensor) -> Tensor:
        """``x: (B, C, T, H, W)`` -> ``(B, C', T, H, W)``; frame ``i`` of the output sees input frames
        ``<= i`` only."""
        first = x[:, :, :1].expand(-1, -1, self.time_pad, -1, -1)
        x = torch.cat([first, x], dim=2)
        x = F.pad(x, (self.space_pad,) * 4 + (0, 0), mode="replicate")
        return self.conv(x)


class FrameNorm(nn.GroupNorm):
    """GroupNorm of each frame on its own (over channels of a group and space, never time), so it stays causal."""

    def forward(self, x: Tensor) -> Tensor:
        """GroupNorm of each frame of ``x: (B, C, T, H, W)`` on its own; same shape out."""
        b, c, t, h, w = x.shape
        y = super().forward(x.transpose(1, 2).reshape(b * t, c, h, w))
        return y.view(b, t, c, h, w).transpose(1, 2)


class ResBlock(nn.Module):
    """Two causal 3D convolutions, each after a per-frame GroupNorm and SiLU, with a residual connection:
    ``(B, C, T, H, W)`` -> same shape."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm1, self.conv1 = FrameNorm(8, channels), CausalConv3d(channels, channels)
        self.norm2, self.conv2 = FrameNorm(8, channels), CausalConv3d(channels, channels)

    def forward(self, x: Tensor) -> Tensor:
        """``x + conv2(silu(norm2(conv1(silu(norm1(x))))))``."""
        h = self.conv1(F.silu(self.norm1(x)))
        return x + self.conv2(F.silu(self.norm2(h)))


@dataclass
class CausalVAEConfig:
    """``in_channels``, ``latent_channels``, base ``channels``, ``temporal_downsample`` (1, 2, 4) and
    ``spatial_downsample`` (2, 4, 8); ``scale`` / ``shift`` of the latents (fitted from data)."""

    in_channels: int = 3
    latent_channels: int = 4
    channels: int = 32
    temporal_downsample: int = 4
    spatial_downsample: int = 4
    scale: float = 1.0
    shift: float = 0.0

    def __post_init__(self) -> None:
        if self.temporal_downsample not in (1, 2, 4) or self.spatial_downsample not in (2, 4, 8):
            raise ValueError(
                f"temporal_downsample, spatial_downsample: expected 1/2/4 and 2/4/8, got "
                f"{self.temporal_downsample}, {self.spatial_downsample}"
            )


class CausalVAE(PretrainedModel):
    """The causal 3D VAE (see the module docstring): clips ``(B, C, T, H, W)`` in [-1, 1] with ``T = 1 + k *
    temporal_downsample`` and ``H, W`` divisible by ``spatial_downsample``."""

    config_class = CausalVAEConfig
    config: CausalVAEConfig

    def __init__(self, config: CausalVAEConfig) -> None:
        super().__init__(config)
        c = config.channels
        levels = int(math.log2(config.spatial_downsample))
        t_levels = int(math.log2(config.temporal_downsample))
        self.t_strides = [2 if i < t_levels else 1 for i in range(levels)]
        self.enc_in = CausalConv3d(config.in_channels, c)
        self.down = nn.ModuleList(
            nn.Sequential(ResBlock(c), CausalConv3d(c, c, stride=(s, 2, 2))) for s in self.t_strides
        )
        self.enc_out = nn.Sequential(FrameNorm(8, c), nn.SiLU(), CausalConv3d(c, 2 * config.latent_channels))
        self.dec_in = CausalConv3d(config.latent_channels, c)
        self.up_blocks = nn.ModuleList(ResBlock(c) for _ in self.t_strides)
        self.up_convs = nn.ModuleList(CausalConv3d(c, c) for _ in self.t_strides)
        self.dec_out = nn.Sequential(FrameNorm(8, c), nn.SiLU(), CausalConv3d(c, config.in_channels))

    def latent_shape(self, shape: tuple[int, ...]) -> tuple[int, int, int, int]:
        """``(C, T, H, W)`` of clips -> ``(latent_channels, 1 + (T - 1) / tf, H / sf, W / sf)``."""
        cfg = self.config
        _, t, h, w = shape
        tf, sf = cfg.temporal_downsample, cfg.spatial_downsample
        if (t - 1) % tf or h % sf or w % sf:
            raise ValueError(
                f"clip shape: frames - 1 must be divisible by {tf} and height, width by {sf} for this VAE, got "
                f"{t}x{h}x{w}"
            )
        return (cfg.latent_channels, 1 + (t - 1) // tf, h // sf, w // sf)

    def decoded_frames(self, latent_frames: int) -> int:
        """Pixel frames decoded from ``latent_frames``."""
        return 1 + (latent_frames - 1) * self.config.temporal_downsample

    def moments(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Posterior mean and log-variance ``(B, latent_channels, T', H', W')`` of clips ``x``."""
        self.latent_shape(tuple(x.shape[1:]))
        h = self.enc_in(x)
        for block in self.down:
            h = block(h)
        mean, logvar = self.enc_out(h).chunk(2, dim=1)
        return mean, logvar.clamp(-30.0, 20.0)

    def decode_raw(self, z: Tensor) -> Tensor:
        """Unscaled latents -> clips."""
        h = self.dec_in(z)
        for block, conv, s in zip(self.up_blocks, self.up_convs, reversed(self.t_strides)):
            h = block(h)
            if s == 2:  # causal temporal up-sampling: T' -> 2 T' - 1
                h = h.repeat_interleave(2, dim=2)[:, :, 1:]
            h = F.interpolate(h, scale_factor=(1, 2, 2), mode="nearest")
            h = conv(h)
        return self.dec_out(h)

    def forward(self, x: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """Reconstruction of ``x`` through a posterior sample, with the posterior's mean and log-variance."""
        mean, logvar = self.moments(x)
        z = mean + torch.exp(0.5 * logvar) * torch.randn(mean.shape, generator=generator, device=mean.device)
        return self.decode_raw(z), mean, logvar

    def encode(self, x: Tensor) -> Tensor:
        """Clips -> scaled latents (the posterior mean; ``(z - shift) * scale``)."""
        return (self.moments(x)[0] - self.config.shift) * self.config.scale

    def decode(self, z: Tensor) -> Tensor:
        """Scaled latents -> clips."""
        return self.decode_raw(z / self.config.scale + self.config.shift)

    @torch.no_grad()
    def fit_scaling(self, clips: Tensor, batch_size: int = 32) -> None:
        """Set ``shift`` / ``scale`` so the latents of ``clips`` have mean 0 and standard deviation 1."""
        dev = next(self.parameters()).device
        z = torch.cat([self.moments(c.to(dev))[0].cpu() for c in clips.split(batch_size)])
        self.config.shift = float(z.mean())
        self.config.scale = float(1.0 / z.std().clamp_min(1e-6))


def vae_loss(
    model: nn.Module,
    batch: dict[str, Tensor] | Tensor,
    kl_weight: float,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Reconstruction (L1 + MSE) + ``kl_weight`` x KL to N(0, I) (per element): a beta-VAE's loss."""
    x = batch["x"] if isinstance(batch, dict) else batch
    recon, mean, logvar = model(x, generator=generator)
    rec = (recon - x).abs().mean() + ((recon - x) ** 2).mean()
    kl = 0.5 * (mean**2 + logvar.exp() - 1 - logvar).mean()
    return rec + kl_weight * kl, {"reconstruction": rec.detach(), "kl": kl.detach()}
