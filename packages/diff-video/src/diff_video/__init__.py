"""Spacetime-patch video diffusion (Sora / Open-Sora / Latte).

Status: scaffold. The public API below has its final shape; :func:`train`, :func:`sample` and :func:`evaluate`
raise ``NotImplementedError`` until issue #25 lands.
"""

from importlib.metadata import PackageNotFoundError, version

from diff_video.config import VideoEvaluateConfig, VideoModelConfig, VideoSampleConfig, VideoTrainConfig
from diff_video.pipeline import VideoPipeline, evaluate, sample, train

try:
    __version__ = version("diff-video")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0"

__all__ = [
    "VideoEvaluateConfig",
    "VideoModelConfig",
    "VideoPipeline",
    "VideoSampleConfig",
    "VideoTrainConfig",
    "__version__",
    "evaluate",
    "sample",
    "train",
]
