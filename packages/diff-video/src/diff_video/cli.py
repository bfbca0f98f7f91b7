"""``diffuse video train | sample | evaluate``, registered through the entry point ``diffcore.modalities``.

Options come from the configuration dataclasses (:mod:`diff_video.config`) through
:func:`diffcore.cli.options.config_command`, the same way in every modality.
"""

from __future__ import annotations

from pathlib import Path

import typer
from diffcore.cli.options import config_command
from diffcore.modality import Modality

from diff_video.bench import bench
from diff_video.config import VideoEvaluateConfig, VideoSampleConfig, VideoTrainConfig

__all__ = ["app", "modality"]

DESCRIPTION = "Spacetime-patch video diffusion (Sora / Open-Sora / Latte) (scaffold)."

app = typer.Typer(no_args_is_help=True, add_completion=False, help=DESCRIPTION)
PIPELINE = "diff_video.pipeline:VideoPipeline"


@config_command(
    app, "train", VideoTrainConfig, options=["data_path", "batch_size", "train.steps", "train.lr"]
)
def train_cmd(config: VideoTrainConfig, out: Path) -> None:
    """Train a model; write the run (checkpoints, logs, OUT/pipeline)."""
    from diff_video.pipeline import train

    train(config)


@config_command(app, "sample", VideoSampleConfig, pipeline=PIPELINE, default_out="runs/video-samples",
                options=["num_samples", "sampler", "steps"])  # fmt: skip
def sample_cmd(config: VideoSampleConfig, out: Path, pipeline: object) -> None:
    """Draw samples from a saved pipeline; write them to OUT (MP4 / GIF)."""
    from diff_video.pipeline import sample

    sample(pipeline, config)  # type: ignore[arg-type]


@config_command(app, "evaluate", VideoEvaluateConfig, pipeline=PIPELINE, default_out="runs/video-eval",
                options=["num_samples"])  # fmt: skip
def evaluate_cmd(config: VideoEvaluateConfig, out: Path, pipeline: object) -> None:
    """Score a saved pipeline; write OUT/metrics.json."""
    from diff_video.pipeline import evaluate

    evaluate(pipeline, config)  # type: ignore[arg-type]


modality = Modality(name="video", description=DESCRIPTION, app=app, bench=bench)
