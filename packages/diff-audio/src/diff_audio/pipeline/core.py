"""``AudioPipeline``: the VAE and the latent DiT with everything needed to generate and edit audio.

On disk (a :class:`diffcore.pipeline.Pipeline`, written atomically)::

    pipeline.json   class, format, versions; "config": schedule, prediction, sample_rate, channels, clip_seconds
    vae/            the AudioVAE (config.json + model.safetensors, latent normalisation included)
    model/          the AudioDiT (text encoder and vocabulary included)

Audio is ``(B, channels, samples)`` float in ``[-1, 1]``. Diffusion runs on the VAE's normalised latents
``(B, latent_dim, frames)``; ``t = 1`` is noise and ``t = 0`` data. Generation, audio-to-audio (SDEdit),
inpainting and continuation all run diffcore's samplers and editing tools on the pipeline's
:class:`~diffcore.paths.denoiser.Denoiser`, wrapped in classifier-free guidance when ``guidance != 1``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from diffcore.editing import inpainting
from diffcore.guidance.wrappers import ClassifierFreeGuidance
from diffcore.paths.denoiser import Denoiser, DenoiserBase
from diffcore.paths.schedules import get as get_schedule
from diffcore.pipeline import Pipeline
from diffcore.sampling import sample as diffcore_sample
from torch import Tensor

from diff_audio.models.dit import AudioDiT
from diff_audio.models.vae import AudioVAE

__all__ = ["AudioPipeline"]

PREDICTIONS = ("eps", "x0", "v", "velocity", "score")


def _cycle(prompts: str | Sequence[str] | None, n: int) -> list[str]:
    items = [prompts] if isinstance(prompts, str) else list(prompts or [""])
    return (items * -(-n // len(items)))[:n]


def _per_sample(value: float | Sequence[float] | Tensor, n: int, name: str) -> Tensor:
    v = torch.as_tensor(value, dtype=torch.float32).reshape(-1)
    if v.numel() == 1:
        v = v.expand(n)
    if v.numel() != n:
        raise ValueError(f"{name}: expected one value or {n}, got {v.numel()}")
    if not torch.isfinite(v).all() or (v < 0).any():
        raise ValueError(f"{name}: expected finite seconds >= 0, got {v.tolist()}")
    return v.clone()


class AudioPipeline(Pipeline):
    """A trained audio model: waveforms ``(B, channels, samples)`` in ``[-1, 1]`` at ``sample_rate``.

    Args:
        vae: the trained :class:`~diff_audio.models.vae.AudioVAE` (latent normalisation fitted).
        model: the :class:`~diff_audio.models.dit.AudioDiT` on its latents.
        schedule: a registered ``diffcore.paths.schedules`` name (``"rectified-flow"``, ``"vp-cosine"``).
        prediction: what ``model`` predicts (``velocity``, ``v``, ``eps``, ``x0``, ``score``).
        sample_rate: samples per second.
        clip_seconds: length of the training clips (the default window, and the timing range trained on).
        data_info: what the model was trained on (``source``, and for the synthetic set ``kind`` and
            ``instruments``), which :func:`~diff_audio.pipeline.evaluation.evaluate` asks for.
    """

    def __init__(
        self,
        vae: AudioVAE,
        model: AudioDiT,
        schedule: str,
        prediction: str,
        sample_rate: int,
        clip_seconds: float,
        data_info: dict[str, Any] | None = None,
    ) -> None:
        get_schedule(schedule)
        if prediction not in PREDICTIONS:
            raise ValueError(f"prediction: expected one of {PREDICTIONS}, got {prediction!r}")
        if vae.config.latent_dim != model.config.latent_dim:
            raise ValueError(
                f"model: takes {model.config.latent_dim} latent channels, the VAE gives {vae.config.latent_dim}"
            )
        self.vae, self.model = vae, model
        self.schedule, self.prediction = schedule, prediction
        self.sample_rate, self.clip_seconds = int(sample_rate), float(clip_seconds)
        self.data_info = dict(data_info or {})

    # ------------------------------------------------------------------ disk

    def components(self) -> dict[str, Any]:
        return {"vae": self.vae, "model": self.model}

    def pipeline_config(self) -> dict[str, Any]:
        return {
            "schedule": self.schedule,
            "prediction": self.prediction,
            "sample_rate": self.sample_rate,
            "channels": self.channels,
            "clip_seconds": self.clip_seconds,
            "data_info": self.data_info,
        }

    @classmethod
    def from_parts(cls, config: dict[str, Any], components: dict[str, Any]) -> AudioPipeline:
        return cls(
            components["vae"], components["model"], config["schedule"], config["prediction"],
            config["sample_rate"], config["clip_seconds"], config.get("data_info"),
        )  # fmt: skip

    # ------------------------------------------------------------------ shapes

    @property
    def channels(self) -> int:
        return self.vae.config.audio_channels

    @property
    def hop(self) -> int:
        """Audio samples per latent frame."""
        return self.vae.hop

    @property
    def token_samples(self) -> int:
        """Audio samples per DiT token (``hop * patch_size``): generated lengths are multiples of it."""
        return self.vae.hop * self.model.config.patch_size

    def window_samples(self, seconds: float) -> int:
        """``seconds`` rounded up to whole tokens, in samples."""
        if not seconds > 0:
            raise ValueError(f"duration: expected > 0 seconds, got {seconds}")
        return math.ceil(seconds * self.sample_rate / self.token_samples) * self.token_samples

    # ------------------------------------------------------------------ conditions and the denoiser

    def condition(
        self,
        n: int,
        prompts: str | Sequence[str] | None,
        seconds_total: float | Sequence[float] | Tensor,
        seconds_start: float | Sequence[float] | Tensor = 0.0,
    ) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """``(cond, uncond)`` network keyword arguments for ``n`` clips: token ids of the (cycled) prompts and the
        timing; the unconditional branch drops the caption only (the timing stays, as in Stable Audio)."""
        dev = self.device
        total = _per_sample(seconds_total, n, "seconds_total")
        start = _per_sample(seconds_start, n, "seconds_start")
        limit = self.model.config.max_seconds
        if float((start + total).max()) > limit * 1.5:
            raise ValueError(
                f"seconds_total: {float(total.max()):g} s (start {float(start.max()):g} s) is far beyond the "
                f"{limit:g} s the timing embedding was trained on"
            )
        tokens = self.model.tokenize(_cycle(prompts, n), device=dev)
        cond = {"tokens": tokens, "seconds_start": start.to(dev), "seconds_total": total.to(dev)}
        return cond, {"tokens": torch.zeros_like(tokens[:1])}

    def denoiser(self, guidance: float = 1.0, uncond: dict[str, Tensor] | None = None) -> DenoiserBase:
        """The model's :class:`~diffcore.Denoiser`, with classifier-free guidance of scale ``guidance`` (Ho &
        Salimans 2022, Eq. 6) when it is not 1."""
        den = Denoiser(self.model.eval(), self.schedule, self.prediction)
        if guidance == 1.0:
            return den
        if uncond is None:
            raise ValueError("uncond: guidance needs the unconditional branch's arguments")
        return ClassifierFreeGuidance(den, scale=guidance, uncond=uncond)

    # ------------------------------------------------------------------ latents <-> audio

    def _check_audio(self, audio: Tensor) -> Tensor:
        if audio.ndim != 3 or audio.shape[1] != self.channels:
            raise ValueError(f"audio: expected (B, {self.channels}, samples), got {tuple(audio.shape)}")
        if audio.shape[-1] % self.token_samples:
            raise ValueError(
                f"audio: length {audio.shape[-1]} must be a multiple of {self.token_samples} samples "
                f"(pad it with window_samples())"
            )
        return audio.to(self.device)

    def encode(self, audio: Tensor) -> Tensor:
        """Audio ``(B, channels, T)`` -> normalised latents ``(B, latent_dim, T / hop)``."""
        return self.vae.encode(self._check_audio(audio))

    def decode(self, latents: Tensor) -> Tensor:
        """Latents -> audio ``(B, channels, frames * hop)`` in ``[-1, 1]``."""
        return self.vae.decode(latents)

    # ------------------------------------------------------------------ generation and editing

    @torch.no_grad()
    def generate(
        self,
        prompts: str | Sequence[str] | None = None,
        num_samples: int | None = None,
        seconds_total: float | Sequence[float] | None = None,
        seconds_start: float | Sequence[float] = 0.0,
        duration: float | None = None,
        sampler: str = "euler",
        steps: int = 50,
        guidance: float = 3.0,
        generator: torch.Generator | None = None,
        batch_size: int = 16,
        **options: Any,
    ) -> Tensor:
        """Generate ``num_samples`` clips ``(n, channels, window)`` for the (cycled) ``prompts``.

        Args:
            seconds_total: the sound's length (per clip or one value); default the training clip length.
            duration: the window in seconds (rounded up to whole tokens); default the training clip length.
                Longer windows are long-form generation in one pass (RoPE over time has no fixed length).
            sampler, steps: a ``diffcore.sampling.available()`` sampler and its step count.
            guidance: classifier-free guidance scale (1 = no guidance).
            generator: seeds the noise (on the pipeline's device).
            options: further :func:`diffcore.sample` options (``grid=``, ``eta=`` ...).
        """
        n = (
            num_samples
            if num_samples is not None
            else (1 if isinstance(prompts, str) or not prompts else len(prompts))
        )
        if n < 1:
            raise ValueError(f"num_samples: expected >= 1, got {n}")
        window = self.window_samples(duration or self.clip_seconds)
        total = self.clip_seconds if seconds_total is None else seconds_total
        cond, uncond = self.condition(n, prompts, total, seconds_start)
        den = self.denoiser(guidance, uncond)
        frames = window // self.hop
        out = []
        for lo in range(0, n, batch_size):
            b = min(batch_size, n - lo)
            noise = torch.randn(
                (b, self.vae.config.latent_dim, frames), generator=generator, device=self.device
            )
            part = {k: v[lo : lo + b] for k, v in cond.items()}
            z = diffcore_sample(
                den, noise, sampler=sampler, steps=steps, cond=part, generator=generator, **options
            )
            out.append(self.decode(z))
        return torch.cat(out)

    @torch.no_grad()
    def audio_to_audio(
        self,
        audio: Tensor,
        prompts: str | Sequence[str] | None,
        strength: float = 0.5,
        seconds_total: float | Sequence[float] | None = None,
        sampler: str = "euler",
        steps: int = 50,
        guidance: float = 3.0,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """SDEdit (Meng et al. 2022) in latent space through :func:`diffcore.editing.inpainting.sdedit`: encode
        ``audio`` ``(B, channels, T)``, noise it to ``t = strength`` and denoise towards ``prompts``. ``strength``
        0 returns the reconstruction of the input, 1 ignores it. ``seconds_total`` defaults to the input length."""
        z = self.encode(audio)
        n = len(z)
        total = audio.shape[-1] / self.sample_rate if seconds_total is None else seconds_total
        cond, uncond = self.condition(n, prompts, total)
        noise = torch.randn(z.shape, generator=generator, device=z.device)
        den = self.denoiser(guidance, uncond)
        out = inpainting.sdedit(
            den, z, strength, noise, steps=steps, sampler=sampler, cond=cond, generator=generator
        )
        return self.decode(out)

    @torch.no_grad()
    def inpaint(
        self,
        audio: Tensor,
        keep: Tensor,
        prompts: str | Sequence[str] | None,
        seconds_total: float | Sequence[float] | None = None,
        steps: int = 50,
        guidance: float = 3.0,
        resample: int = 1,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Regenerate the parts of ``audio`` ``(B, channels, T)`` where ``keep`` ``(B, T)`` (bool, per sample) is
        False, consistent with the kept parts, by the replacement method in latent space
        (:func:`diffcore.editing.inpainting.inpaint`, RePaint resampling with ``resample > 1``). A latent frame is
        kept only if all its samples are; the kept frames are decoded, not copied, so the result is a whole
        generated clip."""
        z = self.encode(audio)
        keep = torch.as_tensor(keep, dtype=torch.bool, device=z.device)
        if keep.shape != (audio.shape[0], audio.shape[-1]):
            raise ValueError(
                f"keep: expected ({audio.shape[0]}, {audio.shape[-1]}) booleans, got {tuple(keep.shape)}"
            )
        frame_keep = keep.reshape(len(z), z.shape[-1], self.hop).all(-1)
        mask = frame_keep[:, None, :].expand_as(z).to(z.dtype)
        total = audio.shape[-1] / self.sample_rate if seconds_total is None else seconds_total
        cond, uncond = self.condition(len(z), prompts, total)
        noise = torch.randn(z.shape, generator=generator, device=z.device)
        den = self.denoiser(guidance, uncond)
        out = inpainting.inpaint(
            den, z, mask, noise, steps, cond=cond, resample=resample, generator=generator
        )
        return self.decode(out)

    @torch.no_grad()
    def continue_audio(
        self,
        audio: Tensor,
        prompts: str | Sequence[str] | None,
        extra_seconds: float,
        steps: int = 50,
        guidance: float = 3.0,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Continuation: append ``extra_seconds`` (rounded up to whole tokens) generated after ``audio`` ``(B,
        channels, T)``; inpainting with the input kept and the new tail generated."""
        extra = self.window_samples(extra_seconds)
        padded = torch.nn.functional.pad(audio.to(self.device), (0, extra))
        keep = torch.zeros(padded.shape[0], padded.shape[-1], dtype=torch.bool, device=self.device)
        keep[:, : audio.shape[-1]] = True
        total = padded.shape[-1] / self.sample_rate
        return self.inpaint(padded, keep, prompts, total, steps, guidance, generator=generator)
