"""``diffuse materials train | sample | csp | evaluate`` and ``diffuse bench materials``.

Registered with the ``diffuse`` command line through the entry point ``diffcore.modalities``. Options come from
the configuration dataclasses (:mod:`diff_materials.config`) through :func:`diffcore.cli.options.config_command`,
the same way in every modality. ``train`` reads a CDVAE-style CSV or a folder of CIF files (``--data``), or the
generated prototypes; ``sample`` writes CIF files and a picture; ``csp`` predicts structures for every entry of
a file from its composition alone (``<material_id>_<k>.cif``); ``evaluate`` writes ``metrics.json``.

Only typer, diffcore's command-line helpers and the configurations are imported here; models load when a
command runs.
"""

from __future__ import annotations

from pathlib import Path

import typer
from diffcore.cli.options import config_command
from diffcore.modality import Modality

from diff_materials.bench import bench
from diff_materials.config import (
    CrystalCSPConfig,
    CrystalEvaluateConfig,
    CrystalSampleConfig,
    CrystalTrainConfig,
)

__all__ = ["app", "modality"]

DESCRIPTION = (
    "Crystal diffusion with property guidance (MatterGen, DiffCSP): structure prediction and generation."
)

app = typer.Typer(no_args_is_help=True, add_completion=False, help=DESCRIPTION)
PIPELINE = "diff_materials.pipeline:CrystalPipeline"

TRAIN_OPTIONS = {
    "task": "--task",
    "data_path": "--data",
    "properties": "--property",
    "train.steps": "--steps",
    "train.lr": "--lr",
    "batch_size": "--batch-size",
    "held_out": "--held-out",
    "split": "--split",
    "limit": "--limit",
    "model.width": "--width",
    "model.depth": "--depth",
    "init_from": "--init-from",
    "predictor_steps": "--predictor-steps",
}
SAMPLE_OPTIONS = {
    "num_samples": ("--num", "-n"),
    "formulas": "--formula",
    "steps": "--steps",
    "step_lr": "--step-lr",
    "properties": "--property",
    "guidance_scale": "--guidance",
    "target": "--target",
    "predictor_scale": "--predictor-scale",
}
CSP_OPTIONS = {
    "run": "--run",
    "input": "--input",
    "samples": "--samples",
    "steps": "--steps",
    "step_lr": "--step-lr",
    "batch": "--batch",
}
EVALUATE_OPTIONS = {
    "num_samples": ("--num", "-n"),
    "candidates": "--candidates",
    "data_path": "--data",
    "cov_dataset": "--cov-dataset",
    "steps": "--steps",
    "step_lr": "--step-lr",
}


@config_command(app, "train", CrystalTrainConfig, options=TRAIN_OPTIONS)
def train_cmd(config: CrystalTrainConfig, out: Path) -> None:
    """Train a structure-prediction (--task csp) or generation (--task gen) model; write the run
    (checkpoints, log.jsonl) and OUT/pipeline."""
    from diff_materials.pipeline import train

    train(config)
    typer.echo(f"saved the {config.task} pipeline to {out / 'pipeline'}")


@config_command(app, "sample", CrystalSampleConfig, pipeline=PIPELINE, default_out="runs/materials-samples",
                options=SAMPLE_OPTIONS)  # fmt: skip
def sample_cmd(config: CrystalSampleConfig, out: Path, pipeline: object) -> None:
    """Draw crystals from a saved pipeline (of --formula compositions, or ab initio); write OUT/sample_000.cif,
    ... and OUT/samples.png."""
    from diff_materials.pipeline import sample, save_samples

    crystals = sample(pipeline, config)  # type: ignore[arg-type]
    save_samples(out, crystals)
    typer.echo(f"wrote {len(crystals)} CIF files and samples.png to {out}")


@config_command(app, "csp", CrystalCSPConfig, default_out="runs/materials-csp", options=CSP_OPTIONS)
def csp_cmd(config: CrystalCSPConfig, out: Path) -> None:
    """Predict --samples structures for every crystal of --input (CDVAE CSV or CIF folder) from its composition
    only, with the model of --run; write OUT/<material_id>_<k>.cif."""
    from diff_materials.pipeline import predict_files

    files = predict_files(config, out)
    typer.echo(f"wrote {len(files)} CIF files to {out}")


@config_command(app, "evaluate", CrystalEvaluateConfig, pipeline=PIPELINE, default_out="runs/materials-eval",
                options=EVALUATE_OPTIONS)  # fmt: skip
def evaluate_cmd(config: CrystalEvaluateConfig, out: Path, pipeline: object) -> None:
    """Score a saved pipeline (match rate / RMSE; validity, COV, Wasserstein, uniqueness, novelty for
    generation); write OUT/metrics.json."""
    import json

    from diffcore.io import write_json

    from diff_materials.pipeline import evaluate

    metrics = evaluate(pipeline, config)  # type: ignore[arg-type]
    write_json(metrics, out / "metrics.json")
    typer.echo(json.dumps(metrics, indent=2))


modality = Modality(name="materials", description=DESCRIPTION, app=app, bench=bench)
