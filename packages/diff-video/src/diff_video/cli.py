"""``diffuse video train | sample | evaluate | i2v``, registered through the entry point ``diffcore.modalities``.

Options come from the configuration dataclasses (:mod:`diff_video.config`) through
:func:`diffcore.cli.options.config_command`, the same way in every modality::

    diffuse video train --out runs/video --steps 2000                  # moving shapes, text-conditioned
    diffuse video train --data videos/ --frames 16 --height 64 --width 64 --resize center-crop
    diffuse video sample --pipeline runs/video/pipeline --prompt "a red square moves left" -n 4
    diffuse video i2v --pipeline runs/video/pipeline --image first.png --prompt "a red square moves up"
    diffuse video evaluate --pipeline runs/video/pipeline --out runs/video-eval
"""

from __future__ import annotations

from pathlib import Path

import typer
from diffcore.cli.options import config_command
from diffcore.modality import Modality

from diff_video.bench import bench
from diff_video.config import VideoEvaluateConfig, VideoI2VConfig, VideoSampleConfig, VideoTrainConfig

__all__ = ["app", "modality"]

DESCRIPTION = "Spacetime-patch video diffusion (Sora / Open-Sora / Latte): text-to-video, image-to-video."

app = typer.Typer(no_args_is_help=True, add_completion=False, help=DESCRIPTION)
PIPELINE = "diff_video.pipeline:VideoPipeline"


@config_command(app, "train", VideoTrainConfig, options={
    "data.path": "--data", "data.frames": "--frames", "data.height": "--height", "data.width": "--width",
    "data.resize": "--resize", "model.attention": "--attention", "model.conditioning": "--conditioning",
    "vae.enabled": "--latent", "batch_size": "--batch-size", "train.steps": "--steps", "train.lr": "--lr",
})  # fmt: skip
def train_cmd(config: VideoTrainConfig, out: Path) -> None:
    """Train a model; write the run (checkpoints, logs, OUT/pipeline). Without --data it trains on the generated
    moving-shapes clips."""
    from diff_video.pipeline import train

    train(config)
    typer.echo(f"pipeline: {Path(config.train.output_dir) / 'pipeline'}")


@config_command(app, "sample", VideoSampleConfig, pipeline=PIPELINE, default_out="runs/video-samples",
                options={"num_samples": ("--num-samples", "-n"), "prompts": "--prompt", "labels": "--label",
                         "frames": "--frames", "guidance": "--guidance", "sampler": "--sampler",
                         "steps": "--steps", "fps": "--fps"})  # fmt: skip
def sample_cmd(config: VideoSampleConfig, out: Path, pipeline: object) -> None:
    """Draw clips from a saved pipeline; write them to OUT (MP4, GIF, PNG frame strip each; grid.png)."""
    from diff_video.pipeline import sample

    sample(pipeline, config, out=out)  # type: ignore[arg-type]
    typer.echo(f"samples: {out}")


@config_command(app, "i2v", VideoI2VConfig, pipeline=PIPELINE, default_out="runs/video-i2v",
                options={"image": "--image", "prompt": "--prompt", "label": "--label", "length": "--length",
                         "overlap": "--overlap", "context_frames": "--context-frames", "guidance": "--guidance",
                         "steps": "--steps"})  # fmt: skip
def i2v_cmd(config: VideoI2VConfig, out: Path, pipeline: object) -> None:
    """Image-to-video (or continue a video): the given frames held fixed, the rest generated; --length beyond one
    window extends the clip window by window. Writes OUT/i2v_000.mp4 / .gif / .png."""
    from diff_video.pipeline import image_to_video

    image_to_video(pipeline, config, out=out)  # type: ignore[arg-type]
    typer.echo(f"clip: {out}")


@config_command(app, "evaluate", VideoEvaluateConfig, pipeline=PIPELINE, default_out="runs/video-eval",
                options={"num_samples": ("--num-samples", "-n"), "i3d": "--i3d", "steps": "--steps"})  # fmt: skip
def evaluate_cmd(config: VideoEvaluateConfig, out: Path, pipeline: object) -> None:
    """Score a saved pipeline on held-out moving-shapes captions; write OUT/metrics.json and sample files."""
    from diff_video.pipeline import evaluate

    metrics = evaluate(pipeline, config, out=out)  # type: ignore[arg-type]
    for name, value in metrics.items():
        typer.echo(f"{name:32s} {value:.4g}")


modality = Modality(name="video", description=DESCRIPTION, app=app, bench=bench)
