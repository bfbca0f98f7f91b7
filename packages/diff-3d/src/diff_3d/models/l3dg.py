"""L3DG-style autoencoder: a 3D-convolutional KL-VAE of voxel-aligned Gaussians (Roessle et al. 2024, "L3DG").

Splat sets become ``G^3`` grids of 15 channels (:mod:`diff_3d.voxels`); the VAE compresses a grid to a latent grid
``(c, G / 2^k, G / 2^k, G / 2^k)`` (``k = downsample`` stride-2 stages) on which the latent diffusion model runs.
The decoder returns the occupancy as a logit and the other 14 channels as they are stored.

Loss (:meth:`VoxelVAE.loss`): occupancy BCE (occupied cells weighted by ``occupancy_weight``; they are few), MSE of
offset, log-scales, opacity logit and colour on the occupied cells, ``1 - |<q, q*>|`` of the rotation there, and
``kl_weight`` times the KL of the latent to ``N(0, I)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from diffcore.pretrained import PretrainedModel
from torch import Tensor, nn

from diff_3d import voxels as vx
from diff_3d.models.layout import check_features, normalise_quats
from diff_3d.voxels import VOXEL_CHANNELS, features_to_voxels, voxels_to_features

__all__ = ["L3DGConfig", "VoxelVAE", "split_cells"]


@dataclass
class L3DGConfig:
    """Hyper-parameters of :class:`VoxelVAE`: ``grid_size`` cells per axis over ``[-extent, extent]^3``,
    ``downsample`` stride-2 stages, ``channels`` base width, ``latent_channels`` of the latent grid.
    ``initial_logvar``: the posterior's initial log-variance (narrow: unit noise would drown the latent at first).
    ``scale_prior``: the log-scale channel is decoded around ``log(scale_prior * extent)`` (a target far from the
    zero output inflates Adam's second moments early and stalls learning for hundreds of steps).
    ``merge_cells``: a cell stands for all its Gaussians (:func:`diff_3d.voxels.features_to_voxels`' ``merge``).
    ``split_cells``: decoding at a budget above the occupied cells undoes the merge (:func:`split_cells`)."""

    grid_size: int = 16
    downsample: int = 2
    channels: int = 32
    latent_channels: int = 8
    extent: float = 1.0
    threshold: float = 0.5
    occupancy_weight: float = 2.0
    kl_weight: float = 1e-4
    initial_logvar: float = -8.0
    scale_prior: float = 0.03
    merge_cells: bool = True
    split_cells: bool = True

    def __post_init__(self) -> None:
        if self.downsample < 0 or self.grid_size % (2**self.downsample):
            raise ValueError(
                f"grid_size: expected a multiple of 2^downsample = {2 ** max(self.downsample, 0)}, got {self.grid_size}"
            )
        if self.channels < 8 or self.channels % 8:
            raise ValueError(f"channels: expected a multiple of 8 (GroupNorm), got {self.channels}")
        if self.latent_channels < 1:
            raise ValueError(f"latent_channels: expected >= 1, got {self.latent_channels}")


def split_cells(rows: Tensor, budget: int, generator: torch.Generator | None = None) -> Tensor:
    """Undo :func:`~diff_3d.voxels.features_to_voxels`' merge approximately: ``(n, 14)`` merged Gaussians ->
    ``(budget, 14)`` when ``n < budget``. Every Gaussian is kept and ``budget - n`` more are drawn among them; one
    drawn ``c`` times becomes ``c`` children placed inside it (``mean + R S u``, ``u ~ N(0, I)`` clipped to the unit
    ball) with scales divided by ``sqrt(c)`` (the merge grew them by ``sqrt(count)``). ``n >= budget``: as is."""
    n = rows.shape[0]
    if n >= budget or n == 0:
        return rows
    from diff_3d.gaussians import quat_to_rotation
    from diff_3d.models import layout

    dev = rows.device
    pick = torch.cat(
        [torch.arange(n, device=dev), torch.randint(0, n, (budget - n,), generator=generator, device=dev)]
    )
    count = torch.bincount(pick, minlength=n).to(rows.dtype)[pick, None]
    child = rows[pick].clone()
    u = torch.randn((budget, 3), generator=generator, device=dev, dtype=rows.dtype)
    u = u / u.norm(dim=-1, keepdim=True).clamp_min(1.0)
    local = u * child[:, layout.LOG_SCALES].exp()
    jitter = torch.einsum("nij,nj->ni", quat_to_rotation(child[:, layout.QUAT]), local)
    child[:, layout.MEANS] += torch.where(count > 1, jitter, torch.zeros_like(jitter))
    child[:, layout.LOG_SCALES] -= 0.5 * torch.log(count)
    return child


class _Res(nn.Module):
    def __init__(self, ch: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.GroupNorm(8, ch), nn.SiLU(), nn.Conv3d(ch, ch, 3, padding=1),
            nn.GroupNorm(8, ch), nn.SiLU(), nn.Conv3d(ch, ch, 3, padding=1),
        )  # fmt: skip

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class VoxelVAE(PretrainedModel):
    """Grids ``(B, 15, G, G, G)`` <-> latent grids ``(B, c, g, g, g)``, ``g = G / 2^downsample``."""

    config_class = L3DGConfig
    config: L3DGConfig
    latent_scale: Tensor

    def __init__(self, config: L3DGConfig) -> None:
        super().__init__(config)
        ch, k = config.channels, config.downsample
        enc: list[nn.Module] = [nn.Conv3d(VOXEL_CHANNELS, ch, 3, padding=1)]
        dec: list[nn.Module] = [nn.Conv3d(config.latent_channels, ch, 3, padding=1)]
        for _ in range(k):
            enc += [_Res(ch), nn.Conv3d(ch, ch, 4, stride=2, padding=1)]
            dec += [_Res(ch), nn.ConvTranspose3d(ch, ch, 4, stride=2, padding=1)]
        enc += [_Res(ch), nn.GroupNorm(8, ch), nn.SiLU(), nn.Conv3d(ch, 2 * config.latent_channels, 1)]
        dec += [_Res(ch), nn.GroupNorm(8, ch), nn.SiLU(), nn.Conv3d(ch, VOXEL_CHANNELS, 3, padding=1)]
        self.encoder, self.decoder = nn.Sequential(*enc), nn.Sequential(*dec)
        with torch.no_grad():  # a narrow posterior at first: unit noise would drown the latent's mean
            self.encoder[-1].bias[config.latent_channels :].fill_(config.initial_logvar)
        offset = torch.zeros(VOXEL_CHANNELS)
        offset[vx.LOG_SCALES] = math.log(config.scale_prior * config.extent)
        self.register_buffer("channel_offset", offset.view(1, -1, 1, 1, 1), persistent=False)
        self.register_buffer("latent_scale", torch.ones(()))

    @property
    def latent_shape(self) -> tuple[int, ...]:
        """``(c, g, g, g)``: one object's latent as the diffusion model sees it."""
        g = self.config.grid_size // 2**self.config.downsample
        return (self.config.latent_channels, g, g, g)

    def voxelise(self, features: Tensor) -> Tensor:
        """Splat sets ``(B, N, 14)`` -> grids ``(B, 15, G, G, G)`` (:func:`diff_3d.voxels.features_to_voxels`)."""
        return features_to_voxels(
            features, self.config.grid_size, self.config.extent, self.config.merge_cells
        )

    def posterior(self, voxels: Tensor) -> tuple[Tensor, Tensor]:
        """``(mean, logvar)`` ``(B, c, g, g, g)`` of grids ``(B, 15, G, G, G)``."""
        g = self.config.grid_size
        if voxels.ndim != 5 or tuple(voxels.shape[1:]) != (VOXEL_CHANNELS, g, g, g):
            raise ValueError(
                f"voxels: expected (B, {VOXEL_CHANNELS}, {g}, {g}, {g}), got {tuple(voxels.shape)}"
            )
        mean, logvar = self.encoder(voxels).chunk(2, dim=1)
        return mean, logvar.clamp(-20.0, 10.0)

    def decode(self, z: Tensor) -> Tensor:
        """Unscaled latents ``(B, c, g, g, g)`` -> grid logits ``(B, 15, G, G, G)`` (occupancy as a logit)."""
        return self.decoder(z) + self.channel_offset

    @torch.no_grad()
    def encode_latents(self, features: Tensor) -> Tensor:
        """Scaled posterior means ``(B, c, g, g, g)`` of splat sets ``(B, N, 14)``."""
        check_features(features)
        return self.posterior(self.voxelise(features))[0] * self.latent_scale

    @torch.no_grad()
    def fit_scaling(self, features: Tensor, batch_size: int = 64) -> float:
        """Set ``latent_scale`` to ``1 / std`` of the posterior means of ``features``; returns it."""
        self.latent_scale.fill_(1.0)
        means = torch.cat(
            [self.encode_latents(features[i : i + batch_size]) for i in range(0, len(features), batch_size)]
        )
        self.latent_scale.fill_(1.0 / float(means.std().clamp_min(1e-6)))
        return float(self.latent_scale)

    @torch.no_grad()
    def decode_latents(
        self, latents: Tensor, budget: int | None = None, generator: torch.Generator | None = None
    ) -> list[Tensor]:
        """Splat sets ``(n_i, 14)`` from scaled latents ``(B, c, g, g, g)``: the cells decoded as occupied, at most
        ``budget`` of them; with ``split_cells`` and fewer occupied cells than ``budget``, exactly ``budget``
        (:func:`split_cells`, drawn with ``generator``)."""
        if latents.ndim != 5 or tuple(latents.shape[1:]) != self.latent_shape:
            raise ValueError(
                f"latents: expected (B, {', '.join(map(str, self.latent_shape))}), got {tuple(latents.shape)}"
            )
        grid = self.decode(latents / self.latent_scale)
        grid = torch.cat([torch.sigmoid(grid[:, vx.OCCUPANCY]), grid[:, 1:]], dim=1)
        grid[:, vx.QUAT] = normalise_quats(grid[:, vx.QUAT].movedim(1, -1)).movedim(-1, 1)
        out = voxels_to_features(grid, self.config.extent, self.config.threshold, budget)
        if budget is not None and self.config.split_cells and self.config.merge_cells:
            out = [split_cells(rows, budget, generator) for rows in out]
        return out

    def loss(
        self, features: Tensor, generator: torch.Generator | None = None
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """The VAE's training loss on splat sets ``(B, N, 14)`` (voxelised here) and its parts to log."""
        check_features(features)
        c = self.config
        target = self.voxelise(features)
        mean, logvar = self.posterior(target)
        eps = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        out = self.decode(mean + torch.exp(0.5 * logvar) * eps)
        occ = target[:, 0]
        pos_weight = torch.tensor(c.occupancy_weight, device=out.device)
        loss_occ = F.binary_cross_entropy_with_logits(out[:, 0], occ, pos_weight=pos_weight)
        count = occ.sum().clamp_min(1.0)

        def masked(err: Tensor) -> Tensor:
            return (err * occ).sum() / count

        def mse(ch: slice) -> Tensor:
            return masked(((out[:, ch] - target[:, ch]) ** 2).mean(1))

        loss_attr = mse(vx.OFFSET) + mse(vx.LOG_SCALES)
        loss_colour = mse(vx.COLOUR)
        loss_opacity = masked(((out[:, vx.OPACITY] - target[:, vx.OPACITY].clamp(-8, 8)) ** 2).squeeze(1))
        q = normalise_quats(out[:, vx.QUAT].movedim(1, -1))
        loss_rot = masked(1 - (q * normalise_quats(target[:, vx.QUAT].movedim(1, -1))).sum(-1).abs())
        kl = 0.5 * (mean**2 + logvar.exp() - 1 - logvar).mean()
        loss = loss_occ + loss_attr + loss_colour + 0.1 * loss_opacity + loss_rot + c.kl_weight * kl
        logs = {
            "occupancy": loss_occ,
            "attributes": loss_attr,
            "colour": loss_colour,
            "rotation": loss_rot,
            "kl": kl,
        }
        return loss, {k: v.detach() for k, v in logs.items()}
