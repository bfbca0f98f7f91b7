"""Training an :class:`~diff_image.pipeline.core.ImagePipeline` from an :class:`~diff_image.config.ImageTrainConfig`.

Everything runs through :class:`diffcore.training.Trainer` with a :class:`diffcore.training.objectives.DiffusionObjective`
(or the autoencoder's objective for the first stage of latent diffusion). The only image-specific step is
:class:`PreparedObjective`, which turns a data batch into the network's inputs (captions -> token ids, images ->
scaled latents) before the diffusion objective sees it.
"""

from __future__ import annotations

import copy
import dataclasses
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from diffcore.device import resolve_device
from diffcore.io import write_json
from diffcore.rng import seeded
from diffcore.training import Callback, TrainConfig, Trainer, objectives
from diffcore.training.objectives import DiffusionObjective
from diffcore.training.trainer import RUN_FILES
from torch import Tensor, nn
from torch.utils.data import DataLoader

from diff_image.autoencoder import AutoencoderKL, AutoencoderObjective, fit_latent_scaling
from diff_image.config import AutoencoderConfig, ImageTrainConfig
from diff_image.models import (
    TextConditionedModel,
    TextEncoder,
    build_backbone,
    caption_vocabulary,
    resolve_model,
)
from diff_image.pipeline.core import ImagePipeline
from diff_image.pipeline.datasets import (
    DeviceBatches,
    TrainingData,
    build_training_data,
    collate,
    device_batch_loader,
    stack_images,
    tokenize_unique,
)

__all__ = [
    "CONFIG_FILE",
    "PreparedObjective",
    "build_objective",
    "objective_name",
    "resolve_config",
    "train",
    "train_autoencoder",
]

CONFIG_FILE = "train_config.json"
PIPELINE_DIR = "pipeline"
AUTOENCODER_RUN = "autoencoder_run"


def build_objective(name: str, schedule: str, **kw: Any) -> DiffusionObjective:
    """The diffcore objective called ``name``: ``eps`` / ``v`` / ``x0`` on ``schedule``, or ``flow_matching`` /
    ``rectified_flow`` on the rectified-flow path (``schedule`` ignored)."""
    if name == "eps":
        return DiffusionObjective(schedule, prediction="eps", **kw)
    if name == "v":
        return objectives.v_loss(schedule, **kw)
    if name == "x0":
        return objectives.x0_loss(schedule, **kw)
    if name == "flow_matching":
        return objectives.flow_matching(**kw)
    if name == "rectified_flow":
        return objectives.rectified_flow(**kw)
    raise ValueError(f"objective: expected eps, v, x0, flow_matching or rectified_flow, got {name!r}")


@dataclass
class PreparedObjective:
    """``objective(model, batch)`` after mapping the batch: captions -> ``input_ids`` (with ``tokenize``; batches
    that already carry ``input_ids`` pass through) and images -> latents (with ``encode``, no gradient)."""

    inner: Callable[..., Any]
    encode: Callable[[Tensor], Tensor] | None = None
    tokenize: Callable[[list[str], torch.device], Tensor] | None = None

    def __call__(
        self, model: nn.Module, batch: Mapping[str, Any], generator: torch.Generator | None = None
    ) -> Any:
        prepared = {k: v for k, v in batch.items() if k != "caption"}
        if self.tokenize is not None and "caption" in batch:
            prepared["input_ids"] = self.tokenize(list(batch["caption"]), batch["x"].device)
        if self.encode is not None:
            with torch.no_grad():
                prepared["x"] = self.encode(batch["x"])
        return self.inner(model, prepared, generator=generator)


def objective_name(pipe: ImagePipeline) -> str:
    """The :func:`build_objective` name that trains ``pipe``'s parameterisation (fine-tuning: LoRA, alignment)."""
    if pipe.prediction == "velocity":
        return "flow_matching"
    if pipe.prediction in ("eps", "v", "x0"):
        return pipe.prediction
    raise ValueError(f"pipe: fine-tuning supports eps, v, x0 and velocity models, got {pipe.prediction!r}")


def _stage(train: TrainConfig, steps: int, output_dir: Path) -> TrainConfig:
    """``train`` for the autoencoder stage of ``steps`` steps written to ``output_dir`` (the diffusion model's
    warmup cut to fit this shorter stage, which has no warmup setting of its own)."""
    return dataclasses.replace(
        train, steps=steps, warmup_steps=min(train.warmup_steps, steps - 1), output_dir=str(output_dir)
    )


def _loader(
    data: TrainingData,
    config: ImageTrainConfig,
    device: torch.device | None = None,
    tokenize: Callable[[list[str]], Tensor] | None = None,
) -> DataLoader:
    """Batches of ``data``: from the pre-rendered tensors on ``device`` when there are any (captions tokenised
    once with ``tokenize``), else a per-item DataLoader with ``config.data.num_workers`` workers."""
    if data.rendered is not None and device is not None:
        ids = tokenize_unique(data.rendered.captions, tokenize) if tokenize is not None else None
        dataset = DeviceBatches(data.rendered.images, ids, device)
        return device_batch_loader(dataset, config.batch_size)
    workers = config.data.num_workers
    return DataLoader(
        data.dataset,
        batch_size=config.batch_size,
        shuffle=True,
        drop_last=len(data.dataset) >= config.batch_size,  # type: ignore[arg-type]
        collate_fn=collate,
        num_workers=workers,
        persistent_workers=workers > 0,
        pin_memory=torch.cuda.is_available(),
    )


def train_autoencoder(
    data: TrainingData,
    config: ImageTrainConfig,
    device: torch.device,
    perceptual: Callable[[Tensor], Tensor] | None = None,
) -> AutoencoderKL:
    """Train the KL autoencoder on the images of ``data`` for ``config.autoencoder_steps`` steps (the rest of its
    optimisation is ``config.train``'s; run folder ``train.output_dir/autoencoder_run``) and fit its latent
    scaling to them (first stage of latent diffusion)."""
    ae_cfg = AutoencoderConfig(**{**vars(config.autoencoder), "in_channels": data.image_shape[0]})
    with seeded(config.train.seed):
        autoencoder = AutoencoderKL(ae_cfg)
    objective = AutoencoderObjective(ae_cfg.kl_weight, ae_cfg.perceptual_weight, perceptual)
    run = Path(config.train.output_dir) / AUTOENCODER_RUN
    trainer = Trainer(
        autoencoder, objective, _loader(data, config), _stage(config.train, config.autoencoder_steps, run)
    )
    trainer.fit()
    trained = trainer.ema_model if trainer.ema_model is not None else trainer.unwrapped_model
    trained = trained.to(device).eval()
    fit_latent_scaling(trained, stack_images(data.dataset, limit=2048).to(device))  # type: ignore[arg-type]
    return trained  # type: ignore[return-value]


def _text_encoder(config: ImageTrainConfig, data: TrainingData) -> tuple[TextEncoder, bool]:
    m = config.model
    if m.text_encoder:
        return TextEncoder.from_pretrained(m.text_encoder, freeze=True), False
    words = caption_vocabulary(data.captions)
    with seeded(config.train.seed):
        encoder = TextEncoder.from_scratch(
            words, m.text_width, m.text_layers, m.text_heads, m.text_max_length
        )
    return encoder, True


def _print_note(line: str) -> None:
    print(f"note: {line}", file=sys.stderr, flush=True)


def _refuse_previous_run(config: ImageTrainConfig) -> None:
    """A fresh run (``train.resume`` unset) must not mix with, or overwrite, a run already in its folder."""
    run = Path(config.train.output_dir)
    found = [name for name in (*RUN_FILES, PIPELINE_DIR, AUTOENCODER_RUN) if (run / name).exists()]
    if config.train.resume is None and found:
        raise ValueError(
            f"output_dir: {run} already holds a training run ({', '.join(found)}); continue it with --resume "
            "latest (train.resume='latest'), or choose another --out (train.output_dir)"
        )


def resolve_config(config: ImageTrainConfig, data: TrainingData) -> ImageTrainConfig:
    """``config`` with what :func:`~diff_image.pipeline.datasets.build_training_data` took from the data in
    place of ``auto`` / 0: the conditioning (and the ``auto`` backbone) and the image size."""
    model = resolve_model(config.model, data.conditioning)
    size = data.image_shape[-1]
    return dataclasses.replace(config, model=model, data=dataclasses.replace(config.data, image_size=size))


def train(
    config: ImageTrainConfig,
    *,
    perceptual: Callable[[Tensor], Tensor] | None = None,
    save: bool = True,
    callbacks: Sequence[Callback] = (),
    notes: Callable[[str], None] | None = None,
) -> ImagePipeline:
    """Train a pipeline as ``config`` says; the run goes to ``config.train.output_dir``: ``train_config.json``
    (the settings as trained, ``auto`` and 0 resolved, and the notes), the Trainer's logs, checkpoints and
    models, and (when ``save``) the pipeline in ``pipeline/``. A folder that already holds a run is refused
    unless ``config.train.resume`` continues it.

    Settings left to the data (``model.conditioning = "auto"``, ``model.backbone = "auto"``,
    ``data.image_size = 0``) are resolved first, each choice one line given to ``notes`` (default: printed as
    ``note: ...`` on standard error), as is any resizing of a folder's images.

    Stages: (latent only) the autoencoder and its latent scaling; then the diffusion model with
    ``config.objective``, classifier-free-guidance condition dropout and EMA (``config.train.ema_decay``; None
    turns it off). ``perceptual`` is the feature map of the autoencoder's optional perceptual loss. ``callbacks``
    go to the diffusion model's Trainer (e.g. :class:`~diff_image.pipeline.evaluation.ShapesAdherenceProbe` for a
    learning curve). Initialisation is seeded by ``config.train.seed``; the caller's global RNG is left as it was.
    """
    device = resolve_device(config.train.device)
    run = Path(config.train.output_dir)
    _refuse_previous_run(config)
    data = build_training_data(config)  # a data mistake is reported before anything is written
    config = resolve_config(config, data)
    for line in data.notes:
        (notes or _print_note)(line)
    write_json({"config": config, "notes": data.notes}, run / CONFIG_FILE)
    autoencoder = train_autoencoder(data, config, device, perceptual) if config.latent else None
    shape = autoencoder.latent_shape(data.image_shape) if autoencoder is not None else data.image_shape
    text_encoder, train_text = (None, False)
    if config.model.conditioning == "text":
        text_encoder, train_text = _text_encoder(config, data)
    width = text_encoder.width if text_encoder is not None else 0
    with seeded(config.train.seed):
        backbone = build_backbone(config.model, shape, data.num_classes, context_dim=width, pooled_dim=width)
    network: nn.Module = backbone
    null_cond: dict[str, Any] = {}
    if config.model.conditioning == "class":
        null_cond = {"y": data.num_classes}
    elif text_encoder is not None:
        network = TextConditionedModel(backbone, text_encoder, train_text_encoder=train_text)
        null_cond = {"input_ids": text_encoder.tokenize([""])[0]}
    dropout = config.cond_dropout if null_cond else 0.0
    inner = build_objective(config.objective, config.schedule, cond_dropout=dropout, null_cond=null_cond)
    objective = PreparedObjective(
        inner,
        encode=autoencoder.encode if autoencoder is not None else None,
        tokenize=text_encoder.tokenize if text_encoder is not None else None,
    )
    tokenize = text_encoder.tokenize if text_encoder is not None else None
    loader = _loader(data, config, device, tokenize)
    trainer = Trainer(network, objective, loader, config.train, callbacks=callbacks)
    trainer.fit()
    trained = copy.deepcopy(trainer.ema_model if trainer.ema_model is not None else trainer.unwrapped_model)
    trained = trained.to(device).eval()
    if isinstance(trained, TextConditionedModel):
        backbone, text_encoder = trained.backbone, trained.text_encoder  # type: ignore[assignment]
    else:
        backbone = trained  # type: ignore[assignment]
    pipe = ImagePipeline(
        backbone,
        _schedule_name(config),
        inner.prediction,
        autoencoder=autoencoder,
        text_encoder=text_encoder,
        sample_shape=shape,
        num_classes=data.num_classes if config.model.conditioning == "class" else 0,
        train_text_encoder=train_text,
    )
    pipe.card.record_training(config)
    if save:
        pipe.save_pretrained(run / PIPELINE_DIR)
    return pipe


def _schedule_name(config: ImageTrainConfig) -> str:
    return "rectified-flow" if config.objective in ("flow_matching", "rectified_flow") else config.schedule
