"""``diffuse image train | sample | edit | evaluate | lora | control`` and the ``diffuse bench image`` benchmark.

Every command takes its settings from a dataclass (:mod:`diff_image.config`): the defaults, then a YAML / TOML
file (``--config``), then ``--set key=value`` overrides (dotted keys for nested settings), then the named
options below (highest priority). Registered with ``diffuse`` through the entry point ``diffcore.modalities``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import typer
from diffcore.modality import Modality

from diff_image.bench import bench
from diff_image.config import (
    ControlImageConfig,
    LoraImageConfig,
    SampleImageConfig,
    TrainImageConfig,
    apply_overrides,
    load_config,
)
from diff_image.io import read_png, read_pngs, save_grid, save_images, save_metrics_json

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help="Image diffusion: pixel and latent, class / text / spatial conditioning, LoRA, editing, metrics.",
)

CONFIG_HELP = "YAML or TOML file with settings: a 'train' / 'sample' / 'lora' table, or top-level keys."
SET_HELP = (
    "Override one setting, 'key=value' (YAML value; dotted keys for nested, e.g. model.depth=6). Repeatable."
)


def _given(**options: Any) -> dict[str, Any]:
    """The named options the user actually set (typer default None means "not given")."""
    return {k: v for k, v in options.items() if v is not None}


def _load(cls: type, config: Path | None, sets: list[str] | None, section: str, named: dict[str, Any]) -> Any:
    """Defaults, then the file's ``section``, then ``--set`` overrides, then the named options."""
    try:
        cfg = load_config(cls, config, overrides=list(sets or []), section=section)
        return apply_overrides(cfg, named) if named else cfg
    except (ValueError, TypeError, FileNotFoundError) as exc:
        raise typer.BadParameter(str(exc)) from exc


def _pipeline(path: Path, device: str) -> Any:
    from diff_image.pipeline import ImagePipeline, resolve_device

    try:
        return ImagePipeline.from_pretrained(path, device=resolve_device(device))
    except FileNotFoundError as exc:
        raise typer.BadParameter(str(exc), param_hint="--pipeline") from exc


@app.command("train")
def train_cmd(
    config: Path = typer.Option(None, "--config", help=CONFIG_HELP),
    sets: list[str] = typer.Option(None, "--set", help=SET_HELP),
    out: str = typer.Option(
        None, "--out", help="Run folder (output_dir); the pipeline goes to OUT/pipeline."
    ),
    dataset: str = typer.Option(None, help="digits | shapes | folder (default digits)."),
    data_path: str = typer.Option(None, help="Image folder for --dataset folder."),
    image_size: int = typer.Option(None, help="Image side in pixels (digits: 8, 16, 32; default 8)."),
    backbone: str = typer.Option(None, help="dit | unet | mmdit (default dit)."),
    conditioning: str = typer.Option(None, help="none | class | text (default class)."),
    objective: str = typer.Option(None, help="eps | v | x0 | flow_matching | rectified_flow (default v)."),
    schedule: str = typer.Option(None, help="diffcore schedule for eps/v/x0 (default vp-cosine)."),
    latent: bool = typer.Option(
        None, "--latent/--pixel", help="Latent diffusion with a KL autoencoder, or pixels."
    ),
    steps: int = typer.Option(None, help="Optimizer steps (default 2000)."),
    batch_size: int = typer.Option(None, help="Batch size (default 128)."),
    lr: float = typer.Option(None, help="Peak learning rate (default 1e-3)."),
    device: str = typer.Option(None, help="cpu | cuda | auto (default auto)."),
    seed: int = typer.Option(None, help="Random seed (default 0)."),
) -> None:
    """Train a model (and, with --latent, its autoencoder first); write OUT/pipeline and OUT/train_config.json."""
    from diff_image.pipeline import train

    named = _given(output_dir=out, dataset=dataset, data_path=data_path, image_size=image_size, objective=objective,
                   schedule=schedule, latent=latent, steps=steps, batch_size=batch_size, lr=lr, device=device, seed=seed)  # fmt: skip
    model = _given(backbone=backbone, conditioning=conditioning)
    if model:
        named["model"] = model
    cfg: TrainImageConfig = _load(TrainImageConfig, config, sets, "train", named)
    pipe = train(cfg)
    save_metrics_json({"config": _plain(cfg)}, Path(cfg.output_dir) / "train_config.json")
    typer.echo(f"pipeline: {Path(cfg.output_dir) / 'pipeline'} (sample shape {pipe.sample_shape})")


def _plain(cfg: Any) -> Any:
    import dataclasses

    return dataclasses.asdict(cfg)


@app.command("sample")
def sample_cmd(
    pipeline: Path = typer.Option(..., "--pipeline", help="A saved pipeline folder (OUT/pipeline of train)."),
    out: Path = typer.Option(
        Path("runs/image-samples"), "--out", help="Folder for grid.png and images/*.png."
    ),
    config: Path = typer.Option(None, "--config", help=CONFIG_HELP),
    sets: list[str] = typer.Option(None, "--set", help=SET_HELP),
    num_samples: int = typer.Option(None, "-n", "--num-samples", help="Images to draw (default 64)."),
    sampler: str = typer.Option(None, help="Any diffcore sampler name (default dpmpp_2m)."),
    steps: int = typer.Option(None, help="Sampler steps (default 20)."),
    guidance: float = typer.Option(None, help="Classifier-free guidance scale, 1 = none (default 2)."),
    label: list[int] = typer.Option(None, "--label", help="Class label(s) to cycle through. Repeatable."),
    prompt: list[str] = typer.Option(None, "--prompt", help="Caption(s) to cycle through. Repeatable."),
    adapter: list[Path] = typer.Option(None, "--adapter", help="LoRA adapter folder(s) to load. Repeatable."),
    adapter_weight: list[float] = typer.Option(
        None, "--adapter-weight", help="Weight per --adapter (default 1)."
    ),
    seed: int = typer.Option(None, help="Noise seed (default 0)."),
    device: str = typer.Option(None, help="cpu | cuda | auto."),
) -> None:
    """Draw samples; write OUT/grid.png and one PNG per image under OUT/images/."""
    named = _given(num_samples=num_samples, sampler=sampler, steps=steps, guidance=guidance, seed=seed, device=device,
                   labels=list(label) if label else None, prompts=list(prompt) if prompt else None)  # fmt: skip
    cfg: SampleImageConfig = _load(SampleImageConfig, config, sets, "sample", named)
    pipe = _pipeline(pipeline, cfg.device)
    if adapter:
        from diff_image.lora import load_adapters

        load_adapters(pipe, adapter, list(adapter_weight) if adapter_weight else None)
    gen = torch.Generator(device=pipe.device).manual_seed(cfg.seed)
    try:
        images = pipe.sample(
            cfg.num_samples, sampler=cfg.sampler, steps=cfg.steps, guidance=cfg.guidance,
            y=list(cfg.labels) or None, prompt=list(cfg.prompts) or None, generator=gen, batch_size=cfg.batch_size,
        )  # fmt: skip
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    save_grid(images, out / "grid.png")
    save_images(images, out / "images")
    typer.echo(f"wrote {len(images)} images to {out}")


def _read_images(path: Path) -> torch.Tensor:
    return read_pngs(path) if path.is_dir() else read_png(path).unsqueeze(0)


def _parse_box(box: str) -> tuple[int, int, int, int]:
    try:
        x0, y0, x1, y1 = (int(v) for v in box.split(","))
    except ValueError as exc:
        raise typer.BadParameter(f"expected 'x0,y0,x1,y1', got {box!r}", param_hint="--box") from exc
    return x0, y0, x1, y1


@app.command("edit")
def edit_cmd(
    mode: str = typer.Argument(..., help="inpaint | outpaint | colorize | sdedit | interpolate"),
    pipeline: Path = typer.Option(..., "--pipeline", help="A saved pipeline folder."),
    image: Path = typer.Option(..., "--input", help="Input PNG, or a folder of PNGs (a batch)."),
    image_b: Path = typer.Option(None, "--input-b", help="interpolate: the second image."),
    mask: Path = typer.Option(None, "--mask", help="inpaint: PNG mask, white = keep, black = generate."),
    box: str = typer.Option(None, "--box", help="x0,y0,x1,y1: inpaint regenerates it; outpaint keeps it."),
    strength: float = typer.Option(0.5, help="sdedit: noise level t0 in [0, 1] (0 keeps the input)."),
    frames: int = typer.Option(8, help="interpolate: number of frames."),
    steps: int = typer.Option(50, help="Sampler steps."),
    guidance: float = typer.Option(1.0, help="Classifier-free guidance scale (1 = none)."),
    label: list[int] = typer.Option(None, "--label", help="Class label(s) of the edit. Repeatable."),
    prompt: list[str] = typer.Option(None, "--prompt", help="Caption(s) of the edit. Repeatable."),
    resample: int = typer.Option(1, help="inpaint/outpaint/colorize: RePaint resampling jumps per step."),
    out: Path = typer.Option(Path("runs/image-edit"), "--out", help="Folder for grid.png and images/*.png."),
    seed: int = typer.Option(0, help="Noise seed."),
    device: str = typer.Option("auto", help="cpu | cuda | auto."),
) -> None:
    """Edit images with a trained pipeline; write OUT/grid.png (inputs then outputs) and OUT/images/."""
    from diff_image import editing
    from diff_image.editing import box_mask

    pipe = _pipeline(pipeline, device)
    x = _read_images(image).to(pipe.device)
    gen = torch.Generator(device=pipe.device).manual_seed(seed)
    cond: dict[str, Any] = {"y": list(label) if label else None, "prompt": list(prompt) if prompt else None}
    try:
        if mode in ("inpaint", "outpaint"):
            if mask is not None:
                m = (read_png(mask, mode="L") > 0).float().unsqueeze(0)
            elif box is not None:
                m = box_mask(tuple(x.shape[2:]), _parse_box(box))  # type: ignore[arg-type]
                m = 1 - m if mode == "inpaint" else m
            else:
                raise typer.BadParameter("inpaint/outpaint need --mask or --box")
            result = editing.inpaint(
                pipe, x, m, steps=steps, guidance=guidance, resample=resample, generator=gen, **cond
            )
        elif mode == "colorize":
            result = editing.colorize(pipe, x.mean(1, keepdim=True), steps=steps, guidance=guidance,
                                      resample=resample, generator=gen, **cond)  # fmt: skip
        elif mode == "sdedit":
            result = editing.sdedit(pipe, x, strength, steps=steps, guidance=guidance, generator=gen, **cond)
        elif mode == "interpolate":
            if image_b is None:
                raise typer.BadParameter("interpolate needs --input-b")
            b = _read_images(image_b).to(pipe.device)
            result = editing.interpolate(pipe, x[0], b[0], num=frames, steps=steps, **cond)
        else:
            raise typer.BadParameter(
                f"expected inpaint, outpaint, colorize, sdedit or interpolate, got {mode!r}"
            )
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    save_grid(torch.cat([x.cpu(), result.cpu()]), out / "grid.png", nrow=max(len(x), len(result)))
    save_images(result, out / "images")
    typer.echo(f"wrote {len(result)} edited images to {out}")


@app.command("evaluate")
def evaluate_cmd(
    pipeline: Path = typer.Option(
        ..., "--pipeline", help="A saved digits (class) or shapes (text) pipeline."
    ),
    out: Path = typer.Option(Path("runs/image-eval"), "--out", help="Folder for metrics.json and grid.png."),
    num_samples: int = typer.Option(
        1000, help="digits: samples; shapes: captions per kind (one / two objects)."
    ),
    sampler: str = typer.Option("dpmpp_2m", help="Any diffcore sampler name."),
    steps: int = typer.Option(20, help="Sampler steps."),
    guidance: float = typer.Option(2.0, help="Classifier-free guidance scale."),
    seed: int = typer.Option(0, help="Noise seed."),
    device: str = typer.Option("auto", help="cpu | cuda | auto."),
) -> None:
    """Sample and score: class accuracy, Frechet distance and its train-vs-test floor, precision/recall
    (digits); caption adherence on one- and two-object captions (shapes). Writes OUT/metrics.json."""
    from diff_image.pipeline import evaluate_digits, evaluate_shapes

    pipe = _pipeline(pipeline, device)
    if pipe.num_classes:
        metrics, samples, _ = evaluate_digits(pipe, num_samples, sampler, steps, guidance, seed)
    elif pipe.text_encoder is not None:
        metrics, samples, _ = evaluate_shapes(pipe, num_samples, sampler, steps, guidance, seed)
    else:
        raise typer.BadParameter(
            "evaluate needs a class-conditional digits or a text-conditioned shapes pipeline"
        )
    save_metrics_json(metrics, out / "metrics.json")
    save_grid(samples[:100], out / "grid.png", nrow=10)
    for k, v in metrics.items():
        typer.echo(f"{k}: {v:.4f}" if isinstance(v, float) else f"{k}: {v}")


@app.command("lora")
def lora_cmd(
    pipeline: Path = typer.Option(..., "--pipeline", help="The base pipeline folder."),
    out: Path = typer.Option(
        Path("runs/image-lora"), "--out", help="Folder: adapter/, grid.png, metrics.json."
    ),
    config: Path = typer.Option(None, "--config", help=CONFIG_HELP),
    sets: list[str] = typer.Option(None, "--set", help=SET_HELP),
    images: str = typer.Option(
        None, help="Folder of concept PNGs (default: generated shapes holding --concept)."
    ),
    concept: str = typer.Option(None, help="Shapes concept: a colour, a shape or both (default 'red')."),
    num_images: int = typer.Option(None, help="Concept images to generate (default 8)."),
    label: int = typer.Option(None, help="Class label of the concept images (class models; default 0)."),
    prompt: str = typer.Option(
        None, help="Caption of the concept images (text models; default the concept)."
    ),
    rank: int = typer.Option(None, help="LoRA rank (default 8)."),
    alpha: float = typer.Option(None, help="LoRA alpha; the update is scaled by alpha / rank (default 8)."),
    steps: int = typer.Option(None, help="Fine-tuning steps (default 300)."),
    lr: float = typer.Option(None, help="Learning rate (default 1e-3)."),
    num_samples: int = typer.Option(32, help="Samples drawn with and without the adapter."),
    device: str = typer.Option(None, help="cpu | cuda | auto."),
) -> None:
    """DreamBooth-style LoRA on a few concept images; write OUT/adapter (PEFT), grids and the concept rate."""
    from diff_image.lora import concept_images, concept_rate, finetune_lora

    named = _given(images=images, concept=concept, num_images=num_images, label=label, prompt=prompt, rank=rank,
                   alpha=alpha, steps=steps, lr=lr, device=device)  # fmt: skip
    cfg: LoraImageConfig = _load(LoraImageConfig, config, sets, "lora", named)
    pipe = _pipeline(pipeline, cfg.device)
    if cfg.images:
        x = read_pngs(cfg.images)
    else:
        x, _ = concept_images(cfg.concept, cfg.num_images, image_size=pipe.image_shape[-1])
    gen = torch.Generator(device=pipe.device).manual_seed(cfg.seed)
    y = [cfg.label] if pipe.num_classes else None
    p = [cfg.prompt or cfg.concept] if pipe.text_encoder is not None else None
    before = pipe.sample(num_samples, y=y, prompt=p, generator=gen)
    finetune_lora(pipe, x, cfg, out)
    gen.manual_seed(cfg.seed)
    after = pipe.sample(num_samples, y=y, prompt=p, generator=gen)
    save_grid(before, out / "base_grid.png")
    save_grid(after, out / "grid.png")
    metrics: dict[str, Any] = {
        "adapter_bytes": (out / "adapter" / "adapter_model.safetensors").stat().st_size
    }
    if pipe.image_shape[0] == 3 and not cfg.images:
        metrics.update(
            concept_rate_base=concept_rate(before, cfg.concept),
            concept_rate_lora=concept_rate(after, cfg.concept),
        )
    save_metrics_json(metrics, out / "metrics.json")
    typer.echo(" ".join(f"{k}={v}" for k, v in metrics.items()))


@app.command("control")
def control_cmd(
    pipeline: Path = typer.Option(
        ...,
        "--pipeline",
        help="A saved pipeline trained on RGB shapes (U-Net, DiT or text MMDiT); stays frozen.",
    ),
    out: Path = typer.Option(
        Path("runs/image-control"),
        "--out",
        help="Folder: pipeline/ (the base plus controlnet_<kind>/), grid.png, metrics.json.",
    ),
    config: Path = typer.Option(None, "--config", help=CONFIG_HELP.replace("'lora'", "'control'")),
    sets: list[str] = typer.Option(None, "--set", help=SET_HELP),
    kind: list[str] = typer.Option(
        None,
        "--kind",
        help="Control input: edges (outlines, 1 ch) | segmentation (one-hot shape classes, 5 ch) | boxes "
        "(filled boxes per shape, 4 ch). Repeatable: one ControlNet per kind, residuals summed "
        "(default segmentation).",
    ),
    scale: list[float] = typer.Option(
        None,
        "--scale",
        help="Strength per --kind at sampling, in the same order (default 1 each). Repeatable.",
    ),
    num_blocks: int = typer.Option(
        None,
        help="DiT / MMDiT blocks each ControlNet copies; 0 = half the depth (default 0). U-Net: its encoder.",
    ),
    steps: int = typer.Option(
        None, help="ControlNet training steps (default 1000); 0 evaluates the ControlNets --pipeline holds."
    ),
    batch_size: int = typer.Option(None, help="Training batch size (default 64)."),
    lr: float = typer.Option(None, help="Learning rate of the ControlNets (default 1e-4)."),
    shapes_length: int = typer.Option(None, help="Generated training scenes (default 20000)."),
    cond_dropout: float = typer.Option(
        None, help="Text models: probability of an empty caption in training (default 0.1)."
    ),
    num_samples: int = typer.Option(
        None, "-n", "--num-samples", help="Held-out scenes sampled with and without control (default 64)."
    ),
    sampler: str = typer.Option(None, help="Any diffcore sampler name (default dpmpp_2m)."),
    sample_steps: int = typer.Option(None, help="Sampler steps (default 20)."),
    guidance: float = typer.Option(
        None, help="Classifier-free guidance scale on the caption, 1 = none (default 1)."
    ),
    seed: int = typer.Option(None, help="Seed of training and of the sampling noise (default 0)."),
    device: str = typer.Option(None, help="cpu | cuda | auto (default auto)."),
) -> None:
    """Train ControlNets (Zhang et al. 2023; SD3-ControlNet for MMDiT) on a frozen pipeline with control maps
    from the shapes data, then sample held-out scenes' maps with and without control (same noise and captions).

    Writes OUT/pipeline, OUT/grid.png (rows: control map | controlled sample | uncontrolled sample) and
    OUT/metrics.json with iou_control and iou_no_control: the IoU of the generated foreground with the
    scene's object pixels, averaged; control works when iou_control is clearly above iou_no_control.
    """
    from diff_image.pipeline.control import evaluate_control, render_control, train_controlnets

    named = _given(kinds=list(kind) if kind else None, scales=list(scale) if scale else None, num_blocks=num_blocks,
                   steps=steps, batch_size=batch_size, lr=lr, shapes_length=shapes_length,
                   cond_dropout=cond_dropout, num_samples=num_samples, sampler=sampler, sample_steps=sample_steps,
                   guidance=guidance, seed=seed, device=device)  # fmt: skip
    cfg: ControlImageConfig = _load(ControlImageConfig, config, sets, "control", named)
    pipe = _pipeline(pipeline, cfg.device)
    if pipe.image_shape[0] != 3:
        raise typer.BadParameter(
            f"expected a pipeline of RGB images (the shapes data), got {pipe.image_shape}",
            param_hint="--pipeline",
        )
    try:
        if cfg.steps > 0:
            train_controlnets(pipe, cfg.kinds, cfg.steps, out / "control_run", batch_size=cfg.batch_size,
                              lr=cfg.lr, shapes_length=cfg.shapes_length, seed=cfg.seed,
                              num_blocks=cfg.num_blocks or None, cond_dropout=cfg.cond_dropout)  # fmt: skip
            pipe.save_pretrained(out / "pipeline")
        elif list(pipe.controlnets) != list(cfg.kinds):
            raise typer.BadParameter(
                f"--steps 0 evaluates the pipeline's ControlNets {list(pipe.controlnets)}, but --kind asks for "
                f"{list(cfg.kinds)}"
            )
        metrics, examples, controlled, plain = evaluate_control(
            pipe,
            cfg.num_samples,
            cfg.sampler,
            cfg.sample_steps,
            cfg.guidance,
            cfg.seed,
            list(cfg.scales) or None,
        )
    except (ValueError, TypeError) as exc:
        raise typer.BadParameter(str(exc)) from exc
    rows = torch.stack([render_control(examples.maps, examples.kinds), controlled, plain], dim=1)
    save_grid(rows.flatten(0, 1), out / "grid.png", nrow=3)
    save_metrics_json(metrics, out / "metrics.json")
    typer.echo(
        f"iou_control={metrics['iou_control']:.4f} iou_no_control={metrics['iou_no_control']:.4f} "
        f"({metrics['num_samples']} scenes; grid, metrics and pipeline in {out})"
    )


modality = Modality(
    name="image",
    description="Image diffusion: pixel and latent, class / text / spatial conditioning, LoRA, editing, metrics.",
    app=app,
    bench=bench,
)
