"""DreamBooth-style LoRA fine-tuning of a trained pipeline on a handful of images of a new concept.

DreamBooth (Ruiz et al. 2023) fine-tunes a text-to-image model on 3-5 images of a subject bound to a prompt;
here only low-rank adapters (Hu et al. 2021) of the backbone's attention and MLP projections train, through
diffcore's PEFT helpers (:mod:`diffcore.nn.lora`), with the pipeline's own objective (schedule and
prediction) and :class:`diffcore.training.Trainer`. The adapter is saved alone in the PEFT format
(``adapter_config.json`` + ``adapter_model.safetensors``, a few hundred KB) and several adapters can be
loaded into one pipeline with weights (``W + sum_i w_i (alpha_i / r_i) B_i A_i``).

Prior preservation (DreamBooth's class-specific prior loss) is not used: the adapter is small and trained
for few steps, and the concept test measures that the base's other outputs stay possible.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from diffcore.device import resolve_device
from diffcore.nn import add_lora, load_lora, lora_parameters, save_lora, set_adapters
from diffcore.rng import make_generator, seeded
from diffcore.training import TrainConfig, Trainer
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from diff_image.config import ImageLoraConfig
from diff_image.data import ShapesConfig, ShapesDataset
from diff_image.data.shapes import parse_concept
from diff_image.io import read_pngs, to_uint8
from diff_image.metrics.adherence import detect_objects
from diff_image.pipeline import ImagePipeline, build_objective
from diff_image.pipeline.training import PreparedObjective, objective_name

__all__ = [
    "adapter_parameter_count",
    "concept_images",
    "concept_rate",
    "finetune_lora",
    "load_adapters",
    "run_lora",
    "save_adapter",
]


class _ConceptSet(Dataset):
    def __init__(self, images: Tensor, label: int | None, prompts: Sequence[str] | None) -> None:
        self.images, self.label, self.prompts = images, label, prompts

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict:
        item: dict = {"x": self.images[i]}
        if self.label is not None:
            item["y"] = self.label
        if self.prompts is not None:
            item["caption"] = self.prompts[i]
        return item


def _collate(items: list[dict]) -> dict:
    out: dict = {"x": torch.stack([it["x"] for it in items])}
    if "y" in items[0]:
        out["y"] = torch.tensor([it["y"] for it in items], dtype=torch.long)
    if "caption" in items[0]:
        out["caption"] = [it["caption"] for it in items]
    return out


def concept_images(concept: str, num: int, image_size: int = 32, seed: int = 777) -> tuple[Tensor, list[str]]:
    """``num`` shapes scenes that each hold ``concept`` (``"red"``, ``"circle"``, ``"red circle"``) as their first
    object: images ``(num, 3, S, S)`` in ``[-1, 1]`` and captions."""
    cfg = ShapesConfig(image_size=image_size, holdout=(concept,))
    data = ShapesDataset(num, seed=seed, split="holdout", config=cfg)
    samples = [data.sample(i) for i in range(num)]
    return torch.stack([s.to_tensor() for s in samples]), [s.caption for s in samples]


def concept_rate(images: Tensor, concept: str) -> float:
    """Fraction of ``images`` ``(B, 3, H, W)`` in ``[-1, 1]`` holding an object of ``concept``, read from the pixels
    by :func:`diff_image.metrics.adherence.detect_objects` (colour by palette distance, shape by geometry)."""
    colour, shape = parse_concept(concept)
    arr = to_uint8(images)
    hits = 0
    for img in arr:
        found = detect_objects(np.ascontiguousarray(img))
        hits += any(
            (colour is None or o.colour == colour) and (shape is None or o.shape == shape) for o in found
        )
    return hits / max(1, len(arr))


def finetune_lora(
    pipe: ImagePipeline,
    images: Tensor,
    config: ImageLoraConfig,
    output_dir: str | os.PathLike[str],
    adapter_name: str = "concept",
    captions: Sequence[str] | None = None,
) -> ImagePipeline:
    """Add a LoRA adapter to ``pipe.model`` and train it on ``images`` ``(N, C, H, W)`` in ``[-1, 1]``.

    The images carry ``config.label`` (class-conditional pipelines) or, for text pipelines, their own
    ``captions`` (one per image) or else ``config.prompt`` (default: the concept's name); only the adapter's
    parameters change. The adapter is saved to ``output_dir/adapter`` and stays active in
    ``pipe`` (returned for chaining).
    """
    if images.ndim != 4 or tuple(images.shape[1:]) != pipe.image_shape:
        raise ValueError(
            f"images: expected (N, {', '.join(map(str, pipe.image_shape))}), got {tuple(images.shape)}"
        )
    label = config.label if pipe.num_classes else None
    if label is not None and not 0 <= label < pipe.num_classes:
        raise ValueError(f"label: expected 0..{pipe.num_classes - 1}, got {label}")
    prompts = None
    if pipe.text_encoder is not None:
        prompts = list(captions) if captions is not None else [config.prompt or config.concept] * len(images)
        if len(prompts) != len(images):
            raise ValueError(f"captions: expected {len(images)} captions (one per image), got {len(prompts)}")
    with seeded(config.seed):
        add_lora(pipe.model, rank=config.rank, alpha=config.alpha, adapter_name=adapter_name)
    network = pipe.network
    if pipe.text_encoder is not None:
        pipe.text_encoder.requires_grad_(False)
    inner = build_objective(objective_name(pipe), pipe.schedule)
    objective = PreparedObjective(
        inner,
        encode=pipe.autoencoder.encode if pipe.autoencoder is not None else None,
        tokenize=pipe.text_encoder.tokenize if pipe.text_encoder is not None else None,
    )
    loader = DataLoader(
        _ConceptSet(images.cpu(), label, prompts), batch_size=min(config.batch_size, len(images)), shuffle=True,
        collate_fn=_collate, drop_last=False,
    )  # fmt: skip
    out = Path(output_dir)
    tc = TrainConfig(
        steps=config.steps, lr=config.lr, ema_decay=None, checkpoint_every=None, keep_last=1,
        output_dir=str(out / "lora_run"), seed=config.seed, tensorboard=False,
        device="cpu" if pipe.device.type == "cpu" else "auto", log_every=max(1, config.steps // 10), weight_decay=0.0,
    )  # fmt: skip
    Trainer(network, objective, loader, tc).fit()
    pipe.model.eval()
    save_adapter(pipe, out / "adapter", adapter_name)
    return pipe


def run_lora(
    pipe: ImagePipeline, config: ImageLoraConfig, output_dir: str | os.PathLike[str]
) -> tuple[Tensor, Tensor, dict[str, float]]:
    """``diffuse image lora``: fine-tune an adapter on the concept images and sample before and after.

    The images are ``config.images`` (PNGs) or ``config.num_images`` generated shapes holding ``config.concept``;
    ``config.num_samples`` samples carry ``config.label`` (class models) or ``config.prompt`` (default: the
    concept; text models) and the same noise (``config.seed``) before and after. The pipeline is moved to
    ``config.device``; the adapter is written to ``output_dir/adapter`` and stays active in ``pipe``.

    Returns ``(before, after, metrics)``: images ``(num_samples, C, H, W)`` in ``[-1, 1]`` and ``adapter_bytes``,
    plus, for generated RGB concept images, ``concept_rate_base`` / ``concept_rate_lora`` (:func:`concept_rate`).
    """
    pipe.to(resolve_device(config.device))
    if config.images:
        images = read_pngs(config.images)
    else:
        images, _ = concept_images(config.concept, config.num_images, image_size=pipe.image_shape[-1])
    y = [config.label] if pipe.num_classes else None
    prompt = [config.prompt or config.concept] if pipe.text_encoder is not None else None
    before = pipe.sample(
        config.num_samples, y=y, prompt=prompt, generator=make_generator(config.seed, pipe.device)
    )
    finetune_lora(pipe, images, config, output_dir)
    after = pipe.sample(
        config.num_samples, y=y, prompt=prompt, generator=make_generator(config.seed, pipe.device)
    )
    adapter = Path(output_dir) / "adapter" / "adapter_model.safetensors"
    metrics = {"adapter_bytes": float(adapter.stat().st_size)}
    if pipe.image_shape[0] == 3 and not config.images:
        metrics["concept_rate_base"] = concept_rate(before, config.concept)
        metrics["concept_rate_lora"] = concept_rate(after, config.concept)
    return before, after, metrics


def save_adapter(
    pipe: ImagePipeline, directory: str | os.PathLike[str], adapter_name: str = "concept"
) -> Path:
    """Write one adapter of ``pipe.model`` in the PEFT format (only its LoRA weights)."""
    return save_lora(pipe.model, directory, adapter_name=adapter_name)


def load_adapters(
    pipe: ImagePipeline,
    directories: Sequence[str | os.PathLike[str]],
    weights: Sequence[float] | None = None,
    names: Sequence[str] | None = None,
) -> ImagePipeline:
    """Load adapters into ``pipe.model`` and activate them together, adapter ``i`` scaled by ``weights[i]``."""
    dirs = list(directories)
    if not dirs:
        raise ValueError("directories: expected at least one adapter folder")
    names = list(names) if names is not None else [f"adapter_{i}" for i in range(len(dirs))]
    if len(names) != len(dirs):
        raise ValueError(f"names: expected {len(dirs)} names (one per folder), got {len(names)}")
    for d, n in zip(dirs, names, strict=True):
        load_lora(pipe.model, d, adapter_name=n)
    set_adapters(pipe.model, names, weights)
    pipe.model.eval()
    return pipe


def adapter_parameter_count(pipe: ImagePipeline, adapter_name: str | None = None) -> int:
    """Number of LoRA parameters (of one adapter, or all) in ``pipe.model``."""
    return sum(p.numel() for p in lora_parameters(pipe.model, adapter_name))
