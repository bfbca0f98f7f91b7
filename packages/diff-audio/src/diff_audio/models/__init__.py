"""Networks of diff-audio: the Oobleck-style VAE (:mod:`diff_audio.models.vae`) and the timing- and
text-conditioned latent DiT built on diffcore's MMDiT (:mod:`diff_audio.models.dit`)."""

from diff_audio.models.dit import AudioDiT, AudioDiTConfig, NumberEmbedder, WordTextEncoder, build_vocabulary
from diff_audio.models.vae import (
    AudioVAE,
    AudioVAEModelConfig,
    Snake,
    VAEObjective,
    multi_resolution_stft_loss,
)

__all__ = [
    "AudioDiT",
    "AudioDiTConfig",
    "AudioVAE",
    "AudioVAEModelConfig",
    "NumberEmbedder",
    "Snake",
    "VAEObjective",
    "WordTextEncoder",
    "build_vocabulary",
    "multi_resolution_stft_loss",
]
