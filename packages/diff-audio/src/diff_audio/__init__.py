"""VAE-latent DiT audio diffusion with timing conditioning (Stable Audio).

An Oobleck-style VAE with Snake activations and a multi-resolution STFT loss, a latent DiT (diffcore's MMDiT
blocks, RoPE over time) conditioned on ``seconds_start`` / ``seconds_total`` and on captions, a synthetic music
set with known notes and instruments, offline metrics (pitch, instrument, timing, FAD-local, structure, SI-SDR),
audio-to-audio, inpainting and continuation.

Audio is ``(B, channels, samples)`` float in ``[-1, 1]``; diffusion time ``t`` in [0, 1] with ``t = 0`` data.
"""

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from diff_audio.config import (
    AudioA2AConfig,
    AudioDataConfig,
    AudioEvaluateConfig,
    AudioModelConfig,
    AudioSampleConfig,
    AudioTrainConfig,
    AudioVAEConfig,
)

try:
    __version__ = version("diff-audio")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0"

# The pipeline and the verbs load torch and model code on first use (PEP 562), so that the command line
# (which reads only the configuration) stays light.
_LAZY = {
    "AudioPipeline": "pipeline",
    "audio_to_audio": "pipeline",
    "evaluate": "pipeline",
    "sample": "pipeline",
    "train": "pipeline",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(f"diff_audio.{_LAZY[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'diff_audio' has no attribute {name!r}")


__all__ = [
    "AudioA2AConfig",
    "AudioDataConfig",
    "AudioEvaluateConfig",
    "AudioModelConfig",
    "AudioPipeline",
    "AudioSampleConfig",
    "AudioTrainConfig",
    "AudioVAEConfig",
    "__version__",
    "audio_to_audio",
    "evaluate",
    "sample",
    "train",
]
