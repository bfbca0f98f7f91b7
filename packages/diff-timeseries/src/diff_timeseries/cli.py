"""``diffuse timeseries train | sample | forecast | impute | evaluate``, registered through the entry point
``diffcore.modalities``.

Options come from the configuration dataclasses (:mod:`diff_timeseries.config`) through
:func:`diffcore.cli.options.config_command`, the same way in every modality. Only typer, diffcore's command-line
helpers and the configurations are imported here; the models load when a command runs.
"""

from __future__ import annotations

from pathlib import Path

import typer
from diffcore.cli.options import config_command
from diffcore.modality import Modality

from diff_timeseries.bench import bench
from diff_timeseries.config import (
    SeriesEvaluateConfig,
    SeriesForecastConfig,
    SeriesImputeConfig,
    SeriesSampleConfig,
    SeriesTrainConfig,
)

__all__ = ["app", "modality"]

DESCRIPTION = "Text-to-series generation (T2S), probabilistic forecasting and imputation of time series."

app = typer.Typer(no_args_is_help=True, add_completion=False, help=DESCRIPTION)
PIPELINE = "diff_timeseries.pipeline:SeriesPipeline"

TRAIN_OPTIONS = {
    "data.source": "--source",
    "data.path": "--data",
    "data.value_columns": "--columns",
    "data.text_column": "--text-column",
    "data.lengths": "--lengths",
    "batch_size": "--batch-size",
    "train.steps": "--steps",
    "vae_steps": "--vae-steps",
    "prior_steps": "--prior-steps",
    "train.lr": "--lr",
}


@config_command(app, "train", SeriesTrainConfig, options=TRAIN_OPTIONS)
def train_cmd(config: SeriesTrainConfig, out: Path) -> None:
    """Train the VAE, the caption-conditioned generator and the forecasting prior; write the run and
    OUT/pipeline."""
    from diff_timeseries.pipeline import train

    train(config)
    typer.echo(f"saved the pipeline to {out / 'pipeline'}")


@config_command(
    app,
    "sample",
    SeriesSampleConfig,
    pipeline=PIPELINE,
    default_out="runs/timeseries-samples",
    options={
        "captions": "--captions",
        "captions_file": "--captions-file",
        "num_samples": ("--num", "-n"),
        "length": "--length",
        "guidance_scale": "--guidance",
        "steps": "--steps",
        "sampler": "--sampler",
    },
)
def sample_cmd(config: SeriesSampleConfig, out: Path, pipeline: object) -> None:
    """Generate series from captions; write OUT/samples.csv, OUT/captions.txt and OUT/samples.png."""
    from diff_timeseries.pipeline import sample

    samples = sample(pipeline, config)  # type: ignore[arg-type]
    samples.save(out)
    typer.echo(f"wrote {len(samples)} series of length {config.length} to {out}")


@config_command(
    app,
    "forecast",
    SeriesForecastConfig,
    pipeline=PIPELINE,
    default_out="runs/timeseries-forecast",
    options={
        "input": "--input",
        "column": "--column",
        "time_column": "--time-column",
        "horizon": "--horizon",
        "samples": "--samples",
        "context": "--context",
    },
)
def forecast_cmd(config: SeriesForecastConfig, out: Path, pipeline: object) -> None:
    """Forecast HORIZON steps after the end of a series in a CSV / Parquet file; write the sample paths
    (OUT/forecast_paths.csv), the 0.1 / 0.5 / 0.9 quantiles (OUT/forecast_quantiles.csv) and a fan chart
    (OUT/forecast.png)."""
    from diff_timeseries.pipeline import forecast

    result = forecast(pipeline, config)  # type: ignore[arg-type]
    result.save(out)
    typer.echo(f"wrote {result.paths.shape[0]} sample paths of {config.horizon} steps to {out}")


@config_command(
    app,
    "impute",
    SeriesImputeConfig,
    pipeline=PIPELINE,
    default_out="runs/timeseries-impute",
    options={
        "input": "--input",
        "column": "--column",
        "time_column": "--time-column",
        "samples": "--samples",
    },
)
def impute_cmd(config: SeriesImputeConfig, out: Path, pipeline: object) -> None:
    """Fill the missing values (empty cells) of a series in a CSV / Parquet file; write OUT/imputed.csv (the
    median and the 10-90% band) and OUT/imputed.png."""
    from diff_timeseries.pipeline import impute

    result = impute(pipeline, config)  # type: ignore[arg-type]
    result.save(out)
    typer.echo(f"filled {int((~result.observed).sum())} missing values; wrote {out / 'imputed.csv'}")


@config_command(
    app,
    "evaluate",
    SeriesEvaluateConfig,
    pipeline=PIPELINE,
    default_out="runs/timeseries-eval",
    options={
        "num_samples": ("--num", "-n"),
        "lengths": "--lengths",
        "guidance_scale": "--guidance",
        "steps": "--steps",
        "forecast": "--forecast",
        "impute": "--impute",
        "horizon": "--horizon",
    },
)
def evaluate_cmd(config: SeriesEvaluateConfig, out: Path, pipeline: object) -> None:
    """Score a saved pipeline (caption adherence, C-FID, MRR@10, forecasting and imputation against the
    baselines); write OUT/metrics.json."""
    import json

    from diffcore.io import write_json

    from diff_timeseries.pipeline import evaluate

    metrics = evaluate(pipeline, config)  # type: ignore[arg-type]
    write_json(metrics, out / "metrics.json")
    typer.echo(json.dumps(metrics, indent=2))


modality = Modality(name="timeseries", description=DESCRIPTION, app=app, bench=bench)
