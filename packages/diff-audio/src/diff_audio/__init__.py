"""VAE-latent DiT audio diffusion with timing conditioning (Stable Audio).

Status: scaffold. The public API below has its final shape; :func:`train`, :func:`sample` and :func:`evaluate`
raise ``NotImplementedError`` until issue #26 lands.
"""

from importlib.metadata import PackageNotFoundError, version

from diff_audio.config import AudioEvaluateConfig, AudioModelConfig, AudioSampleConfig, AudioTrainConfig
from diff_audio.pipeline import AudioPipeline, evaluate, sample, train

try:
    __version__ = version("diff-audio")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0"

__all__ = [
    "AudioEvaluateConfig",
    "AudioModelConfig",
    "AudioPipeline",
    "AudioSampleConfig",
    "AudioTrainConfig",
    "__version__",
    "evaluate",
    "sample",
    "train",
]
