"""KL-regularised autoencoder for latent diffusion (Rombach et al. 2022, "High-Resolution Image Synthesis with
Latent Diffusion Models", Sec. 3 and App. G).

The encoder maps ``x`` ``(B, C, H, W)`` in ``[-1, 1]`` to a diagonal Gaussian ``q(z | x) = N(mean, exp(logvar))``
over ``z`` ``(B, latent_channels, H / f, W / f)`` (``f = downsample``, 4 or 8); the decoder maps ``z`` back.
Training minimises (:class:`AutoencoderObjective`)

    L = |x - D(z)|_1 + kl_weight * KL(q(z | x) || N(0, I)) + perceptual_weight * |phi(x) - phi(D(z))|^2

with ``z`` drawn by the reparameterisation trick, KL averaged over latent elements, and ``phi`` the features of
a locally trained network (optional; LDM uses LPIPS, which needs downloaded weights). Diffusion then runs on
``(mean - shift_factor) * scaling_factor`` with the factors computed from the data (:func:`fit_latent_scaling`)
so that the latents have unit variance (LDM Sec. 4.3.2 / App. G).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from diffcore.pretrained import PretrainedModel
from diffcore.training.objectives import split_batch
from torch import Tensor, nn

from diff_image.config import AutoencoderConfig

__all__ = [
    "AutoencoderKL",
    "AutoencoderObjective",
    "DiagonalGaussian",
    "fit_latent_scaling",
    "reconstruction_error",
]


def _groups(channels: int) -> int:
    return math.gcd(channels, 8)


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv twice with a residual connection (a 1x1 conv when the width changes)."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.GroupNorm(_groups(c_in), c_in),
            nn.SiLU(),
            nn.Conv2d(c_in, c_out, 3, padding=1),
            nn.GroupNorm(_groups(c_out), c_out),
            nn.SiLU(),
            nn.Conv2d(c_out, c_out, 3, padding=1),
        )
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        """``skip(x) + body(x)`` on ``x: (B, C, H, W)``."""
        return self.skip(x) + self.body(x)


def _widths(config: AutoencoderConfig) -> list[int]:
    """Channels at each resolution, from full resolution down (doubling, capped at 4x base)."""
    n = int(math.log2(config.downsample))
    return [config.base_channels * min(2**i, 4) for i in range(n + 1)]


class Encoder(nn.Module):
    """``(B, C, H, W)`` -> ``(B, 2 * latent_channels, H / f, W / f)`` (mean and log-variance)."""

    def __init__(self, config: AutoencoderConfig) -> None:
        super().__init__()
        widths = _widths(config)
        layers: list[nn.Module] = [nn.Conv2d(config.in_channels, widths[0], 3, padding=1)]
        for c_in, c_out in itertools.pairwise(widths):
            layers += [ResBlock(c_in, c_in), nn.Conv2d(c_in, c_out, 3, stride=2, padding=1)]
        c = widths[-1]
        layers += [ResBlock(c, c), nn.GroupNorm(_groups(c), c), nn.SiLU()]
        layers.append(nn.Conv2d(c, 2 * config.latent_channels, 3, padding=1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        """``(B, C, H, W)`` -> ``(B, 2 * latent_channels, H / f, W / f)``: the posterior's mean and
        log-variance."""
        return self.net(x)


class Decoder(nn.Module):
    """``(B, latent_channels, h, w)`` -> ``(B, C, h * f, w * f)``."""

    def __init__(self, config: AutoencoderConfig) -> None:
        super().__init__()
        widths = _widths(config)[::-1]
        layers: list[nn.Module] = [
            nn.Conv2d(config.latent_channels, widths[0], 3, padding=1),
            ResBlock(widths[0], widths[0]),
        ]
        for c_in, c_out in itertools.pairwise(widths):
            layers += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(c_in, c_out, 3, padding=1)]
            layers.append(ResBlock(c_out, c_out))
        c = widths[-1]
        layers += [nn.GroupNorm(_groups(c), c), nn.SiLU(), nn.Conv2d(c, config.in_channels, 3, padding=1)]
        self.net = nn.Sequential(*layers)

    def forward(self, z: Tensor) -> Tensor:
        """Latents ``(B, latent_channels, h, w)`` -> images ``(B, C, h * f, w * f)``."""
        return self.net(z)


@dataclass
class DiagonalGaussian:
    """``q(z | x) = N(mean, exp(logvar))`` with ``mean``, ``logvar`` ``(B, c, h, w)``."""

    mean: Tensor
    logvar: Tensor

    def sample(self, generator: torch.Generator | None = None) -> Tensor:
        """A reparameterised draw ``mean + exp(logvar / 2) * eps``."""
        eps = torch.randn(
            self.mean.shape, generator=generator, device=self.mean.device, dtype=self.mean.dtype
        )
        return self.mean + torch.exp(0.5 * self.logvar) * eps

    def kl(self) -> Tensor:
        """``KL(q || N(0, I))`` per sample, averaged over latent elements: ``(B,)``."""
        kl = 0.5 * (self.mean**2 + self.logvar.exp() - 1.0 - self.logvar)
        return kl.flatten(1).mean(1)


class AutoencoderKL(PretrainedModel):
    """The KL autoencoder; see the module docstring. ``config`` is an :class:`~diff_image.config.AutoencoderConfig`."""

    config_class = AutoencoderConfig
    config: AutoencoderConfig

    def __init__(self, config: AutoencoderConfig) -> None:
        super().__init__(config)
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)

    def _check(self, x: Tensor) -> None:
        f = self.config.downsample
        if x.ndim != 4 or x.shape[1] != self.config.in_channels or x.shape[2] % f or x.shape[3] % f:
            raise ValueError(
                f"x: expected (B, {self.config.in_channels}, H, W) with H, W divisible by {f}, got {tuple(x.shape)}"
            )

    def posterior(self, x: Tensor) -> DiagonalGaussian:
        """``q(z | x)`` for images ``x`` ``(B, C, H, W)`` in ``[-1, 1]``."""
        self._check(x)
        mean, logvar = self.encoder(x).chunk(2, dim=1)
        return DiagonalGaussian(mean, logvar.clamp(-30.0, 20.0))

    def decode_raw(self, z: Tensor) -> Tensor:
        """Unscaled latent ``z`` ``(B, c, h, w)`` -> image ``(B, C, h f, w f)``."""
        return self.decoder(z)

    def forward(self, x: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, DiagonalGaussian]:
        """Reconstruction ``(B, C, H, W)`` from a posterior draw, and the posterior."""
        q = self.posterior(x)
        return self.decoder(q.sample(generator)), q

    @torch.no_grad()
    def encode(self, x: Tensor) -> Tensor:
        """Diffusion latents ``(mean - shift_factor) * scaling_factor`` ``(B, c, H / f, W / f)`` of ``x``."""
        q = self.posterior(x)
        return (q.mean - self.config.shift_factor) * self.config.scaling_factor

    @torch.no_grad()
    def decode(self, latents: Tensor) -> Tensor:
        """Images ``(B, C, H, W)`` from diffusion latents (the inverse of the scaling of :meth:`encode`)."""
        return self.decoder(latents / self.config.scaling_factor + self.config.shift_factor)

    def latent_shape(self, image_shape: tuple[int, int, int]) -> tuple[int, int, int]:
        """``(c, H / f, W / f)`` for images ``(C, H, W)``."""
        _, h, w = image_shape
        f = self.config.downsample
        if h % f or w % f:
            raise ValueError(f"image_shape: H, W must be divisible by downsample={f}, got {image_shape}")
        return (self.config.latent_channels, h // f, w // f)


@dataclass
class AutoencoderObjective:
    """The autoencoder loss for :class:`diffcore.training.Trainer` (see the module docstring).

    ``perceptual``: a frozen feature map ``phi(x) -> (B, ...)`` (e.g. ``FeatureClassifier.features`` of a
    network trained locally, not the evaluation classifier); used when ``perceptual_weight > 0``.
    """

    kl_weight: float = 1e-4
    perceptual_weight: float = 0.0
    perceptual: Callable[[Tensor], Tensor] | None = None

    def __post_init__(self) -> None:
        if self.perceptual_weight > 0 and self.perceptual is None:
            raise ValueError("perceptual: perceptual_weight > 0 needs a feature network")

    def __call__(
        self, model: nn.Module, batch: Tensor | Mapping[str, Any], generator: torch.Generator | None = None
    ) -> tuple[Tensor, dict[str, Tensor]]:
        x, _ = split_batch(batch)
        recon, q = model(x, generator=generator)
        rec = (recon - x).abs().flatten(1).mean(1)
        kl = q.kl()
        loss = rec + self.kl_weight * kl
        logs = {"recon_l1": rec.mean().detach(), "kl": kl.mean().detach()}
        if self.perceptual_weight > 0 and self.perceptual is not None:
            per = (self.perceptual(recon) - self.perceptual(x).detach()).pow(2).flatten(1).mean(1)
            loss = loss + self.perceptual_weight * per
            logs["perceptual"] = per.mean().detach()
        return loss.mean(), logs


@torch.no_grad()
def fit_latent_scaling(
    autoencoder: AutoencoderKL, images: Tensor, batch_size: int = 256
) -> tuple[float, float]:
    """Set ``shift_factor`` to the mean and ``scaling_factor`` to ``1 / std`` of the posterior means of ``images``
    ``(N, C, H, W)`` (LDM App. G), so that encoded training data has zero mean and unit variance.

    Returns ``(scaling_factor, shift_factor)``.
    """
    if len(images) < 2:
        raise ValueError(f"images: expected at least 2 images to estimate a variance, got {len(images)}")
    was_training = autoencoder.training
    autoencoder.eval()
    device = next(autoencoder.parameters()).device
    means = torch.cat(
        [
            autoencoder.posterior(images[i : i + batch_size].to(device)).mean.double().cpu()
            for i in range(0, len(images), batch_size)
        ]
    )
    autoencoder.train(was_training)
    shift, std = float(means.mean()), float(means.std())
    if not math.isfinite(std) or std <= 0:
        raise ValueError(f"images: the latents have a degenerate spread (std={std})")
    autoencoder.config.shift_factor = shift
    autoencoder.config.scaling_factor = 1.0 / std
    return autoencoder.config.scaling_factor, shift


def reconstruction_error(autoencoder: AutoencoderKL, images: Tensor, batch_size: int = 256) -> float:
    """Mean absolute error of ``decode(encode(x))`` on ``images`` ``(N, C, H, W)`` in ``[-1, 1]``."""
    device = next(autoencoder.parameters()).device
    errs = []
    autoencoder.eval()
    for i in range(0, len(images), batch_size):
        x = images[i : i + batch_size].to(device)
        errs.append((autoencoder.decode(autoencoder.encode(x)) - x).abs().flatten(1).mean(1).cpu())
    return float(torch.cat(errs).mean())
