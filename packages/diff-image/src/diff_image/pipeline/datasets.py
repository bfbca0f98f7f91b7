"""Training data for the pipeline: the data sets of :mod:`diff_image.data` as batches ``{"x": images, **cond}``.

Batches follow diffcore's objective contract: ``x`` ``(B, C, H, W)`` in ``[-1, 1]`` plus conditioning keys
(``y`` ``(B,)`` class labels, or ``caption`` strings that the trainer turns into ``input_ids``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from diff_image.config import ImageTrainConfig
from diff_image.data import DigitsDataset, ImageFolderDataset, ImageTransform, ShapesConfig, ShapesDataset
from diff_image.data.shapes import PALETTE, RELATIONS, SHAPES
from diff_image.data.shapes_render import RenderedShapes, render_shapes

__all__ = [
    "DeviceBatches",
    "TrainingData",
    "build_training_data",
    "collate",
    "device_batch_loader",
    "tokenize_unique",
    "whole_batch",
]


class _Items(Dataset):
    """Maps a data set's items to ``{"x", "y"?, "caption"?}``."""

    def __init__(self, base: Dataset, keep_label: bool, keep_caption: bool) -> None:
        self.base, self.keep_label, self.keep_caption = base, keep_label, keep_caption

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = self.base[index]
        if isinstance(item, tuple):  # DigitsDataset: (image, label)
            item = {"image": item[0], "label": item[1]}
        out: dict[str, Any] = {"x": item["image"]}
        if self.keep_label:
            if "label" not in item:
                raise ValueError(
                    "conditioning: 'class' needs labelled data (digits or a class-folder layout)"
                )
            out["y"] = int(item["label"])
        if self.keep_caption:
            if "caption" not in item:
                raise ValueError(
                    "conditioning: 'text' needs captioned data (shapes or a metadata.jsonl folder)"
                )
            out["caption"] = item["caption"]
        return out


def collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack images and labels; keep captions as a list of strings."""
    out: dict[str, Any] = {"x": torch.stack([it["x"] for it in items])}
    if "y" in items[0]:
        out["y"] = torch.tensor([it["y"] for it in items], dtype=torch.long)
    if "caption" in items[0]:
        out["caption"] = [it["caption"] for it in items]
    return out


@dataclass
class TrainingData:
    """The training set, its image shape ``(C, H, W)``, class count (0 if unlabelled) and, for text, captions
    to build a vocabulary from. ``rendered``: the whole (shapes) set pre-rendered as tensors, when
    ``ImageDataConfig.cache`` asked for it; training then indexes it on the device (:class:`DeviceBatches`)."""

    dataset: Dataset
    image_shape: tuple[int, int, int]
    num_classes: int
    captions: list[str]
    rendered: RenderedShapes | None = None


def build_training_data(config: ImageTrainConfig) -> TrainingData:
    """The data set named by ``config.data.dataset`` with the items the model's conditioning needs (generated
    shapes and a folder's random crops are seeded by ``config.train.seed``)."""
    cond, data, seed = config.model.conditioning, config.data, config.train.seed
    size = data.image_size
    if data.dataset == "digits":
        base: Dataset = DigitsDataset("train", size=size)
        if cond == "text":
            raise ValueError("conditioning: the digits have no captions; use 'class' or 'none'")
        return TrainingData(_Items(base, cond == "class", False), (1, size, size), 10, [])
    if data.dataset == "shapes":
        if cond == "class":
            raise ValueError(
                "conditioning: the shapes data set has captions, not classes; use 'text' or 'none'"
            )
        shapes_cfg = ShapesConfig(image_size=size, holdout=tuple(data.holdout))
        shapes = ShapesDataset(data.shapes_length, seed=seed, split="train", config=shapes_cfg)
        rendered = None
        if data.cache:
            rendered = render_shapes(
                data.shapes_length, seed, "train", shapes.config, workers=data.render_workers
            )
        captions = []
        if cond == "text":  # the whole grammar's words, held-out concepts included (for later fine-tuning)
            if rendered is not None:
                captions = sorted(set(rendered.captions))
            else:
                captions = [shapes.sample(i).caption for i in range(min(len(shapes), 2000))]
            captions += [" ".join((*PALETTE, *SHAPES, *RELATIONS))]
        return TrainingData(_Items(shapes, False, cond == "text"), (3, size, size), 0, captions, rendered)
    folder = ImageFolderDataset(data.path, transform=ImageTransform(size=size), seed=seed)
    channels = 3 if folder.transform.mode == "RGB" else 1
    captions = [e.caption for e in folder.entries if e.caption is not None] if cond == "text" else []
    return TrainingData(
        _Items(folder, cond == "class", cond == "text"), (channels, size, size), len(folder.classes), captions
    )


def stack_images(dataset: Dataset, limit: int | None = None) -> Tensor:
    """The first ``limit`` images (all when None) of a batch-item data set as ``(N, C, H, W)``."""
    n = len(dataset) if limit is None else min(limit, len(dataset))  # type: ignore[arg-type]
    return torch.stack([dataset[i]["x"] for i in range(n)])


def tokenize_unique(
    captions: Sequence[str], tokenize: Callable[[list[str]], Tensor], chunk: int = 4096
) -> Tensor:
    """Token ids ``(N, L)`` of ``captions``, running ``tokenize`` once per distinct caption."""
    if not captions:
        raise ValueError("captions: expected at least one caption")
    distinct = list(dict.fromkeys(captions))
    ids = torch.cat([tokenize(distinct[i : i + chunk]) for i in range(0, len(distinct), chunk)])
    where = {c: k for k, c in enumerate(distinct)}
    return ids[torch.tensor([where[c] for c in captions], dtype=torch.long)]


class DeviceBatches(Dataset):
    """A training set kept as tensors on one device, fetched a whole batch at a time.

    A DataLoader with automatic batching calls ``__getitems__`` with the batch's indices, which returns the batch
    ``{"x": (B, C, H, W) float in [-1, 1], "input_ids": (B, L)?}``: one gather on the device, no per-item Python,
    no host-to-device copy (pass :func:`whole_batch` as the loader's ``collate_fn``).

    Args:
        images: ``(N, C, H, W)`` uint8 renders (kept as uint8: 4x less memory than float).
        input_ids: ``(N, L)`` token ids of the captions, or None for unconditional training.
        device: where the tensors live and batches are built.
    """

    def __init__(self, images: Tensor, input_ids: Tensor | None, device: str | torch.device) -> None:
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise ValueError(f"images: expected (N, C, H, W) uint8, got {images.dtype} {tuple(images.shape)}")
        if input_ids is not None and input_ids.shape[0] != images.shape[0]:
            raise ValueError(f"input_ids: expected {images.shape[0]} rows, got {tuple(input_ids.shape)}")
        self.images = images.to(device)
        self.input_ids = input_ids.to(device) if input_ids is not None else None

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __getitems__(self, indices: Sequence[int]) -> dict[str, Tensor]:
        idx = torch.as_tensor(indices, dtype=torch.long).to(self.images.device, non_blocking=True)
        out = {"x": self.images[idx].float().div_(127.5).sub_(1.0)}
        if self.input_ids is not None:
            out["input_ids"] = self.input_ids[idx]
        return out

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        return {k: v[0] for k, v in self.__getitems__([index]).items()}


def whole_batch(batch: dict[str, Tensor]) -> dict[str, Tensor]:
    """The collate function of :class:`DeviceBatches`: its ``__getitems__`` already built the batch."""
    return batch


def device_batch_loader(dataset: DeviceBatches, batch_size: int) -> DataLoader:
    """A shuffling DataLoader of whole batches of ``dataset`` (the last partial batch dropped when a full one
    fits); the Trainer's accelerate seeds the order."""
    n = len(dataset)
    return DataLoader(
        dataset,
        batch_size=min(batch_size, n),
        shuffle=True,
        drop_last=n >= batch_size,
        collate_fn=whole_batch,
    )
