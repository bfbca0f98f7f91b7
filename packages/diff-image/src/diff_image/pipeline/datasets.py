"""Training data for the pipeline: the data sets of :mod:`diff_image.data` as batches ``{"x": images, **cond}``.

Batches follow diffcore's objective contract: ``x`` ``(B, C, H, W)`` in ``[-1, 1]`` plus conditioning keys
(``y`` ``(B,)`` class labels, or ``caption`` strings that the trainer turns into ``input_ids``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset

from diff_image.config import TrainImageConfig
from diff_image.data import DigitsDataset, ImageFolderDataset, ImageTransform, ShapesConfig, ShapesDataset
from diff_image.data.shapes import PALETTE, RELATIONS, SHAPES

__all__ = ["TrainingData", "build_training_data", "collate"]


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
    to build a vocabulary from."""

    dataset: Dataset
    image_shape: tuple[int, int, int]
    num_classes: int
    captions: list[str]


def _shapes_config(config: TrainImageConfig) -> ShapesConfig:
    return ShapesConfig(image_size=config.image_size, holdout=tuple(config.holdout))


def build_training_data(config: TrainImageConfig) -> TrainingData:
    """The data set named by ``config.dataset`` with the items the model's conditioning needs."""
    cond = config.model.conditioning
    if config.dataset == "digits":
        base: Dataset = DigitsDataset("train", size=config.image_size)
        if cond == "text":
            raise ValueError("conditioning: the digits have no captions; use 'class' or 'none'")
        return TrainingData(
            _Items(base, cond == "class", False), (1, config.image_size, config.image_size), 10, []
        )
    if config.dataset == "shapes":
        if cond == "class":
            raise ValueError(
                "conditioning: the shapes data set has captions, not classes; use 'text' or 'none'"
            )
        shapes = ShapesDataset(
            config.shapes_length, seed=config.seed, split="train", config=_shapes_config(config)
        )
        captions = []
        if cond == "text":  # the whole grammar's words, held-out concepts included (for later fine-tuning)
            captions = [shapes.sample(i).caption for i in range(min(len(shapes), 2000))]
            captions += [" ".join((*PALETTE, *SHAPES, *RELATIONS))]
        return TrainingData(
            _Items(shapes, False, cond == "text"), (3, config.image_size, config.image_size), 0, captions
        )
    folder = ImageFolderDataset(
        config.data_path, transform=ImageTransform(size=config.image_size), seed=config.seed
    )
    channels = 3 if folder.transform.mode == "RGB" else 1
    captions = [e.caption for e in folder.entries if e.caption is not None] if cond == "text" else []
    return TrainingData(
        _Items(folder, cond == "class", cond == "text"),
        (channels, config.image_size, config.image_size),
        len(folder.classes),
        captions,
    )


def stack_images(dataset: Dataset, limit: int | None = None) -> Tensor:
    """The first ``limit`` images (all when None) of a batch-item data set as ``(N, C, H, W)``."""
    n = len(dataset) if limit is None else min(limit, len(dataset))  # type: ignore[arg-type]
    return torch.stack([dataset[i]["x"] for i in range(n)])
