"""``diffuse timeseries train | sample | evaluate``, registered through the entry point ``diffcore.modalities``.

Options come from the configuration dataclasses (:mod:`diff_timeseries.config`) through
:func:`diffcore.cli.options.config_command`, the same way in every modality.
"""

from __future__ import annotations

from pathlib import Path

import typer
from diffcore.cli.options import config_command
from diffcore.modality import Modality

from diff_timeseries.bench import bench
from diff_timeseries.config import SeriesEvaluateConfig, SeriesSampleConfig, SeriesTrainConfig

__all__ = ["app", "modality"]

DESCRIPTION = "Text-to-series generation (T2S), forecasting and imputation (scaffold)."

app = typer.Typer(no_args_is_help=True, add_completion=False, help=DESCRIPTION)
PIPELINE = "diff_timeseries.pipeline:SeriesPipeline"


@config_command(
    app, "train", SeriesTrainConfig, options=["data_path", "batch_size", "train.steps", "train.lr"]
)
def train_cmd(config: SeriesTrainConfig, out: Path) -> None:
    """Train a model; write the run (checkpoints, logs, OUT/pipeline)."""
    from diff_timeseries.pipeline import train

    train(config)


@config_command(app, "sample", SeriesSampleConfig, pipeline=PIPELINE, default_out="runs/timeseries-samples",
                options=["num_samples", "sampler", "steps"])  # fmt: skip
def sample_cmd(config: SeriesSampleConfig, out: Path, pipeline: object) -> None:
    """Draw samples from a saved pipeline; write them to OUT (CSV)."""
    from diff_timeseries.pipeline import sample

    sample(pipeline, config)  # type: ignore[arg-type]


@config_command(app, "evaluate", SeriesEvaluateConfig, pipeline=PIPELINE, default_out="runs/timeseries-eval",
                options=["num_samples"])  # fmt: skip
def evaluate_cmd(config: SeriesEvaluateConfig, out: Path, pipeline: object) -> None:
    """Score a saved pipeline; write OUT/metrics.json."""
    from diff_timeseries.pipeline import evaluate

    evaluate(pipeline, config)  # type: ignore[arg-type]


modality = Modality(name="timeseries", description=DESCRIPTION, app=app, bench=bench)
