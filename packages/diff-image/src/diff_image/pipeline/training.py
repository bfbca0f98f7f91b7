"""Training an :class:`~diff_image.pipeline.core.ImagePipeline` from a :class:`~diff_image.config.TrainImageConfig`.

Everything runs through :class:`diffcore.training.Trainer` with a :class:`diffcore.training.objectives.DiffusionObjective`
(or the autoencoder's objective for the first stage of latent diffusion). The only image-specific step is
:class:`PreparedObjective`, which turns a data batch into the network's inputs (captions -> token ids, images ->
scaled latents) before the diffusion objective sees it.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from diffcore.training import Callback, TrainConfig, Trainer, objectives
from diffcore.training.objectives import DiffusionObjective
from torch import Tensor, nn
from torch.utils.data import DataLoader

from diff_image.autoencoder import AutoencoderKL, AutoencoderObjective, fit_latent_scaling
from diff_image.config import AutoencoderConfig, TrainImageConfig
from diff_image.models import TextConditionedModel, TextEncoder, build_backbone, caption_vocabulary
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

__all__ = ["PreparedObjective", "build_objective", "resolve_device", "train", "train_autoencoder"]


def resolve_device(device: str) -> str:
    """``"auto"`` -> ``"cuda"`` when available, else ``"cpu"``; other names pass through."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device: {device!r} requested but no CUDA device is available")
    return device


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


def _train_config(
    config: TrainImageConfig, steps: int, output_dir: Path, device: str, **kw: Any
) -> TrainConfig:
    return TrainConfig(
        steps=steps,
        lr=config.lr,
        warmup_steps=min(config.warmup_steps, steps - 1),
        lr_schedule="cosine",
        min_lr_ratio=0.1,
        ema_decay=config.ema_decay,
        max_grad_norm=config.max_grad_norm,
        mixed_precision=config.mixed_precision,
        log_every=max(1, min(100, steps // 10)),
        checkpoint_every=None,
        keep_last=1,
        output_dir=str(output_dir),
        seed=config.seed,
        progress_bar=False,
        tensorboard=False,
        device="cpu" if device == "cpu" else "auto",
        **kw,
    )


def _loader(
    data: TrainingData,
    config: TrainImageConfig,
    device: str | None = None,
    tokenize: Callable[[list[str]], Tensor] | None = None,
) -> DataLoader:
    """Batches of ``data``: from the pre-rendered tensors on ``device`` when there are any (captions tokenised
    once with ``tokenize``), else a per-item DataLoader with ``config.num_workers`` workers."""
    if data.rendered is not None and device is not None:
        ids = tokenize_unique(data.rendered.captions, tokenize) if tokenize is not None else None
        dataset = DeviceBatches(data.rendered.images, ids, device)
        return device_batch_loader(dataset, config.batch_size)
    return DataLoader(
        data.dataset,
        batch_size=config.batch_size,
        shuffle=True,
        drop_last=len(data.dataset) >= config.batch_size,  # type: ignore[arg-type]
        collate_fn=collate,
        num_workers=config.num_workers,
        persistent_workers=config.num_workers > 0,
        pin_memory=torch.cuda.is_available(),
    )


def train_autoencoder(
    data: TrainingData,
    config: TrainImageConfig,
    device: str,
    perceptual: Callable[[Tensor], Tensor] | None = None,
) -> AutoencoderKL:
    """Train the KL autoencoder on the images of ``data`` and fit its latent scaling to them (first stage)."""
    ae_cfg = AutoencoderConfig(**{**vars(config.autoencoder), "in_channels": data.image_shape[0]})
    torch.manual_seed(config.seed)
    autoencoder = AutoencoderKL(ae_cfg)
    objective = AutoencoderObjective(ae_cfg.kl_weight, ae_cfg.perceptual_weight, perceptual)
    tc = _train_config(config, config.autoencoder_steps, Path(config.output_dir) / "autoencoder_run", device)
    trainer = Trainer(autoencoder, objective, _loader(data, config), tc)
    trainer.fit()
    trained = trainer.ema_model if trainer.ema_model is not None else trainer.unwrapped_model
    trained = trained.to(device).eval()
    fit_latent_scaling(trained, stack_images(data.dataset, limit=2048).to(device))  # type: ignore[arg-type]
    return trained  # type: ignore[return-value]


def _text_encoder(config: TrainImageConfig, data: TrainingData) -> tuple[TextEncoder, bool]:
    m = config.model
    if m.text_encoder:
        return TextEncoder.from_pretrained(m.text_encoder, freeze=True), False
    words = caption_vocabulary(data.captions)
    return TextEncoder.from_scratch(words, m.text_width, m.text_layers, m.text_heads, m.text_max_length), True


def train(
    config: TrainImageConfig,
    perceptual: Callable[[Tensor], Tensor] | None = None,
    save: bool = True,
    callbacks: Sequence[Callback] = (),
) -> ImagePipeline:
    """Train a pipeline as ``config`` says; save it to ``config.output_dir/pipeline`` when ``save``.

    Stages: (latent only) the autoencoder and its latent scaling; then the diffusion model with
    ``config.objective``, classifier-free-guidance condition dropout and EMA. ``perceptual`` is the feature
    map of the autoencoder's optional perceptual loss. ``callbacks`` go to the diffusion model's Trainer (e.g.
    :class:`~diff_image.pipeline.evaluate.ShapesAdherenceProbe` for a learning curve).
    """
    device = resolve_device(config.device)
    data = build_training_data(config)
    autoencoder = train_autoencoder(data, config, device, perceptual) if config.latent else None
    shape = autoencoder.latent_shape(data.image_shape) if autoencoder is not None else data.image_shape
    text_encoder, train_text = (None, False)
    if config.model.conditioning == "text":
        text_encoder, train_text = _text_encoder(config, data)
    torch.manual_seed(config.seed)
    width = text_encoder.width if text_encoder is not None else 0
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
    tc = _train_config(config, config.steps, Path(config.output_dir), device)
    tokenize = text_encoder.tokenize if text_encoder is not None else None
    trainer = Trainer(network, objective, _loader(data, config, device, tokenize), tc, callbacks=callbacks)
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
    if save:
        pipe.save_pretrained(Path(config.output_dir) / "pipeline")
    return pipe


def _schedule_name(config: TrainImageConfig) -> str:
    return "rectified-flow" if config.objective in ("flow_matching", "rectified_flow") else config.schedule
