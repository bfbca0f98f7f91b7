"""``diffuse audio train | sample | evaluate``, registered through the entry point ``diffcore.modalities``.

Options come from the configuration dataclasses (:mod:`diff_audio.config`) through
:func:`diffcore.cli.options.config_command`, the same way in every modality.
"""

from __future__ import annotations

from pathlib import Path

import typer
from diffcore.cli.options import config_command
from diffcore.modality import Modality

from diff_audio.bench import bench
from diff_audio.config import AudioEvaluateConfig, AudioSampleConfig, AudioTrainConfig

__all__ = ["app", "modality"]

DESCRIPTION = "VAE-latent DiT audio diffusion with timing conditioning (Stable Audio) (scaffold)."

app = typer.Typer(no_args_is_help=True, add_completion=False, help=DESCRIPTION)
PIPELINE = "diff_audio.pipeline:AudioPipeline"


@config_command(
    app, "train", AudioTrainConfig, options=["data_path", "batch_size", "train.steps", "train.lr"]
)
def train_cmd(config: AudioTrainConfig, out: Path) -> None:
    """Train a model; write the run (checkpoints, logs, OUT/pipeline)."""
    from diff_audio.pipeline import train

    train(config)


@config_command(app, "sample", AudioSampleConfig, pipeline=PIPELINE, default_out="runs/audio-samples",
                options=["num_samples", "sampler", "steps"])  # fmt: skip
def sample_cmd(config: AudioSampleConfig, out: Path, pipeline: object) -> None:
    """Draw samples from a saved pipeline; write them to OUT (WAV)."""
    from diff_audio.pipeline import sample

    sample(pipeline, config)  # type: ignore[arg-type]


@config_command(app, "evaluate", AudioEvaluateConfig, pipeline=PIPELINE, default_out="runs/audio-eval",
                options=["num_samples"])  # fmt: skip
def evaluate_cmd(config: AudioEvaluateConfig, out: Path, pipeline: object) -> None:
    """Score a saved pipeline; write OUT/metrics.json."""
    from diff_audio.pipeline import evaluate

    evaluate(pipeline, config)  # type: ignore[arg-type]


modality = Modality(name="audio", description=DESCRIPTION, app=app, bench=bench)
