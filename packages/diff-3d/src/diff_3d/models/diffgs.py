"""DiffGS-style autoencoder: Gaussian splats as three neural functions of a latent (Zhou et al. 2024, "DiffGS").

A fixed-budget splat set ``(B, N, 14)`` (:mod:`diff_3d.models.layout`) is encoded by a set encoder into
``K`` latent tokens of width ``C``; the latent conditions three neural fields over space (Sec. 3.1 of the paper):

- **GauPF**, the Gaussian probability function: how likely a Gaussian centre lies at ``x``. We regress the
  unsigned distance ``d(x)`` to the nearest centre, truncated at ``truncation`` (L1 loss), and read the
  probability as ``exp(-d^2 / 2h^2)`` (:func:`diff_3d.extraction.probability`). A distance regression is
  chosen over a BCE on a distance kernel because it has a useful gradient everywhere inside the truncation band,
  which the extraction's refinement steps follow.
- **GauCF**, the Gaussian colour function: the degree-0 SH colour of the nearest centre at ``x``.
- **GauTF**, the Gaussian transform function: log-scales, rotation (unit quaternion, wxyz) and opacity logit of
  the nearest centre at ``x``.

GauCF and GauTF are supervised at the centres and at points near them (within ``attribute_radius``) with the
nearest centre's attributes, so they are smooth around the surface where extraction queries them.

The encoder (:class:`SetEncoder`) is permutation invariant: per-Gaussian MLP features pooled by ``K`` learned
queries through cross-attention (the set transformer's PMA, Lee et al. 2019), then self-attention among the
tokens. The latent is a KL-regularised Gaussian posterior (``kl_weight``) scaled to unit variance for diffusion
(``latent_scale``, fitted to the training latents).

The fields share one trunk and have three heads: a query's Fourier features plus a projection of the whole latent
(the global code of occupancy networks / DeepSDF, which trains fast) cross-attend to the latent tokens.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from diffcore.nn import Attention, CrossAttention, Mlp
from diffcore.pretrained import PretrainedModel
from torch import Tensor, nn

from diff_3d.extraction import extract_points
from diff_3d.models.layout import (
    COLOUR,
    FEATURES,
    LOG_SCALES,
    MEANS,
    OPACITY,
    QUAT,
    check_features,
    normalise_quats,
)

__all__ = ["DiffGSAutoencoder", "DiffGSConfig", "FourierFeatures", "GaussianFields", "SetEncoder"]


@dataclass
class DiffGSConfig:
    """Hyper-parameters of :class:`DiffGSAutoencoder`.

    ``extent``: objects live in ``[-extent, extent]^3``. ``truncation``, ``bandwidth``, ``attribute_radius`` and
    ``keep_distance`` are in the units of positions. ``queries``: training query points per object.

    ``initial_logvar``: the posterior's initial log-variance (a narrow start: unit noise would drown the mean).
    ``scale_prior``: GauTF's log-scales are predicted around ``log(scale_prior * extent)``; a target far from the
    zero output gives huge first gradients that inflate Adam's second moments and stall every shared weight for
    hundreds of steps.
    """

    latent_tokens: int = 8
    latent_dim: int = 16
    width: int = 128
    heads: int = 4
    frequencies: int = 6
    extent: float = 1.0
    truncation: float = 0.1
    bandwidth: float = 0.01
    attribute_radius: float = 0.04
    keep_distance: float = 0.01
    queries: int = 1024
    kl_weight: float = 1e-4
    refine_steps: int = 4
    initial_logvar: float = -8.0
    scale_prior: float = 0.03

    def __post_init__(self) -> None:
        for name in ("latent_tokens", "latent_dim", "width", "heads", "queries"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: expected >= 1, got {getattr(self, name)}")
        if self.width % self.heads:
            raise ValueError(f"heads: {self.heads} must divide width {self.width}")
        for name in ("extent", "truncation", "bandwidth", "attribute_radius", "keep_distance"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name}: expected > 0, got {getattr(self, name)}")


class FourierFeatures(nn.Module):
    """``x`` ``(..., 3)`` in ``[-extent, extent]`` -> ``(..., 3 + 6 F)``: ``x`` and ``sin, cos(2^k pi x / extent)``."""

    def __init__(self, frequencies: int, extent: float) -> None:
        super().__init__()
        self.register_buffer("freqs", (2.0 ** torch.arange(frequencies)) * math.pi / extent, persistent=False)
        self.dim = 3 + 6 * frequencies

    def forward(self, x: Tensor) -> Tensor:
        """``x`` ``(..., 3)`` -> ``(..., 3 + 6 F)``: ``x`` with ``sin`` and ``cos`` of ``x`` times each of the
        ``F`` frequencies."""
        a = (x[..., None] * self.freqs).flatten(-2)
        return torch.cat([x, a.sin(), a.cos()], dim=-1)


class _Block(nn.Module):
    """Pre-norm residual block: attention (self, or cross to ``context``) then an MLP."""

    def __init__(self, width: int, heads: int, cross: bool) -> None:
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.attn: nn.Module = CrossAttention(width, width, heads) if cross else Attention(width, heads)
        self.mlp = Mlp(width, 4 * width)

    def forward(self, x: Tensor, context: Tensor | None = None) -> Tensor:
        h = self.norm1(x)
        x = x + (self.attn(h, context) if context is not None else self.attn(h))
        return x + self.mlp(self.norm2(x))


class SetEncoder(nn.Module):
    """A splat set ``(B, N, 14)`` -> posterior ``(mean, logvar)``, each ``(B, K, C)``; invariant to the order of
    the ``N`` Gaussians (pointwise MLP, then pooling by multi-head attention with ``K`` learned queries)."""

    def __init__(self, config: DiffGSConfig) -> None:
        super().__init__()
        w = config.width
        self.fourier = FourierFeatures(config.frequencies, config.extent)
        self.point = nn.Sequential(
            nn.Linear(self.fourier.dim + FEATURES - 3, w),
            nn.GELU(),
            nn.Linear(w, w),
            nn.GELU(),
            nn.Linear(w, w),
        )
        self.queries = nn.Parameter(torch.randn(config.latent_tokens, w) * 0.02)
        self.pool = _Block(w, config.heads, cross=True)
        self.mix = _Block(w, config.heads, cross=False)
        self.out = nn.Sequential(nn.LayerNorm(w), nn.Linear(w, 2 * config.latent_dim))
        with torch.no_grad():  # start with a narrow posterior: unit noise would drown the mean at first
            self.out[-1].bias[config.latent_dim :].fill_(config.initial_logvar)

    def forward(self, features: Tensor) -> tuple[Tensor, Tensor]:
        """A splat set ``(B, N, 14)`` -> posterior ``(mean, logvar)``, each ``(B, K, C)`` (``logvar`` clamped
        to ``[-20, 10]``)."""
        h = torch.cat([self.fourier(features[..., MEANS]), features[..., 3:]], dim=-1)
        h = self.point(h)
        tokens = self.pool(self.queries.expand(h.shape[0], -1, -1), h)
        mean, logvar = self.out(self.mix(tokens)).chunk(2, dim=-1)
        return mean, logvar.clamp(-20.0, 10.0)


def _head(width: int, out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(width, width), nn.GELU(), nn.Linear(width, width), nn.GELU(), nn.Linear(width, out)
    )


class GaussianFields(nn.Module):
    """GauPF, GauCF and GauTF at query points ``x`` ``(B, M, 3)`` given latent tokens ``z`` ``(B, K, C)``.

    ``forward`` returns a dict of ``(B, M, ...)`` tensors: ``distance`` (``>= 0``, GauPF's unsigned distance),
    ``colour`` (3), ``log_scales`` (3), ``quat`` (4, unit) and ``opacity_logit`` (1).
    """

    def __init__(self, config: DiffGSConfig) -> None:
        super().__init__()
        w = config.width
        self.log_scale_prior = math.log(config.scale_prior * config.extent)
        self.latent_in = nn.Linear(config.latent_dim, w)
        self.context = _Block(w, config.heads, cross=False)
        self.fourier = FourierFeatures(config.frequencies, config.extent)
        self.query_in = nn.Sequential(nn.Linear(self.fourier.dim, w), nn.GELU(), nn.Linear(w, w))
        self.global_in = nn.Linear(config.latent_tokens * config.latent_dim, w)
        self.trunk = _Block(w, config.heads, cross=True)
        self.gaupf = _head(w, 1)
        self.gaucf = _head(w, 3)
        self.gautf = _head(w, 8)

    def trunk_features(self, z: Tensor, x: Tensor) -> Tensor:
        """The shared features ``(B, M, width)`` of queries ``x`` under latent ``z``."""
        context = self.context(self.latent_in(z))
        h = self.query_in(self.fourier(x)) + self.global_in(z.flatten(1))[:, None]
        return self.trunk(h, context)

    def distance(self, z: Tensor, x: Tensor) -> Tensor:
        """GauPF alone: ``(B, M)`` unsigned distances."""
        return F.softplus(self.gaupf(self.trunk_features(z, x))).squeeze(-1)

    def forward(self, z: Tensor, x: Tensor) -> dict[str, Tensor]:
        """The three fields at the query points ``x`` ``(B, M, 3)`` given the latent tokens ``z``
        ``(B, K, C)``; the keys are listed in the class docstring."""
        h = self.trunk_features(z, x)
        tf = self.gautf(h)
        return {
            "distance": F.softplus(self.gaupf(h)).squeeze(-1),
            "colour": self.gaucf(h),
            "log_scales": tf[..., 0:3] + self.log_scale_prior,
            "quat": normalise_quats(tf[..., 3:7]),
            "opacity_logit": tf[..., 7:8],
        }


class DiffGSAutoencoder(PretrainedModel):
    """Set encoder + Gaussian functions. The diffusion model works on :meth:`encode_latents`' output
    ``(B, C, K)`` (channels first, the ``K`` tokens as a 1-D sequence), scaled to about unit variance."""

    config_class = DiffGSConfig
    config: DiffGSConfig
    latent_scale: Tensor

    def __init__(self, config: DiffGSConfig) -> None:
        super().__init__(config)
        self.encoder = SetEncoder(config)
        self.fields = GaussianFields(config)
        self.register_buffer("latent_scale", torch.ones(()))

    @property
    def latent_shape(self) -> tuple[int, ...]:
        """``(C, K)``: the shape of one object's latent as the diffusion model sees it."""
        return (self.config.latent_dim, self.config.latent_tokens)

    def posterior(self, features: Tensor) -> tuple[Tensor, Tensor]:
        """``(mean, logvar)`` ``(B, K, C)`` of splat sets ``features`` ``(B, N, 14)``."""
        check_features(features)
        return self.encoder(features)

    @torch.no_grad()
    def encode_latents(self, features: Tensor) -> Tensor:
        """Scaled posterior means ``(B, C, K)`` of ``features`` ``(B, N, 14)``."""
        mean, _ = self.posterior(features)
        return (mean * self.latent_scale).transpose(1, 2)

    @torch.no_grad()
    def fit_scaling(self, features: Tensor, batch_size: int = 64) -> float:
        """Set ``latent_scale`` to ``1 / std`` of the posterior means of ``features``; returns it."""
        means = torch.cat(
            [self.posterior(features[i : i + batch_size])[0] for i in range(0, len(features), batch_size)]
        )
        self.latent_scale.fill_(1.0 / float(means.std().clamp_min(1e-6)))
        return float(self.latent_scale)

    def _tokens(self, latents: Tensor) -> Tensor:
        if latents.ndim != 3 or tuple(latents.shape[1:]) != self.latent_shape:
            raise ValueError(
                f"latents: expected (B, {', '.join(map(str, self.latent_shape))}), got {tuple(latents.shape)}"
            )
        return latents.transpose(1, 2) / self.latent_scale

    @torch.no_grad()
    def decode_latents(
        self, latents: Tensor, budget: int, generator: torch.Generator | None = None, candidates: int = 0
    ) -> list[Tensor]:
        """Splat sets of exactly ``budget`` Gaussians from scaled latents ``(B, C, K)``: one ``(budget, 14)``
        tensor per object (:func:`~diff_3d.extraction.extract_points`, then GauCF and GauTF at the centres)."""
        z = self._tokens(latents)
        c = self.config
        means = extract_points(
            lambda x: self.fields.distance(z, x), z.shape[0], budget, extent=c.extent, candidates=candidates,
            refine_steps=c.refine_steps, keep_distance=c.keep_distance, generator=generator, device=z.device,
        )  # fmt: skip
        f = self.fields(z, means)
        out = torch.cat([means, f["quat"], f["log_scales"], f["opacity_logit"], f["colour"]], dim=-1)
        return list(out.unbind(0))

    def loss(
        self, features: Tensor, generator: torch.Generator | None = None
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """The autoencoder's training loss on splat sets ``(B, N, 14)`` and its parts (detached) to log.

        Queries: a quarter at centres, half near them (Gaussian offsets of std 0.01 or 0.05 ``extent``), a quarter
        uniform in the cube 1.1 times the object's. GauPF: L1 to the truncated distance. GauCF / GauTF at queries
        within ``attribute_radius`` of a centre: MSE of colour, log-scales and opacity logit, ``1 - |<q, q*>|`` of
        the rotation (``q`` and ``-q`` are one rotation). Plus ``kl_weight`` times the KL to ``N(0, I)``.
        """
        check_features(features)
        c = self.config
        mean, logvar = self.posterior(features)
        eps = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        z = mean + torch.exp(0.5 * logvar) * eps
        x = self._queries(features[..., MEANS], generator)
        d, idx = torch.cdist(x, features[..., MEANS]).min(dim=-1)
        f = self.fields(z, x)
        loss_pf = (f["distance"] - d.clamp(max=c.truncation)).abs().mean()
        target = torch.gather(features, 1, idx[..., None].expand(-1, -1, FEATURES))
        near = (d < c.attribute_radius).float()
        count = near.sum().clamp_min(1.0)

        def masked(err: Tensor) -> Tensor:
            return (err * near).sum() / count

        loss_cf = masked(((f["colour"] - target[..., COLOUR]) ** 2).mean(-1))
        loss_scale = masked(((f["log_scales"] - target[..., LOG_SCALES]) ** 2).mean(-1))
        loss_opacity = masked(((f["opacity_logit"] - target[..., OPACITY].clamp(-8, 8)) ** 2).squeeze(-1))
        loss_rot = masked(1 - (f["quat"] * normalise_quats(target[..., QUAT])).sum(-1).abs())
        kl = 0.5 * (mean**2 + logvar.exp() - 1 - logvar).mean()
        loss = 10 * loss_pf + loss_cf + loss_scale + 0.1 * loss_opacity + loss_rot + c.kl_weight * kl
        logs = {"gaupf": loss_pf, "gaucf": loss_cf, "scale": loss_scale, "rotation": loss_rot, "kl": kl}
        return loss, {k: v.detach() for k, v in logs.items()}

    def _queries(self, centres: Tensor, generator: torch.Generator | None) -> Tensor:
        b, n, _ = centres.shape
        q, dev = self.config.queries, centres.device
        n_centre, n_near = max(1, q // 4), max(1, q // 2)
        n_far = max(1, q - n_centre - n_near)
        pick = torch.randint(0, n, (b, n_centre + n_near), generator=generator, device=dev)
        base = torch.gather(centres, 1, pick[..., None].expand(-1, -1, 3))
        scale = torch.where(torch.rand((b, n_near, 1), generator=generator, device=dev) < 0.5, 0.01, 0.05)
        noise = torch.randn((b, n_near, 3), generator=generator, device=dev) * scale * self.config.extent
        far = (torch.rand((b, n_far, 3), generator=generator, device=dev) * 2 - 1) * 1.1 * self.config.extent
        return torch.cat([base[:, :n_centre], base[:, n_centre:] + noise, far], dim=1)
