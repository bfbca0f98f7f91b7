"""An Oobleck-style 1D convolutional VAE (the autoencoder of Stable Audio Open, stable-audio-tools'
``OobleckEncoder`` / ``OobleckDecoder``; its blocks follow DAC, Kumar et al. 2023, Sec. 3).

Encoder: ``Conv1d(k=7)``, then per block three residual units (dilations 1, 3, 9) with Snake activations and a
strided ``Conv1d(k=2s, stride=s)`` to the next width; Snake, ``Conv1d(k=3)`` to ``2 * latent_dim`` channels
(mean and pre-softplus scale). The decoder mirrors it; it upsamples by nearest-neighbour repetition and a
``Conv1d(k=2s+1)`` (``upsample="nearest"``, the default: free of the checkerboard tones of transposed
convolutions, Odena et al. 2016) or, as Oobleck, with ``ConvTranspose1d(k=2s, stride=s)``. Snake (Ziyin et al.
2020, Eq. 3; DAC) is ``x + sin^2(alpha x) / alpha`` with a learned ``alpha`` per channel, a periodic inductive
bias for audio; it runs as one function with its gradient written out (:func:`snake`), compiled into one kernel
each way on CUDA, because over the full-rate activations the unfused version was most of a training step.

Shapes: audio ``(B, channels, T)`` with ``T`` a multiple of :attr:`AudioVAE.hop` (the product of the strides)
-> latents ``(B, latent_dim, T / hop)``. The compression ratio is ``channels * hop / latent_dim`` numbers in,
one number out.

Training (:class:`VAEObjective`) minimises ``l1 * |x - D(z)|_1 + stft * MRSTFT(x, D(z)) + complex *
CSTFT(x, D(z)) + kl * KL(q(z|x) || N(0, I))`` with ``z`` drawn by reparameterisation. ``MRSTFT`` compares
magnitudes only, so alone it leaves the phase free (and SI-SDR, which is phase-sensitive, at chance);
``CSTFT`` (:func:`complex_stft_loss`) compares the complex spectra. The posterior's standard deviation is
``softplus(s) + 1e-4`` (as stable-audio-tools' ``VAEBottleneck``), which cannot overflow the way
``exp(logvar)`` can; ``s`` starts at ``posterior_init`` (-5: std 0.007), since at std 0.69 the untrained
encoder's small means are drowned in the sampling noise and the decoder first learns to ignore its input.
Together with the Trainer's gradient clipping and its non-finite-loss stop (it names the step) this keeps
training finite. Diffusion runs on ``(mean - shift) * scale``, with the two factors fitted on data so the
latents have zero mean and unit variance (:meth:`AudioVAE.fit_scaling`).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from diffcore.pretrained import PretrainedModel
from diffcore.training.objectives import split_batch
from torch import Tensor, nn

from diff_audio.config import AudioVAEConfig

__all__ = [
    "AudioVAE",
    "AudioVAEModelConfig",
    "Snake",
    "VAEObjective",
    "complex_stft_loss",
    "kl_divergence",
    "multi_resolution_stft_loss",
    "snake",
]


def _wide(x: Tensor) -> Tensor:
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def _snake_forward(x: Tensor, alpha: Tensor) -> Tensor:
    xf = _wide(x)
    return (xf + torch.sin(alpha * xf).square() / (alpha + 1e-9)).to(x.dtype)


def _snake_backward(g: Tensor, x: Tensor, alpha: Tensor) -> tuple[Tensor, Tensor]:
    xf, gf = _wide(x), _wide(g)
    s = torch.sin(alpha * xf)
    sin_2u = 2.0 * s * torch.cos(alpha * xf)
    grad_x = gf * (1.0 + sin_2u)  # d/dx [sin^2(a x) / a] = sin(2 a x)
    a = alpha + 1e-9  # d/da [sin^2(a x) / a] = x sin(2 a x) / a - sin^2(a x) / a^2
    grad_a = (gf * (xf * sin_2u / a - s.square() / (a * a))).sum(dim=(0, 2), keepdim=True)
    return grad_x.to(g.dtype), grad_a


_KERNELS: dict[str, tuple[Any, Any]] = {}


def _kernels(device: torch.device) -> tuple[Any, Any]:
    """Eager on the CPU; on CUDA the two elementwise functions compiled once by inductor, each then one kernel
    (autograd's Snake is about five memory-bound kernels forward and ten backward over the largest activations
    of the network, which made them most of a training step). If compiling fails the eager functions are used."""
    if device.type != "cuda":
        return _snake_forward, _snake_backward
    if "cuda" not in _KERNELS:
        fwd, bwd = torch.compile(_snake_forward, dynamic=True), torch.compile(_snake_backward, dynamic=True)
        try:
            x, alpha = torch.randn(2, 3, 64, device=device), torch.ones(1, 3, 1, device=device)
            fwd(x, alpha), bwd(x, x, alpha)
            _KERNELS["cuda"] = (fwd, bwd)
        except Exception as error:  # no working compiler: eager is correct, only slower
            warnings.warn(f"Snake: torch.compile failed ({error}); using the eager kernels", stacklevel=2)
            _KERNELS["cuda"] = (_snake_forward, _snake_backward)
    return _KERNELS["cuda"]


class _SnakeFunction(torch.autograd.Function):
    """Snake with its gradient written out: saves only ``x`` and ``alpha`` (autograd's version keeps four
    intermediates of ``x``'s size) and returns ``x``'s dtype (bf16 stays bf16 under autocast; the arithmetic is
    float32)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, alpha: Tensor) -> Tensor:
        alpha = _wide(alpha)
        ctx.save_for_backward(x, alpha)
        return _kernels(x.device)[0](x, alpha)

    @staticmethod
    def backward(ctx: Any, g: Tensor) -> tuple[Tensor, Tensor]:
        x, alpha = ctx.saved_tensors
        return _kernels(x.device)[1](g, x, alpha)


def snake(x: Tensor, alpha: Tensor) -> Tensor:
    """``x + sin^2(alpha x) / alpha`` on ``x: (B, C, T)`` with ``alpha: (1, C, 1)``, through a fused kernel with
    an analytic gradient (:class:`Snake` uses it)."""
    return _SnakeFunction.apply(x, alpha)


class Snake(nn.Module):
    """``x + sin^2(alpha x) / alpha`` per channel (``alpha`` stored as its log, starts at 1): ``(B, C, T)``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.log_alpha = nn.Parameter(torch.zeros(1, channels, 1))

    def forward(self, x: Tensor) -> Tensor:
        """``x + sin^2(alpha x) / alpha`` on ``x: (B, C, T)``."""
        return snake(x, self.log_alpha.exp())


class ResidualUnit(nn.Module):
    """Snake, dilated ``Conv1d(k=7)``, Snake, ``Conv1d(k=1)``, plus the input (length preserved)."""

    def __init__(self, channels: int, dilation: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            Snake(channels),
            nn.Conv1d(channels, channels, 7, dilation=dilation, padding=3 * dilation),
            Snake(channels),
            nn.Conv1d(channels, channels, 1),
        )

    def forward(self, x: Tensor) -> Tensor:
        """``x + body(x)`` on ``x: (B, C, T)`` (length preserved)."""
        return x + self.body(x)


def space_to_channel(x: Tensor, s: int) -> Tensor:
    """``(B, C, T) -> (B, C * s, T / s)``: channel ``c * s + j`` holds samples ``j, j + s, ...`` of channel ``c``."""
    b, c, t = x.shape
    return x.reshape(b, c, t // s, s).transpose(2, 3).reshape(b, c * s, t // s)


def channel_to_space(x: Tensor, s: int) -> Tensor:
    """The inverse of :func:`space_to_channel`: ``(B, C * s, L) -> (B, C, L * s)``."""
    b, cs, n = x.shape
    return x.reshape(b, cs // s, s, n).transpose(2, 3).reshape(b, cs // s, n * s)


def match_channels(x: Tensor, channels: int) -> Tensor:
    """``(B, C, T) -> (B, channels, T)`` without parameters (DC-AE's shortcut, Chen et al. 2025, Sec. 3.2): the
    means of ``C / channels`` consecutive channels when ``C >= channels``, else every channel repeated
    ``channels / C`` times. One count must divide the other."""
    b, c, t = x.shape
    if c >= channels:
        if c % channels:
            raise ValueError(f"channels: {c} input channels cannot be averaged into {channels} groups")
        return x.reshape(b, channels, c // channels, t).mean(2)
    if channels % c:
        raise ValueError(f"channels: {c} input channels cannot be repeated into {channels}")
    return x.repeat_interleave(channels // c, dim=1)


class _Shortcut(nn.Module):
    """``layer(x) + shortcut(x)``: the residual autoencoding of DC-AE (Chen et al. 2025, "Deep Compression
    Autoencoder", Sec. 3.2) around a layer that changes the rate by ``stride`` (``down``: space-to-channel then
    channel averaging; up: channel repetition then channel-to-space) and its width to ``channels``. The
    shortcut has no parameters and carries the signal through every rate change from the first step, so the
    layers learn a residual; without it a small Oobleck VAE needs hundreds of steps before its output
    follows its input."""

    def __init__(self, layer: nn.Module, channels: int, stride: int = 1, down: bool = True) -> None:
        super().__init__()
        self.layer, self.channels, self.stride, self.down = layer, channels, stride, down

    def shortcut(self, x: Tensor) -> Tensor:
        """The parameter-free path: ``(B, C, T) -> (B, channels, T / stride)`` (down) or ``T * stride`` (up)."""
        if self.down:
            return match_channels(space_to_channel(x, self.stride), self.channels)
        return channel_to_space(match_channels(x, self.channels * self.stride), self.stride)

    def forward(self, x: Tensor) -> Tensor:
        """``layer(x) + shortcut(x)``."""
        return self.layer(x) + self.shortcut(x)


def _down(c_in: int, c_out: int, stride: int, shortcut: bool = False) -> nn.Module:
    down: nn.Module = nn.Sequential(
        Snake(c_in), nn.Conv1d(c_in, c_out, 2 * stride, stride=stride, padding=math.ceil(stride / 2))
    )
    if shortcut:
        down = _Shortcut(down, c_out, stride)
    return nn.Sequential(ResidualUnit(c_in, 1), ResidualUnit(c_in, 3), ResidualUnit(c_in, 9), down)


def _weight_norm(module: nn.Module) -> nn.Module:
    """Weight normalisation (Salimans & Kingma 2016) on every convolution, as Oobleck's ``WNConv1d``."""
    for child in list(module.modules()):
        if isinstance(child, (nn.Conv1d, nn.ConvTranspose1d)):
            torch.nn.utils.parametrizations.weight_norm(child)
    return module


def _zero_output(module: nn.Module) -> None:
    """Zero the last convolution of ``module`` (its weight-norm gain where weight-normalised, and its bias), so a
    residual branch starts at 0 (Goyal et al. 2017, Sec. 5.1; Fixup)."""
    last = [m for m in module.modules() if isinstance(m, (nn.Conv1d, nn.ConvTranspose1d))][-1]
    with torch.no_grad():
        if hasattr(last, "parametrizations"):
            last.parametrizations.weight.original0.zero_()
        else:
            last.weight.zero_()
        if last.bias is not None:
            last.bias.zero_()


class _Upsample(nn.Module):
    """Nearest-neighbour upsampling by ``stride`` then ``Conv1d(k=2 stride + 1)``: every output sample gets the
    same number of kernel taps, so there is no checkerboard pattern (Odena et al. 2016), which a transposed
    convolution with ``k = 2 stride`` leaves as stationary tones at multiples of the frame rate."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.conv = nn.Conv1d(c_in, c_out, 2 * stride + 1, padding=stride)

    def forward(self, x: Tensor) -> Tensor:
        """``(B, c_in, L) -> (B, c_out, L * stride)``."""
        return self.conv(x.repeat_interleave(self.stride, dim=-1) if self.stride > 1 else x)


def _check_shortcut_widths(widths: list[int], strides: tuple[int, ...], latent: int, audio: int) -> None:
    """Raise unless every shortcut can average or repeat its channels (one count divides the other)."""
    pairs = [(audio, widths[0]), (widths[-1], latent)]
    pairs += [(widths[i] * s, widths[i + 1]) for i, s in enumerate(strides)]
    bad = [(a, b) for a, b in pairs if a % b and b % a]
    if bad:
        raise ValueError(
            f"shortcut: channel counts {bad} do not divide each other (widths {widths}, strides {strides}, "
            f"latent_dim {latent}); change channels / channel_mults / latent_dim or set shortcut=False"
        )


class _LatentHead(nn.Module):
    """The encoder's last layer, ``(B, C, L) -> (B, 2 * latent_dim, L)`` (mean, pre-softplus scale); with
    ``shortcut`` the mean also gets the channel means of its input (:func:`match_channels`)."""

    def __init__(self, layer: nn.Module, latent_dim: int, shortcut: bool) -> None:
        super().__init__()
        self.layer, self.latent_dim, self.shortcut = layer, latent_dim, shortcut

    def forward(self, x: Tensor) -> Tensor:
        """``(B, C, L) -> (B, 2 * latent_dim, L)``."""
        out = self.layer(x)
        if not self.shortcut:
            return out
        mean, scale = out.chunk(2, dim=1)
        return torch.cat([mean + match_channels(x, self.latent_dim), scale], dim=1)


def _up(c_in: int, c_out: int, stride: int, mode: str, shortcut: bool = False) -> nn.Module:
    if mode == "transposed":
        up: nn.Module = nn.ConvTranspose1d(c_in, c_out, 2 * stride, stride=stride, padding=math.ceil(stride / 2),
                                           output_padding=stride % 2)  # fmt: skip
    else:
        up = _Upsample(c_in, c_out, stride)
    up = nn.Sequential(Snake(c_in), up)
    if shortcut:
        up = _Shortcut(up, c_out, stride, down=False)
    return nn.Sequential(up, ResidualUnit(c_out, 1), ResidualUnit(c_out, 3), ResidualUnit(c_out, 9))


@dataclass
class AudioVAEModelConfig(AudioVAEConfig):
    """:class:`~diff_audio.config.AudioVAEConfig` plus the audio's channel count and sample rate.

    Attributes:
        audio_channels: channels of the audio (1 mono, 2 stereo).
        sample_rate: the audio's sample rate (recorded; the network itself is rate-agnostic).
    """

    audio_channels: int = 1
    sample_rate: int = 16000


class AudioVAE(PretrainedModel):
    """Encoder / decoder with the latent normalisation as buffers (``latent_shift``, ``latent_scale``)."""

    config_class = AudioVAEModelConfig
    config: AudioVAEModelConfig
    latent_shift: Tensor
    latent_scale: Tensor

    def __init__(self, config: AudioVAEModelConfig) -> None:
        super().__init__(config)
        widths = [config.channels] + [config.channels * m for m in config.channel_mults]
        sc, latent = config.shortcut, config.latent_dim
        if sc:
            _check_shortcut_widths(widths, config.strides, latent, config.audio_channels)

        def wrap(layer: nn.Module, channels: int) -> nn.Module:
            return _Shortcut(layer, channels) if sc else layer

        head = nn.Conv1d(widths[-1], 2 * latent, 3, padding=1)
        enc: list[nn.Module] = [wrap(nn.Conv1d(config.audio_channels, widths[0], 7, padding=3), widths[0])]
        enc += [_down(widths[i], widths[i + 1], s, sc) for i, s in enumerate(config.strides)]
        enc += [_LatentHead(nn.Sequential(Snake(widths[-1]), head), latent, sc)]
        self.encoder = nn.Sequential(*enc)
        with torch.no_grad():  # the posterior's starting width (see the module doc)
            head.bias[latent:].fill_(config.posterior_init)
        dec: list[nn.Module] = [wrap(nn.Conv1d(latent, widths[-1], 7, padding=3), widths[-1])]
        dec += [
            _up(widths[i + 1], widths[i], s, config.upsample, sc)
            for i, s in reversed(list(enumerate(config.strides)))
        ]
        out = nn.Conv1d(widths[0], config.audio_channels, 7, padding=3, bias=False)
        dec += [wrap(nn.Sequential(Snake(widths[0]), out), config.audio_channels)]
        self.decoder = nn.Sequential(*dec)
        if config.weight_norm:
            _weight_norm(self)
        if config.zero_init:  # every residual branch starts at 0; with the shortcuts the latent's too
            for module in self.modules():
                if isinstance(module, (ResidualUnit, _Shortcut)) or (sc and isinstance(module, _LatentHead)):
                    _zero_output(module.body if isinstance(module, ResidualUnit) else module.layer)
            with torch.no_grad():
                head.bias[latent:].fill_(config.posterior_init)
        self.register_buffer("latent_shift", torch.zeros(()))
        self.register_buffer("latent_scale", torch.ones(()))

    @property
    def hop(self) -> int:
        """Audio samples per latent frame (the product of the strides)."""
        return math.prod(self.config.strides)

    @property
    def compression(self) -> float:
        """Numbers in per number out: ``audio_channels * hop / latent_dim``."""
        return self.config.audio_channels * self.hop / self.config.latent_dim

    def _check(self, audio: Tensor) -> None:
        c = self.config.audio_channels
        if audio.ndim != 3 or audio.shape[1] != c:
            raise ValueError(f"audio: expected (B, {c}, samples), got {tuple(audio.shape)}")
        if audio.shape[-1] % self.hop:
            raise ValueError(
                f"audio: length {audio.shape[-1]} must be a multiple of the VAE's hop {self.hop} samples"
            )

    def posterior(self, audio: Tensor) -> tuple[Tensor, Tensor]:
        """``(mean, std)`` of ``q(z | x)``, each ``(B, latent_dim, T / hop)``."""
        self._check(audio)
        mean, scale = self.encoder(audio).chunk(2, dim=1)
        return mean, F.softplus(scale) + 1e-4

    def decode_raw(self, z: Tensor) -> Tensor:
        """Unnormalised latents ``(B, latent_dim, L)`` -> audio ``(B, channels, L * hop)`` (not clamped)."""
        return self.decoder(z)

    def forward(
        self, audio: Tensor, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Reconstruction through a reparameterised draw: ``(reconstruction, mean, std)``."""
        mean, std = self.posterior(audio)
        noise = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        return self.decode_raw(mean + std * noise), mean, std

    @torch.no_grad()
    def encode(self, audio: Tensor) -> Tensor:
        """Audio ``(B, channels, T)`` -> normalised latents ``(B, latent_dim, T / hop)`` (the posterior mean)."""
        mean, _ = self.posterior(audio)
        return (mean - self.latent_shift) * self.latent_scale

    @torch.no_grad()
    def decode(self, latents: Tensor) -> Tensor:
        """Normalised latents -> audio ``(B, channels, L * hop)`` clamped to ``[-1, 1]``."""
        return self.decode_raw(latents / self.latent_scale + self.latent_shift).clamp(-1.0, 1.0)

    @torch.no_grad()
    def fit_scaling(self, audio: Tensor, batch_size: int = 64) -> tuple[float, float]:
        """Set ``latent_shift`` / ``latent_scale`` so the posterior means of ``audio`` have mean 0 and std 1."""
        means = [
            self.posterior(audio[i : i + batch_size].to(self.latent_scale.device))[0]
            for i in range(0, len(audio), batch_size)
        ]
        z = torch.cat(means).double()
        shift, std = z.mean(), z.std()
        self.latent_shift.fill_(float(shift))
        self.latent_scale.fill_(1.0 / max(float(std), 1e-8))
        return float(shift), float(self.latent_scale)


def kl_divergence(mean: Tensor, std: Tensor) -> Tensor:
    """``KL(N(mean, std^2) || N(0, 1))`` averaged over elements (Kingma & Welling 2014, App. B)."""
    return 0.5 * (mean.pow(2) + std.pow(2) - 1.0 - 2.0 * torch.log(std)).mean()


def _stft_pairs(x: Tensor, y: Tensor, fft_sizes: tuple[int, ...]) -> list[tuple[Tensor, Tensor]]:
    """Complex STFTs ``(S_x, S_y)`` of ``(B, C, T)`` signals for every size ``<= T`` (Hann window, hop size / 4),
    computed in float32; raises when every size is longer than ``T``."""
    b, c, t = x.shape
    xs, ys = x.reshape(b * c, t).float(), y.reshape(b * c, t).float()
    pairs = []
    for n_fft in fft_sizes:
        if n_fft > t:
            continue
        window = torch.hann_window(n_fft, device=x.device)
        both = torch.stft(torch.cat([xs, ys]), n_fft, n_fft // 4, window=window, return_complex=True)
        pairs.append((both[: b * c], both[b * c :]))
    if not pairs:
        raise ValueError(f"fft_sizes: every size {fft_sizes} is longer than the audio ({t} samples)")
    return pairs


def _magnitude_loss(sx: Tensor, sy: Tensor, floor: float) -> Tensor:
    ax, ay = sx.abs().clamp_min(floor), sy.abs().clamp_min(floor)
    convergence = torch.linalg.norm(ay - ax) / torch.linalg.norm(ay).clamp_min(1e-5)
    return convergence + (ay.log() - ax.log()).abs().mean()


def _complex_loss(sx: Tensor, sy: Tensor) -> Tensor:
    return (sx - sy).abs().sum() / sy.abs().sum().clamp_min(1e-5)


def multi_resolution_stft_loss(
    x: Tensor, y: Tensor, fft_sizes: tuple[int, ...], floor: float = 1e-5
) -> Tensor:
    """Multi-resolution STFT loss (Yamamoto et al. 2020, Parallel WaveGAN, Eq. 4-6): for each window size, spectral
    convergence ``||S_y - S_x||_F / ||S_y||_F`` plus ``mean |log S_y - log S_x|``, averaged over sizes.
    ``x`` the estimate, ``y`` the reference, ``(B, C, T)``; window sizes longer than ``T`` are skipped. Magnitudes
    are floored at ``floor`` before the log, so differences below it (silence, faint noise) cost nothing.
    Magnitudes only: it does not see the phase."""
    return torch.stack([_magnitude_loss(sx, sy, floor) for sx, sy in _stft_pairs(x, y, fft_sizes)]).mean()


def complex_stft_loss(x: Tensor, y: Tensor, fft_sizes: tuple[int, ...]) -> Tensor:
    """Phase-sensitive multi-resolution STFT loss: ``sum |S_x - S_y| / sum |S_y|`` on the complex spectra (the
    modulus of the complex difference), averaged over window sizes; 0 only when the waveforms match in every
    frame, unlike :func:`multi_resolution_stft_loss`. ``(B, C, T)``; sizes longer than ``T`` are skipped."""
    return torch.stack([_complex_loss(sx, sy) for sx, sy in _stft_pairs(x, y, fft_sizes)]).mean()


@dataclass
class VAEObjective:
    """``objective(vae, batch) -> (loss, logs)`` for the :class:`~diffcore.training.Trainer` (see the module doc).

    ``batch``: audio ``(B, C, T)`` or ``{"x": audio, ...}`` (other keys ignored). The magnitude and the complex
    STFT terms share one STFT of each size. ``crop``: train on a random window of this many samples of each clip
    (a multiple of the VAE's hop; the network is convolutional, so it then runs on any length), as Stable Audio
    trains its autoencoders on short crops: a step costs ``crop / T`` of a whole clip's."""

    l1_weight: float = 1.0
    stft_weight: float = 0.1
    kl_weight: float = 1e-4
    fft_sizes: tuple[int, ...] = (2048, 1024, 512, 256, 128)
    complex_stft_weight: float = 4.0
    crop: int | None = None

    def __post_init__(self) -> None:
        if self.crop is not None and self.crop < 1:
            raise ValueError(f"crop: expected a positive number of samples or None, got {self.crop}")

    def random_crop(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """A window of ``crop`` samples from each clip of ``x: (B, C, T)`` at offsets drawn from ``generator``
        (the whole clip when ``crop`` is None or not shorter)."""
        if self.crop is None or self.crop >= x.shape[-1]:
            return x
        device = generator.device if generator is not None else x.device
        high = x.shape[-1] - self.crop + 1
        starts = torch.randint(0, high, (x.shape[0],), generator=generator, device=device).tolist()
        return torch.stack([clip[:, s : s + self.crop] for clip, s in zip(x, starts)])

    def __call__(
        self, model: nn.Module, batch: Tensor | Mapping[str, Any], generator: torch.Generator | None = None
    ) -> tuple[Tensor, dict[str, Tensor]]:
        x = self.random_crop(split_batch(batch)[0], generator)
        recon, mean, std = model(x, generator=generator)
        recon = recon.float()
        l1 = (recon - x).abs().mean()
        pairs = _stft_pairs(recon, x, self.fft_sizes)
        stft = torch.stack([_magnitude_loss(sx, sy, 1e-5) for sx, sy in pairs]).mean()
        cplx = torch.stack([_complex_loss(sx, sy) for sx, sy in pairs]).mean()
        kl = kl_divergence(mean.float(), std.float())
        loss = (
            self.l1_weight * l1
            + self.stft_weight * stft
            + self.complex_stft_weight * cplx
            + self.kl_weight * kl
        )
        logs = {"l1": l1.detach(), "stft": stft.detach(), "complex_stft": cplx.detach(), "kl": kl.detach()}
        return loss, logs
