"""``diffuse protein train | sample | evaluate`` and ``diffuse bench protein``.

Registered with the ``diffuse`` command line through the entry point ``diffcore.modalities``. Options come
from the configuration dataclasses (:mod:`diff_protein.config`) through
:func:`diffcore.cli.options.config_command`, the same way in every modality. Backbones (``--what backbone``)
train on the synthetic set or a folder of PDB / mmCIF / BinaryCIF files; sequences (``--what sequence``) on
the profile families or on a FASTA / A3M file labelled by UniRef ``Tax=``. ``sample`` and ``evaluate`` work on
the saved pipeline (``--pipeline RUN/pipeline``) and do what it holds.

Only typer, diffcore's command-line helpers and the configurations are imported here; the models load when a
command runs.
"""

from __future__ import annotations

from pathlib import Path

import typer
from diffcore.cli.options import config_command
from diffcore.modality import Modality

from diff_protein.bench import bench
from diff_protein.config import ProteinEvaluateConfig, ProteinSampleConfig, ProteinTrainConfig

__all__ = ["app", "modality"]

DESCRIPTION = "Protein diffusion: SE(3) frame diffusion for backbones and taxonomy-conditioned sequences."

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help="Protein diffusion: FrameDiff / FrameFlow backbones and TaxDiff sequences.",
)
PIPELINE = "diff_protein.pipeline:ProteinPipeline"

TRAIN_OPTIONS = {
    "what": "--what",
    "process": "--process",
    "data_path": "--data",
    "train.steps": "--steps",
    "batch_size": "--batch-size",
    "train.lr": "--lr",
    "num_examples": "--num-examples",
    "max_length": "--max-length",
    "length": "--length",
    "backbone.node_dim": "--node-dim",
    "backbone.num_blocks": "--num-blocks",
    "sequence.hidden_size": "--hidden-size",
    "sequence.depth": "--depth",
    "motif_prob": "--motif-prob",
    "cuda_graphs": "--cuda-graphs",
    "init_from": "--init-from",
    "train.resume": "--resume",
}
SAMPLE_OPTIONS = {
    "num_samples": "--num",
    "steps": "--steps",
    "length": "--length",
    "motif_path": "--motif",
    "fixed": "--fixed",
    "clash_radius": "--clash-radius",
    "rotation_rate_t_max": "--rotation-rate-t-max",
    "labels": "--label",
    "guidance_scale": "--guidance",
}
EVALUATE_OPTIONS = {
    "samples_path": "--samples",
    "num_samples": "--num",
    "steps": "--steps",
    "reference_path": "--reference",
}


@config_command(app, "train", ProteinTrainConfig, options=TRAIN_OPTIONS)
def train_cmd(config: ProteinTrainConfig, out: Path) -> None:
    """Train a backbone or a sequence model; write the run (checkpoints, log.jsonl) and OUT/pipeline."""
    from diff_protein.pipeline import train

    train(config)
    typer.echo(f"saved the {config.what} pipeline to {out / 'pipeline'}")


@config_command(
    app,
    "sample",
    ProteinSampleConfig,
    pipeline=PIPELINE,
    default_out="runs/protein-samples",
    options=SAMPLE_OPTIONS,
)
def sample_cmd(config: ProteinSampleConfig, out: Path, pipeline: object) -> None:
    """Generate backbones (OUT/sample_000.pdb, ...) or sequences (OUT/samples.fasta) from a saved pipeline."""
    from diff_protein.pipeline import sample

    samples = sample(pipeline, config)  # type: ignore[arg-type]
    files = samples.save(out)
    what = "backbones" if samples.what == "backbone" else "sequences"
    typer.echo(f"wrote {len(samples)} {what} to {out if len(files) > 1 else files[0]}")


@config_command(
    app,
    "evaluate",
    ProteinEvaluateConfig,
    pipeline=PIPELINE,
    default_out="runs/protein-eval",
    options=EVALUATE_OPTIONS,
)
def evaluate_cmd(config: ProteinEvaluateConfig, out: Path, pipeline: object) -> None:
    """Score a saved pipeline (geometry targets of backbones, label adherence of sequences); write
    OUT/metrics.json."""
    import json

    from diffcore.io import write_json

    from diff_protein.pipeline import evaluate

    metrics = evaluate(pipeline, config)  # type: ignore[arg-type]
    write_json(metrics, out / "metrics.json")
    typer.echo(json.dumps(metrics, indent=2))


modality = Modality(name="protein", description=DESCRIPTION, app=app, bench=bench)
