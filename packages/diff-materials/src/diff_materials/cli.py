"""``diffuse materials train | sample | evaluate``, registered through the entry point ``diffcore.modalities``.

Options come from the configuration dataclasses (:mod:`diff_materials.config`) through
:func:`diffcore.cli.options.config_command`, the same way in every modality.
"""

from __future__ import annotations

from pathlib import Path

import typer
from diffcore.cli.options import config_command
from diffcore.modality import Modality

from diff_materials.bench import bench
from diff_materials.config import CrystalEvaluateConfig, CrystalSampleConfig, CrystalTrainConfig

__all__ = ["app", "modality"]

DESCRIPTION = "Crystal diffusion with property guidance (MatterGen, DiffCSP) (scaffold)."

app = typer.Typer(no_args_is_help=True, add_completion=False, help=DESCRIPTION)
PIPELINE = "diff_materials.pipeline:CrystalPipeline"


@config_command(
    app, "train", CrystalTrainConfig, options=["data_path", "batch_size", "train.steps", "train.lr"]
)
def train_cmd(config: CrystalTrainConfig, out: Path) -> None:
    """Train a model; write the run (checkpoints, logs, OUT/pipeline)."""
    from diff_materials.pipeline import train

    train(config)


@config_command(app, "sample", CrystalSampleConfig, pipeline=PIPELINE, default_out="runs/materials-samples",
                options=["num_samples", "sampler", "steps"])  # fmt: skip
def sample_cmd(config: CrystalSampleConfig, out: Path, pipeline: object) -> None:
    """Draw samples from a saved pipeline; write them to OUT (CIF)."""
    from diff_materials.pipeline import sample

    sample(pipeline, config)  # type: ignore[arg-type]


@config_command(app, "evaluate", CrystalEvaluateConfig, pipeline=PIPELINE, default_out="runs/materials-eval",
                options=["num_samples"])  # fmt: skip
def evaluate_cmd(config: CrystalEvaluateConfig, out: Path, pipeline: object) -> None:
    """Score a saved pipeline; write OUT/metrics.json."""
    from diff_materials.pipeline import evaluate

    evaluate(pipeline, config)  # type: ignore[arg-type]


modality = Modality(name="materials", description=DESCRIPTION, app=app, bench=bench)
