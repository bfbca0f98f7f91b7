"""``diffuse image train | sample | evaluate | edit | lora | control | stream | align reward|dpo|ddpo``, registered
through the entry point
``diffcore.modalities``, and the ``diffuse bench image`` benchmark.

Every command is built with :func:`diffcore.cli.options.config_command` from a dataclass of
:mod:`diff_image.config`: the shared options (``--device --seed --out --config --set --debug``, and ``--pipeline``
for commands on a saved pipeline), the settings users reach for most as named options, every default and help
line from the dataclass. Only typer, diffcore's command helpers and the configurations are imported here; the
rest is imported when a command runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from diffcore.cli.options import CommandError, config_command
from diffcore.modality import Modality

from diff_image.bench import bench
from diff_image.config import (
    ImageAlignDDPOConfig,
    ImageAlignDPOConfig,
    ImageAlignRewardConfig,
    ImageControlConfig,
    ImageEditConfig,
    ImageEvaluateConfig,
    ImageLoraConfig,
    ImageSampleConfig,
    ImageStreamConfig,
    ImageTrainConfig,
)

__all__ = ["app", "modality"]

DESCRIPTION = (
    "Image diffusion: pixel and latent, class / text / spatial conditioning, LoRA, editing, metrics."
)
PIPELINE = "diff_image.pipeline:ImagePipeline"

app = typer.Typer(no_args_is_help=True, add_completion=False, help=DESCRIPTION)


@config_command(
    app,
    "train",
    ImageTrainConfig,
    options={
        "data.dataset": "--dataset",
        "data.path": ("--data", "--data-path"),
        "data.image_size": "--image-size",
        "model.backbone": "--backbone",
        "model.conditioning": "--conditioning",
        "objective": "--objective",
        "schedule": "--schedule",
        "latent": "--latent",
        "train.steps": "--steps",
        "train.warmup_steps": "--warmup-steps",
        "batch_size": "--batch-size",
        "train.lr": "--lr",
        "train.ema_decay": "--ema-decay",
        "train.resume": "--resume",
    },
)
def train_cmd(config: ImageTrainConfig, out: Path) -> None:
    """Train a model (and, with --latent, its autoencoder first); write OUT/pipeline and OUT/train_config.json.

    Conditioning and image size default to the data's (a folder: flat -> unconditional, class sub-folders ->
    class, metadata.jsonl -> text; its images' size); each choice is printed as a note."""
    import warnings

    from diff_image.pipeline import train

    def one_line(message: Warning | str, *args: object, **kwargs: object) -> None:
        typer.echo(f"warning: {message}", err=True)  # e.g. the Trainer's undertrained-EMA warning

    with warnings.catch_warnings():
        warnings.showwarning = one_line  # type: ignore[assignment]
        pipe = train(config, notes=lambda line: typer.echo(f"note: {line}", err=True))
    kind = (
        "class-conditional"
        if pipe.num_classes
        else "text-conditioned"
        if pipe.text_encoder
        else "unconditional"
    )
    typer.echo(f"pipeline: {out / 'pipeline'} ({kind}, sample shape {pipe.sample_shape})")
    typer.echo(f"next: diffuse image sample --pipeline {out / 'pipeline'} --out {out / 'samples'}")


@config_command(
    app,
    "sample",
    ImageSampleConfig,
    pipeline=PIPELINE,
    default_out="runs/image-samples",
    options={
        "num_samples": ("--num-samples", "-n"),
        "sampler": "--sampler",
        "steps": "--steps",
        "guidance": "--guidance",
        "labels": "--label",
        "prompts": "--prompt",
        "batch_size": "--batch-size",
        "quantize": "--quantize",
    },
)
def sample_cmd(
    config: ImageSampleConfig,
    out: Path,
    pipeline: object,
    adapter: list[Path] | None = typer.Option(
        None, "--adapter", help="LoRA adapter folder(s) to load. Repeatable."
    ),
    adapter_weight: list[float] | None = typer.Option(
        None, "--adapter-weight", help="Weight per --adapter, in the same order (default 1 each). Repeatable."
    ),
) -> None:
    """Draw samples from a saved pipeline; write OUT/grid.png and one PNG per image under OUT/images/."""
    from diff_image.io import save_grid, save_images
    from diff_image.lora import load_adapters
    from diff_image.pipeline import sample

    if adapter:
        load_adapters(pipeline, adapter, list(adapter_weight) if adapter_weight else None)  # type: ignore[arg-type]
    images = sample(pipeline, config)  # type: ignore[arg-type]
    save_grid(images, out / "grid.png")
    save_images(images, out / "images")
    typer.echo(f"wrote {len(images)} images to {out}")


@config_command(
    app,
    "evaluate",
    ImageEvaluateConfig,
    pipeline=PIPELINE,
    default_out="runs/image-eval",
    options={
        "num_samples": ("--num-samples", "-n"),
        "sampler": "--sampler",
        "steps": "--steps",
        "guidance": "--guidance",
        "holdout": "--holdout",
    },
)
def evaluate_cmd(config: ImageEvaluateConfig, out: Path, pipeline: object) -> None:
    """Sample and score a saved pipeline: class accuracy, Frechet distance and its train-vs-test floor,
    precision / recall (class-conditional digits); caption adherence on one- and two-object captions
    (text-to-image shapes). Writes OUT/metrics.json and OUT/grid.png."""
    from diff_image.io import save_grid, save_metrics_json
    from diff_image.pipeline import evaluate_and_sample

    metrics, samples = evaluate_and_sample(pipeline, config)  # type: ignore[arg-type]
    save_metrics_json(metrics, out / "metrics.json")
    save_grid(samples[:100], out / "grid.png", nrow=10)
    for k, v in metrics.items():
        typer.echo(f"{k}: {v:.4f}")


@config_command(
    app,
    "edit",
    ImageEditConfig,
    pipeline=PIPELINE,
    default_out="runs/image-edit",
    options={
        "input": "--input",
        "input_b": "--input-b",
        "mask": "--mask",
        "box": "--box",
        "strength": "--strength",
        "frames": "--frames",
        "steps": "--steps",
        "guidance": "--guidance",
        "labels": "--label",
        "prompts": "--prompt",
        "resample": "--resample",
    },
)
def edit_cmd(
    config: ImageEditConfig,
    out: Path,
    pipeline: object,
    mode: str | None = typer.Argument(
        None, help="inpaint | outpaint | colorize | sdedit | interpolate (default: the configuration's mode)."
    ),
) -> None:
    """Edit images with a saved pipeline; write OUT/grid.png (inputs, then outputs) and OUT/images/."""
    import dataclasses

    import torch

    from diff_image.editing import edit
    from diff_image.io import save_grid, save_images

    if mode is not None:
        config = dataclasses.replace(config, mode=mode)  # type: ignore[arg-type]  # checked by ImageEditConfig
    inputs, result = edit(pipeline, config)  # type: ignore[arg-type]
    save_grid(torch.cat([inputs.cpu(), result.cpu()]), out / "grid.png", nrow=max(len(inputs), len(result)))
    save_images(result, out / "images")
    typer.echo(f"wrote {len(result)} edited images to {out}")


@config_command(
    app,
    "lora",
    ImageLoraConfig,
    pipeline=PIPELINE,
    default_out="runs/image-lora",
    options={
        "images": "--images",
        "concept": "--concept",
        "num_images": "--num-images",
        "label": "--label",
        "prompt": "--prompt",
        "rank": "--rank",
        "alpha": "--alpha",
        "steps": "--steps",
        "lr": "--lr",
        "num_samples": ("--num-samples", "-n"),
    },
)
def lora_cmd(config: ImageLoraConfig, out: Path, pipeline: object) -> None:
    """DreamBooth-style LoRA on a few concept images; write OUT/adapter (PEFT), OUT/base_grid.png and OUT/grid.png
    (samples without and with the adapter, same noise) and OUT/metrics.json (adapter size, concept rates)."""
    from diff_image.io import save_grid, save_metrics_json
    from diff_image.lora import run_lora

    before, after, metrics = run_lora(pipeline, config, out)  # type: ignore[arg-type]
    save_grid(before, out / "base_grid.png")
    save_grid(after, out / "grid.png")
    save_metrics_json(metrics, out / "metrics.json")
    typer.echo(" ".join(f"{k}={v}" for k, v in metrics.items()))


@config_command(
    app,
    "control",
    ImageControlConfig,
    pipeline=PIPELINE,
    default_out="runs/image-control",
    options={
        "kinds": "--kind",
        "scales": "--scale",
        "num_blocks": "--num-blocks",
        "steps": "--steps",
        "batch_size": "--batch-size",
        "lr": "--lr",
        "shapes_length": "--shapes-length",
        "cond_dropout": "--cond-dropout",
        "num_samples": ("--num-samples", "-n"),
        "sampler": "--sampler",
        "sample_steps": "--sample-steps",
        "guidance": "--guidance",
    },
)
def control_cmd(config: ImageControlConfig, out: Path, pipeline: object) -> None:
    """Train ControlNets (Zhang et al. 2023; SD3-ControlNet for MMDiT) on a frozen pipeline of RGB shapes with
    control maps from the shapes data, then sample held-out scenes' maps with and without control (same noise
    and captions).

    Writes OUT/pipeline (the base plus controlnet_<kind>/), OUT/grid.png (rows: control map | controlled sample
    | uncontrolled sample) and OUT/metrics.json with iou_control and iou_no_control: the IoU of the generated
    foreground with the scene's object pixels, averaged; control works when iou_control is clearly above
    iou_no_control.
    """
    import torch

    from diff_image.io import save_grid, save_metrics_json
    from diff_image.pipeline.control import render_control, run_control

    try:
        metrics, examples, controlled, plain = run_control(pipeline, config, out)  # type: ignore[arg-type]
    except TypeError as exc:  # a backbone ControlNets cannot copy
        raise CommandError(str(exc)) from exc
    rows = torch.stack([render_control(examples.maps, examples.kinds), controlled, plain], dim=1)
    save_grid(rows.flatten(0, 1), out / "grid.png", nrow=3)
    save_metrics_json(metrics, out / "metrics.json")
    typer.echo(
        f"iou_control={metrics['iou_control']:.4f} iou_no_control={metrics['iou_no_control']:.4f} "
        f"({metrics['num_samples']} scenes; grid, metrics and pipeline in {out})"
    )


@config_command(
    app,
    "stream",
    ImageStreamConfig,
    pipeline=PIPELINE,
    default_out="runs/image-stream",
    options={
        "mode": "--mode",
        "source": "--source",
        "num_frames": ("--num-frames", "-n"),
        "t_index_list": "--t-index",
        "num_steps": "--num-steps",
        "step_rule": "--step-rule",
        "guidance": "--guidance",
        "guidance_scale": "--guidance-scale",
        "labels": "--label",
        "prompts": "--prompt",
        "similarity_filter": "--similarity-filter",
        "control": "--control",
        "control_scale": "--control-scale",
        "cuda_graphs": "--cuda-graphs",
        "compile": "--compile",
        "fps": "--fps",
        "format": "--format",
    },
)
def stream_cmd(config: ImageStreamConfig, out: Path, pipeline: object) -> None:
    """Stream frames through a saved pipeline in real time (StreamDiffusion's stream batch, residual CFG and
    similarity filter; diffcore.streaming): image-to-image from a folder of frames, a video file (needs
    diff-video) or a synthetic moving scene, or text-to-image from noise. A pipeline with ControlNets streams with
    them (--control KIND, --control-scale), each frame's control map read from the input frame. Writes
    OUT/stream.mp4 (or .gif without PyAV), OUT/input.* for image-to-image, and OUT/metrics.json (frames, fps,
    skipped frames)."""
    from diff_image.io import save_metrics_json, save_video
    from diff_image.pipeline.streaming import stream_frames

    try:
        outputs, inputs, stats = stream_frames(pipeline, config)  # type: ignore[arg-type]
    except (FileNotFoundError, ImportError, ValueError) as exc:
        raise CommandError(str(exc)) from exc
    video = save_video(outputs, out / "stream", fps=config.fps, format=config.format)
    if inputs is not None:
        save_video(inputs, out / "input", fps=config.fps, format=config.format)
    save_metrics_json({k: v for k, v in stats.items() if isinstance(v, (int, float))}, out / "metrics.json")
    typer.echo(
        f"streamed {stats['frames']} frames at {stats['fps']:.1f} fps ({stats['steps']} step(s), "
        f"{stats['skipped']} skipped by the filter); wrote {video}"
    )


align_app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help="Alignment: oracle-labelled pairs and a reward model, Diffusion-DPO, DDPO (text-to-image shapes).",
)
app.add_typer(align_app, name="align")


@config_command(
    align_app,
    "reward",
    ImageAlignRewardConfig,
    pipeline=PIPELINE,
    default_out="runs/image-align-reward",
    options={
        "num_captions": "--num-captions",
        "train_steps": "--train-steps",
        "steps": "--steps",
        "guidance": "--guidance",
        "batch_size": "--batch-size",
    },
)
def align_reward_cmd(config: ImageAlignRewardConfig, out: Path, pipeline: object) -> None:
    """Sample each caption twice, label the pairs with the caption-adherence oracle (the sample that follows the
    caption wins), train a Bradley-Terry reward model on them; write OUT/pairs, OUT/reward and OUT/metrics.json
    (pair counts, the reward model's accuracy on held-out pairs)."""
    from diff_image.align import run_reward
    from diff_image.io import save_metrics_json

    _, metrics = run_reward(pipeline, config, out)  # type: ignore[arg-type]
    save_metrics_json(metrics, out / "metrics.json")
    typer.echo(" ".join(f"{k}={v:.4g}" for k, v in metrics.items()))


@config_command(
    align_app,
    "dpo",
    ImageAlignDPOConfig,
    pipeline=PIPELINE,
    options={
        "pairs": "--pairs",
        "num_captions": "--num-captions",
        "beta": "--beta",
        "train.steps": "--train-steps",
        "batch_size": "--batch-size",
        "train.lr": "--lr",
        "eval_captions": "--eval-captions",
    },
)
def align_dpo_cmd(config: ImageAlignDPOConfig, out: Path, pipeline: object) -> None:
    """Diffusion-DPO (Wallace et al. 2023) on oracle-labelled pairs (--pairs, or fresh ones); write OUT/pipeline
    (the aligned pipeline) and OUT/metrics.json (adherence before and after, win rate against the reference,
    Frechet distance and diversity)."""
    from diff_image.align import alignment_metrics, run_dpo
    from diff_image.io import save_metrics_json

    aligned, reference, info = run_dpo(pipeline, config)  # type: ignore[arg-type]
    aligned.save_pretrained(out / "pipeline")
    metrics = {**info, **alignment_metrics(aligned, reference, config.eval_captions, config.sampler, config.steps,
                                            config.guidance, config.train.seed)}  # fmt: skip
    save_metrics_json(metrics, out / "metrics.json")
    typer.echo(" ".join(f"{k}={v:.4g}" for k, v in metrics.items()))


@config_command(
    align_app,
    "ddpo",
    ImageAlignDDPOConfig,
    pipeline=PIPELINE,
    default_out="runs/image-align-ddpo",
    options={
        "reward": "--reward",
        "iterations": "--iterations",
        "steps": "--steps",
        "lr": "--lr",
        "guidance": "--guidance",
        "eval_captions": "--eval-captions",
    },
)
def align_ddpo_cmd(config: ImageAlignDDPOConfig, out: Path, pipeline: object) -> None:
    """DDPO (Black et al. 2023) against a learned reward model (--reward, written by ``align reward``); write
    OUT/pipeline and OUT/metrics.json (reward, adherence, win rate, Frechet distance and diversity before and
    after)."""
    from diffcore.device import resolve_device

    from diff_image.align import alignment_metrics, load_reward, run_ddpo
    from diff_image.io import save_metrics_json

    if not config.reward:
        raise CommandError(
            "--reward: expected the folder of a reward model (diffuse image align reward writes OUT/reward)"
        )
    reward = load_reward(config.reward, resolve_device(config.device))
    aligned, reference, info = run_ddpo(pipeline, reward, config)  # type: ignore[arg-type]
    aligned.save_pretrained(out / "pipeline")
    metrics = {**info, **alignment_metrics(aligned, reference, config.eval_captions, config.sampler, config.steps,
                                            config.guidance, config.seed, reward=reward)}  # fmt: skip
    save_metrics_json(metrics, out / "metrics.json")
    typer.echo(" ".join(f"{k}={v:.4g}" for k, v in metrics.items()))


def _nodes() -> list[Any]:
    from diff_image.workflow_nodes import image_nodes

    return image_nodes()


modality = Modality(name="image", description=DESCRIPTION, app=app, bench=bench, nodes=_nodes)
