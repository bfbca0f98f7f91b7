"""Training a :class:`~diff_3d.pipeline.core.SplatPipeline` from a :class:`~diff_3d.config.SplatTrainConfig`.

Two stages, each a :class:`diffcore.training.Trainer` run (progress, checkpoints, ``train.resume``):

1. the autoencoder (``OUT/autoencoder/``): DiffGS's Gaussian functions or L3DG's voxel VAE on the splat sets,
   ``autoencoder_steps`` steps (EMA off), then its latent scale fitted to the training latents; a finished stage
   writes ``OUT/autoencoder/done.json`` and is loaded, not retrained, when the run is resumed;
2. the latent denoiser (``OUT/``): rectified flow (:func:`diffcore.training.objectives.rectified_flow`: velocity
   prediction, ``t = 0`` data) on the posterior means of the training objects, with condition dropout for
   classifier-free guidance and EMA (``train.ema_decay``).

The pipeline is written to ``OUT/pipeline``.
"""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import Any

import torch
from diffcore.device import resolve_device
from diffcore.io import write_json
from diffcore.pretrained import load_pretrained
from diffcore.rng import seeded
from diffcore.training import TrainConfig, Trainer
from diffcore.training.objectives import rectified_flow
from diffcore.training.trainer import CHECKPOINT_DIR, RUN_FILES
from torch import nn
from torch.utils.data import DataLoader

from diff_3d.config import SplatTrainConfig
from diff_3d.models import DiffGSAutoencoder, DiffGSConfig, L3DGConfig, LatentDiT, LatentDiTConfig, VoxelVAE
from diff_3d.models.denoiser import split_words
from diff_3d.pipeline.core import SplatPipeline
from diff_3d.pipeline.data import SplatSet, TensorDictDataset, build_training_set

__all__ = ["AutoencoderObjective", "build_autoencoder", "build_denoiser", "train"]

AUTOENCODER_RUN = "autoencoder"
AUTOENCODER_DONE = "done.json"
AUTOENCODER_MODEL = "fitted"
PIPELINE_DIR = "pipeline"
CONFIG_FILE = "train_config.json"


@dataclasses.dataclass
class AutoencoderObjective:
    """The autoencoder's own ``loss(features, generator)`` as a Trainer objective (batches ``{"x": (B, N, 14)}``)."""

    def __call__(self, model: nn.Module, batch: Any, generator: torch.Generator | None = None) -> Any:
        return model.loss(batch["x"], generator)  # type: ignore[operator]


def build_autoencoder(config: SplatTrainConfig) -> DiffGSAutoencoder | VoxelVAE:
    """The autoencoder of ``config.model``, initialised under ``train.seed``."""
    m = config.model
    with seeded(config.train.seed):
        if m.representation == "diffgs":
            return DiffGSAutoencoder(
                DiffGSConfig(
                    latent_tokens=m.latent_tokens, latent_dim=m.latent_dim, width=m.field_width, heads=m.heads,
                    extent=m.extent, queries=m.queries, kl_weight=m.kl_weight, refine_steps=m.refine_steps,
                )
            )  # fmt: skip
        return VoxelVAE(
            L3DGConfig(
                grid_size=m.grid_size, downsample=m.downsample, channels=m.conv_channels,
                latent_channels=m.latent_channels, extent=m.extent, kl_weight=m.kl_weight,
            )
        )  # fmt: skip


def build_denoiser(config: SplatTrainConfig, latent_shape: tuple[int, ...], data: SplatSet) -> LatentDiT:
    """The latent DiT for latents of ``latent_shape`` with ``config.conditioning``'s inputs."""
    m = config.model
    vocabulary = (
        sorted({w for c in data.captions for w in split_words(c)}) if config.conditioning == "caption" else []
    )
    max_words = max([len(split_words(c)) for c in data.captions] + [1]) + 4
    patch = 1 if m.representation == "diffgs" else m.patch_size
    with seeded(config.train.seed):
        return LatentDiT(
            LatentDiTConfig(
                input_size=latent_shape[1:], patch_size=patch, in_channels=latent_shape[0], hidden_size=m.width,
                depth=m.depth, num_heads=m.heads, num_classes=len(data.class_names) if config.conditioning == "class" else 0,
                vocabulary=vocabulary, max_words=max_words,
            )
        )  # fmt: skip


def _check_data(config: SplatTrainConfig, data: SplatSet) -> None:
    if config.conditioning == "class" and (not data.class_names or bool((data.labels < 0).any())):
        raise ValueError(
            "conditioning: the training objects have no classes (a folder needs class sub-folders); use caption or none"
        )
    if config.conditioning == "caption" and not any(data.captions):
        raise ValueError("conditioning: the training objects have no captions; use class or none")


def _refuse_previous_run(config: SplatTrainConfig) -> None:
    run = Path(config.train.output_dir)
    found = [name for name in (*RUN_FILES, PIPELINE_DIR, AUTOENCODER_RUN) if (run / name).exists()]
    if config.train.resume is None and found:
        raise ValueError(
            f"output_dir: {run} already holds a training run ({', '.join(found)}); continue it with "
            "--set train.resume=latest, or choose another --out"
        )


def _stage_resume(config: SplatTrainConfig, folder: Path) -> str | None:
    """The run's ``resume`` for a stage folder: None where that stage has no checkpoint yet."""
    if config.train.resume is None or not (folder / CHECKPOINT_DIR).is_dir():
        return None
    return config.train.resume


def _loader(dataset: TensorDictDataset, batch_size: int) -> DataLoader:
    return DataLoader(dataset, batch_size=batch_size, shuffle=True, drop_last=len(dataset) >= batch_size)


def train_autoencoder(config: SplatTrainConfig, data: SplatSet, device: torch.device) -> nn.Module:
    """Stage 1 (module docstring): the trained autoencoder with its latent scale, in eval mode on ``device``."""
    folder = Path(config.train.output_dir) / AUTOENCODER_RUN
    if (folder / AUTOENCODER_DONE).is_file() and config.train.resume is not None:
        return load_pretrained(folder / AUTOENCODER_MODEL, device=device).eval()
    model = build_autoencoder(config)
    stage = dataclasses.replace(
        config.train, steps=config.autoencoder_steps, lr=config.autoencoder_lr, ema_decay=None, output_dir=str(folder),
        warmup_steps=min(config.train.warmup_steps, config.autoencoder_steps - 1), lr_schedule="constant",
        max_seconds=config.autoencoder_seconds or None, resume=_stage_resume(config, folder),
    )  # fmt: skip
    trainer = Trainer(
        model, AutoencoderObjective(), _loader(TensorDictDataset(x=data.features), config.batch_size), stage
    )
    summary = trainer.fit()
    model = trainer.unwrapped_model.to(device).eval()
    model.fit_scaling(data.features.to(device))  # type: ignore[operator]
    model.save_pretrained(folder / AUTOENCODER_MODEL)  # type: ignore[operator]
    write_json(
        {"steps": summary.steps, "stopped_by_time": summary.stopped_by_time}, folder / AUTOENCODER_DONE
    )
    return model


def _latent_dataset(
    config: SplatTrainConfig, data: SplatSet, autoencoder: nn.Module, denoiser: LatentDiT
) -> TensorDictDataset:
    dev = next(autoencoder.parameters()).device
    latents = torch.cat(
        [autoencoder.encode_latents(data.features[i : i + 64].to(dev)).cpu() for i in range(0, len(data), 64)]
    )  # type: ignore[operator]
    if config.conditioning == "class":
        return TensorDictDataset(x=latents, y=data.labels)
    if config.conditioning == "caption":
        return TensorDictDataset(x=latents, caption_ids=denoiser.tokenize(data.captions, device="cpu"))
    return TensorDictDataset(x=latents)


def train(config: SplatTrainConfig, *, save: bool = True) -> SplatPipeline:
    """Train a pipeline as ``config`` says (module docstring); the run goes to ``config.train.output_dir``:
    ``train_config.json``, ``autoencoder/`` (its Trainer run and the fitted model), the denoiser's logs and
    checkpoints, and (``save``) the pipeline in ``pipeline/``. A folder that already holds a run is refused unless
    ``config.train.resume`` continues it. The caller's global RNG is left as it was."""
    device = resolve_device(config.train.device)
    run = Path(config.train.output_dir)
    _refuse_previous_run(config)
    data = build_training_set(config)
    _check_data(config, data)
    write_json({"config": config, "objects": len(data)}, run / CONFIG_FILE)
    autoencoder = train_autoencoder(config, data, device)
    latent_shape = tuple(autoencoder.latent_shape)  # type: ignore[arg-type]
    denoiser = build_denoiser(config, latent_shape, data)
    null_cond: dict[str, Any] = {}
    if config.conditioning == "class":
        null_cond = {"y": denoiser.null_class}
    elif config.conditioning == "caption":
        null_cond = {"caption_ids": 0}
    objective = rectified_flow(
        time_sampler=config.time_sampler,
        cond_dropout=config.cond_dropout if null_cond else 0.0,
        null_cond=null_cond,
    )
    stage: TrainConfig = dataclasses.replace(config.train, resume=_stage_resume(config, run))
    trainer = Trainer(
        denoiser,
        objective,
        _loader(_latent_dataset(config, data, autoencoder, denoiser), config.batch_size),
        stage,
    )
    trainer.fit()
    trained = copy.deepcopy(trainer.ema_model if trainer.ema_model is not None else trainer.unwrapped_model)
    pipe = SplatPipeline(
        autoencoder, trained.to(device).eval(), representation=config.model.representation, budget=config.budget,  # type: ignore[arg-type]
        conditioning=config.conditioning, class_names=data.class_names, prompts=data.captions[:8],
        data={"dataset": config.dataset, "data_path": config.data_path, "num_objects": config.num_objects,
              "data_seed": config.data_seed, "extent": config.model.extent},
    )  # fmt: skip
    pipe.card.record_training(config)
    if save:
        pipe.save_pretrained(run / PIPELINE_DIR)
    return pipe
