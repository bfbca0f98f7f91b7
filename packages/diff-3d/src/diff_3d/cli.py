"""``diffuse 3d train | sample | evaluate | fit``, registered through the entry point ``diffcore.modalities``.

Options come from the configuration dataclasses (:mod:`diff_3d.config`) through
:func:`diffcore.cli.options.config_command`, the same way in every modality::

    diffuse 3d train --out runs/3d --representation diffgs --conditioning class     # the procedural set
    diffuse 3d train --out runs/3d-l3dg --representation l3dg --set dataset=primitives
    diffuse 3d train --data splats/ --conditioning caption --out runs/3d-folder     # a folder of 3DGS PLY files
    diffuse 3d sample --pipeline runs/3d/pipeline --class torus --class cube -n 4 --budget 4096
    diffuse 3d evaluate --pipeline runs/3d/pipeline --out runs/3d-eval
"""

from __future__ import annotations

from pathlib import Path

import typer
from diffcore.cli.options import config_command
from diffcore.modality import Modality

from diff_3d.bench import bench
from diff_3d.config import (
    SplatEvaluateConfig,
    SplatFitConfig,
    SplatSampleConfig,
    SplatSDSConfig,
    SplatTrainConfig,
)

__all__ = ["app", "modality"]

DESCRIPTION = (
    "Diffusion on 3D Gaussian splats (DiffGS, L3DG latent diffusion) and score distillation (DreamFusion)."
)

app = typer.Typer(no_args_is_help=True, add_completion=False, help=DESCRIPTION)
PIPELINE = "diff_3d.pipeline:SplatPipeline"


@config_command(
    app,
    "train",
    SplatTrainConfig,
    options={
        "data_path": "--data",
        "batch_size": "--batch-size",
        "train.steps": "--steps",
        "train.lr": "--lr",
        "model.representation": "--representation",
        "conditioning": "--conditioning",
        "budget": "--budget",
        "autoencoder_steps": "--autoencoder-steps",
    },
)
def train_cmd(config: SplatTrainConfig, out: Path) -> None:
    """Train the autoencoder, then the latent diffusion; write the run (checkpoints, logs, OUT/pipeline). Without
    --data it trains on the procedural set."""
    from diff_3d.pipeline import train

    train(config)
    typer.echo(f"pipeline: {Path(config.train.output_dir) / 'pipeline'}")


@config_command(app, "sample", SplatSampleConfig, pipeline=PIPELINE, default_out="runs/3d-samples",
                options={"num_samples": ("--num-samples", "-n"), "classes": "--class", "prompts": "--prompt",
                         "guidance": "--guidance", "sampler": "--sampler", "steps": "--steps",
                         "budget": "--budget"})  # fmt: skip
def sample_cmd(config: SplatSampleConfig, out: Path, pipeline: object) -> None:
    """Draw objects from a saved pipeline; write them to OUT (sample_<i>.ply, grid.png, turntable_<i>.gif)."""
    from diff_3d.pipeline import sample

    sample(pipeline, config, out=out)  # type: ignore[arg-type]
    typer.echo(f"samples: {out}")


@config_command(app, "evaluate", SplatEvaluateConfig, pipeline=PIPELINE, default_out="runs/3d-eval",
                options={"num_samples": ("--num-samples", "-n"), "steps": "--steps",
                         "classifier_steps": "--classifier-steps"})  # fmt: skip
def evaluate_cmd(config: SplatEvaluateConfig, out: Path, pipeline: object) -> None:
    """Score a saved pipeline against reference objects; write OUT/metrics.json."""
    from diff_3d.pipeline import evaluate

    metrics = evaluate(pipeline, config, out=out)  # type: ignore[arg-type]
    for name, value in metrics.items():
        typer.echo(f"{name:24s} {value:.4g}")


@config_command(app, "fit", SplatFitConfig, options={
    "data_path": "--data", "num_objects": "--num-objects", "num_gaussians": "--num-gaussians",
    "fit.steps": "--steps", "resolution": "--resolution", "turntable": "--turntable", "cache_dir": "--cache-dir",
})  # fmt: skip
def fit_cmd(config: SplatFitConfig, out: Path) -> None:
    """Fit 3D Gaussians to multi-view images: --data, a folder of transforms.json sets (NeRF-synthetic format),
    or the procedural primitives; writes OUT/<object>.ply, OUT/renders.png (truth above renders) and
    OUT/metrics.json (PSNR)."""
    from diff_3d.fitting import run_fit

    metrics = run_fit(config)
    typer.echo(f"psnr_mean {metrics['psnr_mean']:.2f} dB over {metrics['num_objects']} objects: {out}")


@config_command(app, "sds", SplatSDSConfig, options={
    "prompt": "--prompt", "prior": "--prior", "sds.steps": "--steps", "sds.guidance": "--guidance",
    "sds.method": "--method",
})  # fmt: skip
def sds_cmd(config: SplatSDSConfig, out: Path) -> None:
    """Score distillation: optimise 3D Gaussians so that their renders from random cameras score well under a 2D
    prior trained on the primitives (--prior, the OUT/prior folder of diff_3d.prior.train_prior) for --prompt, a
    colour and a kind ("a red sphere"). --method sds (DreamFusion, CFG --guidance, 100 by default) or csd
    (classifier score distillation: use a lower --guidance, e.g. 20). Writes OUT/object.ply, OUT/turntable.gif,
    OUT/views.png (renders above the prompted primitive's true renders) and OUT/metrics.json (silhouette IoU,
    saturation, Janus check)."""
    from diff_3d.sds_command import run_sds

    metrics = run_sds(config)
    typer.echo(f"silhouette IoU {metrics['iou']:.3f} (best over scales {metrics['iou_scaled']:.3f}): {out}")


modality = Modality(name="3d", description=DESCRIPTION, app=app, bench=bench)
