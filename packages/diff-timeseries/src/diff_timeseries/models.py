"""Networks of diff-timeseries.

- :class:`SeriesVAE`: the length-adaptive VAE of T2S (Ge et al. 2025, Sec. 3.2): 1D convolutions, then
  interpolation of the features to a fixed latent length, so series of any length map to latents ``(B, zc,
  Lz)``; the decoder interpolates back to the requested length. A real KL term (Kingma & Welling 2014,
  Eq. 10) against N(0, I).
- :class:`CaptionEncoder`: a small transformer text encoder trained from scratch with the generator (word
  vocabulary of the training captions, no download): token states ``(B, M, D)``, their mask and a pooled
  vector ``(B, D)``.
- :class:`TextToSeries`: the flow-matching network over latents: diffcore's :class:`~diffcore.nn.MMDiT` whose
  adaLN conditioning is the time embedding plus the pooled caption plus a series-length embedding, with the
  caption tokens in joint attention. Called as ``net(z_t, t, input_ids=..., length=...)``.
- the data-space prior for forecasting and imputation is diffcore's :class:`~diffcore.nn.DiT` over 1D patches
  (:func:`prior_config`).

All tensors follow ``(B, C, L)`` for series; ``t`` is ``(B,)`` in [0, 1], 0 = data, 1 = noise.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from diffcore.nn import DiT, DiTConfig
from diffcore.nn.embeddings import TimestepEmbedder
from diffcore.nn.mmdit import MMDiT, MMDiTConfig
from diffcore.pretrained import PretrainedModel
from torch import Tensor, nn

from diff_timeseries.observed import (
    ObservedConditioning,
    observed_inputs,
    observed_statistics,
)

__all__ = [
    "CaptionEncoder",
    "CaptionEncoderConfig",
    "ObservedObjective",
    "ObservedPrior",
    "ObservedPriorConfig",
    "SeriesVAE",
    "SeriesVAEConfig",
    "TextToSeries",
    "TextToSeriesConfig",
    "latent_dit_config",
    "prior_config",
    "tokenize_words",
]

PAD, UNK = "<pad>", "<unk>"
MAX_LENGTH_EMBED = 4096.0
"""Lengths are embedded as ``log(L) / log(MAX_LENGTH_EMBED)`` through a time embedder (so in [0, 1])."""


# ----------------------------------------------------------------------------------------------- the VAE


@dataclass
class SeriesVAEConfig:
    """Attributes:
    channels: series channels ``C``.
    hidden: convolution width.
    latent_channels: ``zc``.
    latent_length: ``Lz``, the fixed latent length every series maps to.
    blocks: residual blocks before and after the interpolation.
    """

    channels: int = 1
    hidden: int = 64
    latent_channels: int = 4
    latent_length: int = 16
    blocks: int = 2
    fourier_periods: int = 0


def fourier_features(length: int, max_period: int, device=None, dtype=None) -> Tensor:
    """``(1, 2 * (max_period - 1), length)``: ``sin`` and ``cos`` of ``2 pi t / p`` at the absolute step ``t``
    for every integer period ``p`` in ``2 .. max_period`` (seasonality of discrete series is in whole steps).
    Given to the VAE beside its features, they let a smooth latent say "a cycle of period p with this
    amplitude and phase" (slowly varying coefficients of these carriers) at any length, which an
    interpolated latent shorter than the series cannot hold by itself."""
    t = torch.arange(length, device=device, dtype=torch.float32)
    p = torch.arange(2, max_period + 1, device=device, dtype=torch.float32)
    angle = 2 * math.pi * t[None] / p[:, None]
    return torch.cat([angle.sin(), angle.cos()])[None].to(dtype or torch.float32)


class _ResBlock(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.norm1, self.norm2 = nn.GroupNorm(8, width), nn.GroupNorm(8, width)
        self.conv1 = nn.Conv1d(width, width, 3, padding=1, padding_mode="replicate")
        self.conv2 = nn.Conv1d(width, width, 3, padding=1, padding_mode="replicate")

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv2(F.silu(self.norm2(self.conv1(F.silu(self.norm1(x))))))


def resample(x: Tensor, length: int) -> Tensor:
    """``(B, D, L) -> (B, D, length)``: average pooling when shrinking (no aliasing), linear interpolation
    when growing."""
    if x.shape[-1] == length:
        return x
    if x.shape[-1] > length:
        return F.adaptive_avg_pool1d(x, length)
    return F.interpolate(x, size=length, mode="linear", align_corners=False)


class SeriesVAE(PretrainedModel):
    """Length-adaptive VAE: ``encode(x (B, C, L)) -> (mu, logvar)`` each ``(B, zc, Lz)``;
    ``decode(z, length) -> (B, C, length)``. ``latent_scale`` (a buffer, fitted after training) maps
    ``mu`` to unit variance for the diffusion model: ``z = mu * latent_scale``."""

    config_class = SeriesVAEConfig
    config: SeriesVAEConfig

    def __init__(self, config: SeriesVAEConfig) -> None:
        super().__init__(config)
        h = config.hidden
        if config.fourier_periods == 1 or config.fourier_periods < 0:
            raise ValueError(f"fourier_periods: expected 0 (none) or >= 2, got {config.fourier_periods}")
        self.carriers = nf = 2 * (config.fourier_periods - 1) if config.fourier_periods else 0
        # the encoder also sees the series demodulated by every carrier (x sin, x cos): pooled, these are
        # local Fourier coefficients; the decoder adds smooth coefficients times the carriers to its output
        self.dec_fourier = nn.Conv1d(h, config.channels * nf, 1) if nf else None
        if self.dec_fourier is not None:
            nn.init.zeros_(self.dec_fourier.weight)
            nn.init.zeros_(self.dec_fourier.bias)
        self.enc_in = nn.Conv1d(config.channels * (1 + nf), h, 3, padding=1, padding_mode="replicate")
        self.enc_pre = nn.Sequential(*[_ResBlock(h) for _ in range(config.blocks)])
        self.enc_post = nn.Sequential(*[_ResBlock(h) for _ in range(config.blocks)])
        self.enc_out = nn.Conv1d(h, 2 * config.latent_channels, 1)
        self.dec_in = nn.Conv1d(config.latent_channels, h, 3, padding=1, padding_mode="replicate")
        self.dec_pre = nn.Sequential(*[_ResBlock(h) for _ in range(config.blocks)])
        self.dec_post = nn.Sequential(*[_ResBlock(h) for _ in range(config.blocks)])
        self.dec_out = nn.Conv1d(h, config.channels, 3, padding=1, padding_mode="replicate")
        self.register_buffer("latent_scale", torch.ones(()))

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``x`` ``(B, C, L)`` -> ``(mu, logvar)``, each ``(B, zc, Lz)``."""
        if x.ndim != 3 or x.shape[1] != self.config.channels:
            raise ValueError(f"x: expected (B, {self.config.channels}, L), got {tuple(x.shape)}")
        if self.carriers:
            carriers = self._carriers(x.shape[-1], x)  # (1, nf, L)
            x = torch.cat([x, (x[:, :, None] * carriers[:, None]).flatten(1, 2)], 1)
        h = self.enc_pre(self.enc_in(x))
        h = self.enc_post(resample(h, self.config.latent_length))
        mu, logvar = self.enc_out(h).chunk(2, dim=1)
        return mu, logvar.clamp(-20.0, 10.0)

    def decode(self, z: Tensor, length: int) -> Tensor:
        """``z`` ``(B, zc, Lz)`` -> ``(B, C, length)``."""
        h = self.dec_post(resample(self.dec_pre(self.dec_in(z)), int(length)))
        out = self.dec_out(h)
        if self.dec_fourier is not None:
            coef = self.dec_fourier(h).unflatten(1, (self.config.channels, self.carriers))
            out = out + (coef * self._carriers(int(length), h)[:, None]).sum(2)
        return out

    def _carriers(self, length: int, like: Tensor) -> Tensor:
        return fourier_features(length, self.config.fourier_periods, like.device, like.dtype)

    def to_latent(self, x: Tensor) -> Tensor:
        """The diffusion model's latent of ``x``: the posterior mean times ``latent_scale``."""
        return self.encode(x)[0] * self.latent_scale

    def from_latent(self, z: Tensor, length: int) -> Tensor:
        """Series ``(B, C, length)`` of diffusion latents ``z``."""
        return self.decode(z / self.latent_scale, length)


def vae_loss(vae: SeriesVAE, batch: dict, kl_weight: float, generator: torch.Generator | None = None):
    """Negative ELBO per element: ``||x - D(z)||^2 + kl_weight * KL(q(z|x) || N(0, I))``, ``z`` drawn with the
    reparameterisation trick (Kingma & Welling 2014, Eq. 7 and 10)."""
    x = batch["x"]
    mu, logvar = vae.encode(x)
    z = mu + torch.exp(0.5 * logvar) * torch.randn(
        mu.shape, device=mu.device, dtype=mu.dtype, generator=generator
    )
    recon = F.mse_loss(vae.decode(z, x.shape[-1]), x)
    kl = 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).mean()
    return recon + kl_weight * kl, {"recon": recon.detach(), "kl": kl.detach()}


@dataclass
class VAEObjective:
    """The Trainer's objective for :class:`SeriesVAE`: :func:`vae_loss` with ``kl_weight``."""

    kl_weight: float = 1e-3

    def __call__(self, model: nn.Module, batch: dict, generator: torch.Generator | None = None):
        return vae_loss(model, batch, self.kl_weight, generator)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------------------------- text


def tokenize_words(text: str) -> list[str]:
    """Lower-case words and numbers of ``text``."""
    return re.findall(r"[a-z]+|\d+", text.lower())


@dataclass
class CaptionEncoderConfig:
    """Attributes:
    vocabulary: the words (index 0 is padding, 1 unknown).
    width: token width ``D``.
    layers: transformer layers.
    heads: attention heads.
    max_tokens: captions are cut to this many tokens.
    """

    vocabulary: list[str] = field(default_factory=lambda: [PAD, UNK])
    width: int = 64
    layers: int = 2
    heads: int = 4
    max_tokens: int = 32


class CaptionEncoder(PretrainedModel):
    """Words -> ``(tokens (B, M, D), mask (B, M) bool, pooled (B, D))``; an empty caption (all padding) gives
    a fully masked context and a zero pooled vector: the "no caption" of classifier-free guidance."""

    config_class = CaptionEncoderConfig
    config: CaptionEncoderConfig

    def __init__(self, config: CaptionEncoderConfig) -> None:
        super().__init__(config)
        d = config.width
        self.index = {w: i for i, w in enumerate(config.vocabulary)}
        self.embed = nn.Embedding(len(config.vocabulary), d, padding_idx=0)
        self.position = nn.Embedding(config.max_tokens, d)
        layer = nn.TransformerEncoderLayer(
            d, config.heads, 4 * d, dropout=0.0, batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, config.layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d)

    @classmethod
    def from_captions(cls, captions: Sequence[str], **kw) -> CaptionEncoder:
        """A fresh encoder whose vocabulary is every word of ``captions``."""
        words = sorted({w for c in captions for w in tokenize_words(c)})
        return cls(CaptionEncoderConfig(vocabulary=[PAD, UNK, *words], **kw))

    def tokenize(self, captions: Sequence[str]) -> Tensor:
        """``(B, max_tokens)`` int64 token ids (0 = padding; unknown words map to 1)."""
        m = self.config.max_tokens
        ids = torch.zeros(len(captions), m, dtype=torch.long)
        for i, c in enumerate(captions):
            row = [self.index.get(w, 1) for w in tokenize_words(c)][:m]
            ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        return ids

    def forward(self, input_ids: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Token ids ``(B, M)`` (0 is padding) -> ``(tokens (B, M, D), mask (B, M), pooled (B, D))``."""
        mask = input_ids != 0
        h = self.embed(input_ids) + self.position.weight[: input_ids.shape[1]]
        any_token = mask.any(1, keepdim=True)
        # rows without a token attend to nothing; give them their first position so softmax stays finite
        key_mask = ~(mask | ~any_token & (torch.arange(mask.shape[1], device=mask.device) == 0))
        h = self.norm(self.encoder(h, src_key_padding_mask=key_mask))
        h = h * mask[..., None]
        pooled = h.sum(1) / mask.sum(1, keepdim=True).clamp_min(1)
        return h, mask, pooled


# ----------------------------------------------------------------------------------------------- generators


def latent_dit_config(
    latent_channels: int, latent_length: int, text_width: int, hidden: int, depth: int, heads: int
) -> MMDiTConfig:
    """The MMDiT over latents ``(B, zc, Lz)``: one token per latent position, caption tokens of
    ``text_width`` in joint attention, and the pooled caption (plus the length embedding) in adaLN."""
    return MMDiTConfig(
        input_size=(latent_length,),
        patch_size=1,
        in_channels=latent_channels,
        hidden_size=hidden,
        depth=depth,
        num_heads=heads,
        pooled_dim=text_width,
        context_dim=text_width,
        qk_norm=True,
    )


def prior_config(
    channels: int,
    length: int,
    patch: int,
    hidden: int,
    depth: int,
    heads: int,
    conditioning: ObservedConditioning | None = None,
) -> DiTConfig:
    """The data-space DiT of :class:`ObservedPrior` over ``(B, inputs * C, L)`` (the noisy residual, the base,
    the mask and the features of ``conditioning``, :func:`~diff_timeseries.observed.observed_inputs`) in patches
    of ``patch`` steps (any ``L`` divisible by ``patch`` at run time; the sin-cos positions follow the length)."""
    inputs = (conditioning or ObservedConditioning()).inputs
    return DiTConfig(
        input_size=(length,),
        patch_size=patch,
        in_channels=inputs * channels,
        hidden_size=hidden,
        depth=depth,
        num_heads=heads,
        num_classes=0,
        qk_norm=True,
        fused_kernels=False,
    )


@dataclass
class ObservedPriorConfig:
    """Attributes:
    channels: series channels ``C``.
    backbone: the DiT over ``(B, inputs * C, L)`` (:func:`prior_config`).
    conditioning: the base and channels read from the observed part
        (:class:`~diff_timeseries.observed.ObservedConditioning`).
    """

    channels: int = 1
    backbone: DiTConfig = field(default_factory=DiTConfig)
    conditioning: ObservedConditioning = field(default_factory=ObservedConditioning)


class ObservedPrior(PretrainedModel):
    """The forecasting / imputation model: flow matching over a window ``(B, C, L)`` conditioned on its observed
    part (CSDI's conditional model, Tashiro et al. 2021, Sec. 4, on a DiT), generating the residual of the
    series from a base computed from the observed part (:meth:`anchor`: linear interpolation inside gaps, the
    seasonal naive forecast with drift at the detected period beyond the observed span).
    ``net(r_t, t, observed=(B, C, L), mask=(B, C, L)) -> velocity (B, C, L)``: the DiT sees the noisy residual
    where unobserved (zero where observed), the base, the mask and the conditioning channels of
    :func:`~diff_timeseries.observed.observed_inputs`; its first ``C`` output channels are the velocity.
    Training (:class:`ObservedObjective`) scores only unobserved entries, so the observed ones are never
    generated: they are given. A sample is ``base + residual``."""

    config_class = ObservedPriorConfig
    config: ObservedPriorConfig

    def __init__(self, config: ObservedPriorConfig) -> None:
        super().__init__(config)
        expected = config.conditioning.inputs * config.channels
        if config.backbone.in_channels != expected:
            raise ValueError(
                f"backbone.in_channels: expected {config.conditioning.inputs} inputs * channels = {expected}, "
                f"got {config.backbone.in_channels}"
            )
        self.backbone = DiT(config.backbone)

    def anchor(self, observed: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """What the generated residual ``r`` is measured from, from the observed entries alone: the base
        ``(B, C, L)`` and the scale ``(B, C, L)``; a sample is ``base + scale * r``."""
        read = observed_inputs(observed, mask, self.config.conditioning)
        return read.base, read.scale

    def forward(
        self, x: Tensor, t: Tensor, observed: Tensor, mask: Tensor, channels: Tensor | None = None
    ) -> Tensor:
        """The velocity ``(B, C, L)`` for the window ``x`` at ``t: (B,)``, given the ``observed`` values and
        their ``mask`` (1 where observed), both ``(B, C, L)``. ``channels``: the conditioning channels of
        :func:`~diff_timeseries.observed.observed_inputs` for these ``observed`` and ``mask`` when the caller
        already has them (they depend on the observed part only, so the objective and the sampler compute them
        once per batch instead of once per call; None: computed here)."""
        m = mask.to(x.dtype)
        if channels is None:
            channels = observed_inputs(observed.to(x.dtype), m, self.config.conditioning).channels
        inputs = torch.cat([x * (1 - m), channels.to(x.dtype)], 1)
        return self.backbone(inputs, t)[:, : self.config.channels]


def draw_masks(shape: tuple[int, ...], generator: torch.Generator | None = None) -> Tensor:
    """Training masks ``(B, C, L)`` (1 = observed) of the tasks the model serves, one task per row: forecasting
    (the last ``h`` steps hidden, ``h`` up to ``L / 2``, sometimes a hidden oldest part too, as when the history
    is shorter than the window), random missing values (rate 10-70%, per channel) and a missing block
    (up to ``L / 2`` steps) with a few random gaps. At least two points per row and channel stay observed."""
    b, c, n = shape
    dev = generator.device if generator is not None else torch.device("cpu")
    u = torch.rand(b, 6, generator=generator, device=dev)
    steps = torch.arange(n, device=dev)[None]
    horizon = (1 + u[:, 1] * (n // 2)).long()[:, None]
    prefix = torch.where(u[:, 2] < 0.2, (u[:, 3] * n / 4).long(), 0)[:, None]
    forecast = ((steps < n - horizon) & (steps >= prefix)).float()[:, None].expand(b, c, n)
    rate = (0.1 + 0.6 * u[:, 4])[:, None, None]
    scattered = (torch.rand(b, c, n, generator=generator, device=dev) >= rate).float()
    start = (u[:, 3] * n).long()[:, None]
    block = ~((steps >= start) & (steps < start + horizon))
    sparse = (torch.rand(b, c, n, generator=generator, device=dev) >= 0.1).float()
    blocked = block.float()[:, None] * sparse
    task = u[:, 0][:, None, None]
    mask = torch.where(task < 0.5, forecast, torch.where(task < 0.8, scattered, blocked))
    few = mask.sum(-1, keepdim=True) < 2
    mask[..., :2] = torch.where(few, 1.0, mask[..., :2])
    return mask


@dataclass
class ObservedObjective:
    """The Trainer's objective for :class:`ObservedPrior`: conditional flow matching (rectified-flow path,
    velocity ``eps - r0``, ``t ~ U(0, 1)``) of the residual ``r0 = (x0 - base) / scale`` on the unobserved entries of
    windows masked by :func:`draw_masks`, each window put in the units of its observed part
    (:func:`~diff_timeseries.observed.observed_statistics`), as at inference. ``conditioning`` is the prior's
    (it fixes the base). The base and the network's conditioning channels are read from the observed part once
    per batch (:func:`~diff_timeseries.observed.observed_inputs`) and handed to the network."""

    conditioning: ObservedConditioning = field(default_factory=ObservedConditioning)

    def __call__(self, model: nn.Module, batch: dict, generator: torch.Generator | None = None):
        x = batch["x"]
        mask = draw_masks(tuple(x.shape), generator).to(x.device, x.dtype)
        mean, std = observed_statistics(x, mask)
        x0 = (x - mean) / std
        read = observed_inputs(x0 * mask, mask, self.conditioning)
        r0 = (x0 - read.base) / read.scale * (1 - mask)  # the residual to generate
        noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        t = torch.rand(x.shape[0], generator=generator, device=x.device, dtype=x.dtype)
        r_t = (1 - t[:, None, None]) * r0 + t[:, None, None] * noise
        out = model(r_t, t, observed=x0 * mask, mask=mask, channels=read.channels)
        hidden = 1 - mask
        loss = (((out - (noise - r0)) ** 2) * hidden).sum() / hidden.sum().clamp_min(1.0)
        return loss, {}


class LengthEmbedder(nn.Module):
    """``length`` ``(B,)`` (steps) -> ``(B, D)``: the time embedder on ``log(L) / log(4096)``; its last layer
    starts at zero."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.embedder = TimestepEmbedder(width)
        nn.init.zeros_(self.embedder.mlp[2].weight)
        nn.init.zeros_(self.embedder.mlp[2].bias)

    def forward(self, length: Tensor) -> Tensor:
        """``length: (B,)`` in steps -> ``(B, D)``."""
        return self.embedder(torch.log(length.float().clamp_min(1.0)) / math.log(MAX_LENGTH_EMBED))


@dataclass
class TextToSeriesConfig:
    """Attributes:
    backbone: the MMDiT over latents (:func:`latent_dit_config`).
    text: the caption encoder.
    """

    backbone: MMDiTConfig = field(default_factory=MMDiTConfig)
    text: CaptionEncoderConfig = field(default_factory=CaptionEncoderConfig)


class TextToSeries(PretrainedModel):
    """``net(z_t (B, zc, Lz), t (B,), input_ids (B, M), length (B,)) -> velocity (B, zc, Lz)``: the MMDiT
    with the caption's tokens as context and ``pooled caption + length embedding`` added to its adaLN
    conditioning (SD3's ``t + MLP(pooled)``)."""

    config_class = TextToSeriesConfig
    config: TextToSeriesConfig

    def __init__(self, config: TextToSeriesConfig) -> None:
        super().__init__(config)
        self.backbone = MMDiT(config.backbone)
        self.text_encoder = CaptionEncoder(config.text)
        self.length_embedder = LengthEmbedder(config.text.width)

    def forward(self, x: Tensor, t: Tensor, input_ids: Tensor, length: Tensor) -> Tensor:
        """The velocity ``(B, zc, Lz)`` for latents ``x`` at ``t: (B,)``, conditioned on the caption
        ``input_ids: (B, M)`` and the series ``length: (B,)``."""
        tokens, mask, pooled = self.text_encoder(input_ids)
        pooled = pooled + self.length_embedder(length).to(pooled.dtype)
        return self.backbone(x, t, context=tokens, context_mask=mask, pooled=pooled)
