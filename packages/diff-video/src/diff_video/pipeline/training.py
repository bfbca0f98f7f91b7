"""Training a :class:`~diff_video.pipeline.core.VideoPipeline` from a :class:`~diff_video.config.VideoTrainConfig`.

Everything runs through :class:`diffcore.training.Trainer`. The objective is rectified flow on diffcore's path
(:func:`~diff_video.pipeline.core.flow_schedule`, coefficients from :mod:`diffcore.paths.predictions`, ``t`` from a
:mod:`diffcore.training.time_sampling` density, condition dropout by
:func:`diffcore.training.objectives.drop_conditions`) with what video adds: frames given clean through a
per-frame mask (Open-Sora), left out of the loss, and batches trained as images (1-frame clips).
"""

from __future__ import annotations

import copy
import math
import sys
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from diffcore.device import resolve_device
from diffcore.io import write_json
from diffcore.paths.predictions import PathCoefficients, from_x0_eps
from diffcore.paths.schedules import Schedule
from diffcore.rng import seeded
from diffcore.training import Trainer
from diffcore.training import time_sampling as time_sampling_mod
from diffcore.training.objectives import drop_conditions
from diffcore.training.trainer import RUN_FILES
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from diff_video.config import VideoTrainConfig
from diff_video.models import TextConditioned, TextEncoder, TextEncoderConfig, VideoDiT, VideoDiTConfig
from diff_video.pipeline.core import VideoPipeline, flow_schedule

__all__ = [
    "CONFIG_FILE",
    "PIPELINE_DIR",
    "TrainingData",
    "VideoFlowObjective",
    "build_training_data",
    "train",
]

CONFIG_FILE = "train_config.json"
PIPELINE_DIR = "pipeline"
VAE_RUN = "vae_run"


@dataclass
class VideoFlowObjective:
    """Rectified flow on clips ``x`` ``(B, C, T, H, W)`` with per-frame conditioning (Open-Sora 1.2's masking).

    ``x_t = alpha(t) x_0 + sigma(t) eps`` on ``schedule`` (rectified flow: ``(1 - t) x_0 + t eps``), the network
    predicts the velocity ``d alpha x_0 + d sigma eps`` (``eps - x_0`` unshifted). With probability
    ``frame_cond_prob`` a clip has frames given clean (``x_t = x_0`` there): its first token-frame, its first
    quarter, or its last token-frame, equally likely; the network sees them through ``frame_mask`` and the
    loss averages the squared error over the other frames only. With probability ``image_prob`` the whole batch
    is one random frame per clip (1-frame videos: joint image-video training).

    Batches are dicts ``{"x": clips, "caption": [...]}`` (captions tokenised with ``tokenize``) or ``{"x", "y"}``;
    ``encode`` maps clips to the model's space (the VAE) without gradient.
    """

    schedule: Schedule
    time_sampler: Callable[..., Tensor]
    cond_dropout: float = 0.0
    null_cond: Mapping[str, Any] = field(default_factory=dict)
    frame_cond_prob: float = 0.0
    image_prob: float = 0.0
    patch_frames: int = 1
    encode: Callable[[Tensor], Tensor] | None = None
    tokenize: Callable[[list[str], torch.device], Tensor] | None = None

    def __post_init__(self) -> None:
        for name in ("cond_dropout", "frame_cond_prob", "image_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name}: expected a probability in [0, 1], got {getattr(self, name)}")
        if self.image_prob > 0 and self.patch_frames != 1:
            raise ValueError(f"image_prob: 1-frame clips need a temporal patch of 1, got {self.patch_frames}")

    def frame_mask(
        self, b: int, frames: int, device: torch.device, generator: torch.Generator | None
    ) -> Tensor:
        """``(B, frames)`` bool: the frames given clean (whole token-frames of ``patch_frames``)."""
        tf = frames // self.patch_frames
        mask = torch.zeros((b, tf), dtype=torch.bool, device=device)
        if tf < 2 or self.frame_cond_prob <= 0:
            return mask.repeat_interleave(self.patch_frames, 1)
        use = torch.rand(b, device=device, generator=generator) < self.frame_cond_prob
        kind = torch.randint(0, 3, (b,), device=device, generator=generator)
        idx = torch.arange(tf, device=device)[None]
        first = idx < 1
        quarter = idx < max(1, tf // 4)
        last = idx == tf - 1
        chosen = torch.where((kind == 0)[:, None], first, torch.where((kind == 1)[:, None], quarter, last))
        return (chosen & use[:, None]).repeat_interleave(self.patch_frames, 1)

    def _prepare(
        self, batch: Mapping[str, Any], generator: torch.Generator | None
    ) -> tuple[Tensor, dict[str, Any]]:
        x = batch["x"]
        cond = {k: v for k, v in batch.items() if k not in ("x", "caption")}
        if self.tokenize is not None and "caption" in batch:
            cond["input_ids"] = self.tokenize(list(batch["caption"]), x.device)
        if (
            self.image_prob > 0
            and float(torch.rand((), generator=generator, device=x.device)) < self.image_prob
        ):
            j = int(torch.randint(0, x.shape[2], (), generator=generator, device=x.device))
            x = x[:, :, j : j + 1]
        if self.encode is not None:
            with torch.no_grad():
                x = self.encode(x)
        return x, cond

    def __call__(
        self, model: nn.Module, batch: Mapping[str, Any], generator: torch.Generator | None = None
    ) -> tuple[Tensor, dict[str, Tensor]]:
        x0, cond = self._prepare(batch, generator)
        b, frames = x0.shape[0], x0.shape[2]
        t = self.time_sampler(b, device=x0.device, generator=generator)
        noise = torch.randn(x0.shape, device=x0.device, dtype=x0.dtype, generator=generator)
        c = PathCoefficients.at(self.schedule, t.double(), x0.ndim, x0.dtype)
        mask = self.frame_mask(b, frames, x0.device, generator)
        keep = mask[:, None, :, None, None]
        x_t = torch.where(keep, x0, c.alpha * x0 + c.sigma * noise)
        cond = drop_conditions(cond, self.null_cond, self.cond_dropout, generator)
        out = model(x_t, t, frame_mask=mask, **cond).float()
        target = from_x0_eps(x0.float(), noise.float(), "velocity", c)
        per_frame = ((out - target) ** 2).mean(dim=(1, 3, 4))  # (B, T)
        weight = (~mask).float()
        per_sample = (per_frame * weight).sum(1) / weight.sum(1).clamp_min(1.0)
        return per_sample.mean(), {"given_frames": mask.float().mean().detach()}


@dataclass
class TrainingData:
    """What :func:`train` learns from: the dataset, the clip shape, the conditioning it allows, the vocabulary of
    its captions, example prompts, and notes on what was decided from the data."""

    dataset: Dataset
    clip_shape: tuple[int, int, int, int]
    conditioning: str
    vocabulary: list[str]
    prompts: list[str]
    num_classes: int = 0
    class_names: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    shapes: dict[str, Any] | None = None


def build_training_data(config: VideoTrainConfig) -> TrainingData:
    """The generated moving-shapes set (``data.path`` empty) or the local folder ``data.path``."""
    cond = config.model.conditioning
    if not config.data.path:
        from diff_video.data.shapes import MovingShapes, shapes_vocabulary

        s = config.data.shapes
        dataset = MovingShapes(s)
        if cond == "class":
            raise ValueError(
                "model.conditioning: the moving-shapes set has captions, not classes; use text or none"
            )
        prompts = dataset.captions(8)
        return TrainingData(
            dataset, (3, s.frames, s.height, s.width), cond, shapes_vocabulary(s), prompts, shapes=asdict(s)
        )
    from diff_video.data.folder import VideoFolder

    d = config.data
    folder = VideoFolder(
        d.path, frames=d.frames, stride=d.stride, fps=d.fps, height=d.height, width=d.width, resize=d.resize,
        decoder=d.decoder,
    )  # fmt: skip
    if cond == "class" and not folder.class_names:
        raise ValueError(f"model.conditioning: {d.path} has no class sub-folders; use text or none")
    if cond == "text" and not any(folder.captions):
        raise ValueError(f"model.conditioning: {d.path} has no captions (metadata.jsonl); use class or none")
    from diff_video.models.text import caption_vocabulary

    return TrainingData(
        folder, folder.clip_shape, cond, caption_vocabulary(folder.captions), folder.captions[:8],
        num_classes=len(folder.class_names) if cond == "class" else 0, class_names=folder.class_names,
        notes=folder.notes,
    )  # fmt: skip


def _refuse_previous_run(config: VideoTrainConfig) -> None:
    run = Path(config.train.output_dir)
    found = [name for name in (*RUN_FILES, PIPELINE_DIR, VAE_RUN) if (run / name).exists()]
    if config.train.resume is None and found:
        raise ValueError(
            f"output_dir: {run} already holds a training run ({', '.join(found)}); continue it with "
            "--set train.resume=latest, or choose another --out"
        )


def time_shift(config: VideoTrainConfig, model_shape: tuple[int, ...]) -> float:
    """``config.time_shift``, or for 0 the resolution / duration-aware shift ``max(1, sqrt(n / base))`` of the clip's
    ``n`` spacetime tokens (SD3's ``sqrt(m / n)`` rule, Esser et al. 2024, Sec. 5.3.2, over frames as well)."""
    if config.time_shift:
        return float(config.time_shift)
    tokens = math.prod(s // p for s, p in zip(model_shape[1:], config.model.patch_size))
    return max(1.0, math.sqrt(tokens / config.shift_base_tokens))


def _loader(data: TrainingData, config: VideoTrainConfig) -> DataLoader:
    workers = config.data.num_workers
    buckets = getattr(data.dataset, "buckets", None)
    if buckets is not None and len(set(buckets)) > 1:  # clips of several sizes: one size per batch
        from diff_video.data.folder import BucketBatchSampler

        sampler = BucketBatchSampler(buckets, config.batch_size, config.train.seed)
        return DataLoader(
            data.dataset, batch_sampler=sampler, num_workers=workers, persistent_workers=workers > 0
        )
    return DataLoader(
        data.dataset,
        batch_size=config.batch_size,
        shuffle=True,
        drop_last=len(data.dataset) >= config.batch_size,  # type: ignore[arg-type]
        num_workers=workers,
        persistent_workers=workers > 0,
    )


def _print_note(line: str) -> None:
    print(f"note: {line}", file=sys.stderr, flush=True)


def build_model(
    config: VideoTrainConfig, data: TrainingData, model_shape: tuple[int, ...]
) -> tuple[VideoDiT, TextEncoder | None]:
    """The VideoDiT (and the text encoder, for text conditioning) of ``config``, initialised under its seed."""
    m = config.model
    text = None
    with seeded(config.train.seed):
        if data.conditioning == "text":
            text = TextEncoder(
                TextEncoderConfig(
                    data.vocabulary, m.text_width, m.text_layers, m.text_heads, m.text_max_length
                )
            )
        dit = VideoDiT(
            VideoDiTConfig(
                input_size=tuple(model_shape[1:]),
                patch_size=m.patch_size,
                in_channels=model_shape[0],
                hidden_size=m.width,
                depth=m.depth,
                num_heads=m.heads,
                attention=m.attention,
                num_classes=data.num_classes,
                context_dim=m.text_width if text is not None else 0,
                cond_tokens=m.cond_tokens,
                gradient_checkpointing=m.gradient_checkpointing,
            )
        )
    return dit, text


def train(
    config: VideoTrainConfig, *, save: bool = True, notes: Callable[[str], None] | None = None
) -> VideoPipeline:
    """Train a pipeline as ``config`` says; the run goes to ``config.train.output_dir``: ``train_config.json``,
    the Trainer's logs and checkpoints, and (``save``) the pipeline in ``pipeline/``. A folder that already holds
    a run is refused unless ``config.train.resume`` continues it.

    Stages: (latent only) the causal VAE and its latent scaling; then the DiT (with its text encoder) by
    rectified flow (:class:`VideoFlowObjective`), with condition dropout for classifier-free guidance and EMA
    (``train.ema_decay``; None turns it off). Initialisation is seeded by ``train.seed``; the caller's global RNG is
    left as it was.
    """
    device = resolve_device(config.train.device)
    run = Path(config.train.output_dir)
    _refuse_previous_run(config)
    data = build_training_data(config)
    for line in data.notes:
        (notes or _print_note)(line)
    vae = None
    if config.vae.enabled:
        from diff_video.pipeline.vae_training import train_vae

        vae = train_vae(data, config, run / VAE_RUN, device)
    model_shape = vae.latent_shape(data.clip_shape) if vae is not None else data.clip_shape
    shift = time_shift(config, model_shape)
    write_json({"config": config, "time_shift": shift, "notes": data.notes}, run / CONFIG_FILE)
    dit, text = build_model(config, data, model_shape)
    network: nn.Module = dit if text is None else TextConditioned(dit, text)
    null_cond: dict[str, Any] = {}
    if text is not None:
        null_cond = {"input_ids": text.tokenize([""])[0]}
    elif data.num_classes:
        null_cond = {"y": data.num_classes}
    objective = VideoFlowObjective(
        flow_schedule(shift), time_sampling_mod.get(config.time_sampler),
        cond_dropout=config.cond_dropout if null_cond else 0.0, null_cond=null_cond,
        frame_cond_prob=config.frame_cond_prob, image_prob=config.image_prob,
        patch_frames=config.model.patch_size[0], encode=vae.encode if vae is not None else None,
        tokenize=text.tokenize if text is not None else None,
    )  # fmt: skip
    trainer = Trainer(network, objective, _loader(data, config), config.train)
    trainer.fit()
    trained = copy.deepcopy(trainer.ema_model if trainer.ema_model is not None else trainer.unwrapped_model)
    trained = trained.to(device).eval()
    if isinstance(trained, TextConditioned):
        dit, text = trained.backbone, trained.text_encoder  # type: ignore[assignment]
    else:
        dit = trained  # type: ignore[assignment]
    pipe = VideoPipeline(
        dit, text_encoder=text, vae=vae, time_shift=shift, clip_shape=data.clip_shape,
        num_classes=data.num_classes, class_names=data.class_names, prompts=data.prompts, shapes=data.shapes,
    )  # fmt: skip
    pipe.card.record_training(config)
    if save:
        pipe.save_pretrained(run / PIPELINE_DIR)
    return pipe


def replace_train(config: VideoTrainConfig, **train_fields: Any) -> VideoTrainConfig:
    """``config`` with fields of its ``train`` replaced."""
    return replace(config, train=replace(config.train, **train_fields))
