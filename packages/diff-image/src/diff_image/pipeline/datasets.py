"""Training data for the pipeline: the data sets of :mod:`diff_image.data` as batches ``{"x": images, **cond}``.

Batches follow diffcore's objective contract: ``x`` ``(B, C, H, W)`` in ``[-1, 1]`` plus conditioning keys
(``y`` ``(B,)`` class labels, or ``caption`` strings that the trainer turns into ``input_ids``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from diff_image.config import ImageTrainConfig
from diff_image.data import DigitsDataset, ImageFolderDataset, ImageTransform, ShapesConfig, ShapesDataset
from diff_image.data.shapes import PALETTE, RELATIONS, SHAPES
from diff_image.data.shapes_render import RenderedShapes, render_shapes
from diff_image.models import resolve_model

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
    ``ImageDataConfig.cache`` asked for it; training then indexes it on the device (:class:`DeviceBatches`).
    ``conditioning`` is the one the model trains with (``auto`` resolved from the data) and ``notes`` say, one
    line each, what was inferred from the data or done to it (chosen conditioning and size, resized images)."""

    dataset: Dataset
    image_shape: tuple[int, int, int]
    num_classes: int
    captions: list[str]
    rendered: RenderedShapes | None = None
    conditioning: str = "none"
    notes: list[str] = field(default_factory=list)


DIGITS_SIZE = 8
"""The digits' own side (8x8 scans); ``image_size = 0`` trains at it."""


def _chosen(setting: str, data_choice: str, why: str, notes: list[str]) -> str:
    """``data_choice`` for ``auto`` (noted with ``why``), else the explicit ``setting``."""
    if setting == "auto":
        notes.append(f"conditioning: {data_choice} ({why})")
        return data_choice
    return setting


def _listing(paths: Sequence[Path], root: Path, limit: int = 3) -> str:
    names = ", ".join(str(p.relative_to(root)) for p in paths[:limit])
    return names + (f" and {len(paths) - limit} more" if len(paths) > limit else "")


def _folder_conditioning(setting: str, folder: ImageFolderDataset, notes: list[str]) -> str:
    """The conditioning a folder's layout supports: ``setting``, or for ``auto`` the layout's own; a setting the
    layout contradicts is an error naming what the folder holds."""
    root, n = folder.root, len(folder)
    if folder.layout == "captions":
        if setting == "class":
            raise ValueError(
                f"conditioning: 'class' needs class sub-folders, but {root} holds metadata.jsonl captions; "
                "use --conditioning text, none or auto"
            )
        return _chosen(setting, "text", f"captions of {n} images in {root / 'metadata.jsonl'}", notes)
    if folder.layout == "classes":
        k, names = len(folder.classes), folder.classes
        shown = ", ".join(names[:5]) + (", ..." if k > 5 else "")
        if setting == "text":
            raise ValueError(
                f"conditioning: 'text' needs captions ({root / 'metadata.jsonl'}), but {root} holds class "
                "sub-folders; use --conditioning class, none or auto"
            )
        if k < 2:
            if setting == "class":
                raise ValueError(
                    f"conditioning: 'class' needs >= 2 class sub-folders under {root}, found 1 ({names[0]}); "
                    "use --conditioning none or auto"
                )
            return _chosen(
                setting, "none", f"{n} images in one sub-folder, {names[0]!r}: a single class", notes
            )
        return _chosen(setting, "class", f"{k} class sub-folders of {root}: {shown}", notes)
    if setting in ("class", "text"):
        needs = "class sub-folders (one per class)" if setting == "class" else "captions (metadata.jsonl)"
        raise ValueError(
            f"conditioning: {setting!r} needs {needs}, but the {n} images of {root} lie directly in it; "
            "use --conditioning none (or auto)"
        )
    return _chosen(
        setting, "none", f"{n} images directly in {root}, no class sub-folders or metadata.jsonl", notes
    )


def _folder_size(setting: int, folder: ImageFolderDataset, notes: list[str]) -> int:
    """The side to train a folder at: ``setting``, or for 0 the images' own when all are one square size (else an
    error naming two files). Images of another size than the one trained at are resized and cropped, noted."""
    sizes = folder.image_sizes()
    paths = [e.path.relative_to(folder.root) for e in folder.entries]
    if setting == 0:
        first = sizes[0]
        other = next((i for i, s in enumerate(sizes) if s != first), None)
        if other is not None:
            w0, h0 = first
            w1, h1 = sizes[other]
            raise ValueError(
                f"image_size: the images of {folder.root} differ in size ({paths[0]} is {w0}x{h0}, "
                f"{paths[other]} is {w1}x{h1}); pass --image-size S to resize them all (shorter side to S, "
                "centre crop to SxS)"
            )
        w, h = first
        if w != h:
            raise ValueError(
                f"image_size: the images of {folder.root} are {w}x{h}, not square; pass --image-size S to resize "
                "them (shorter side to S) and centre-crop them to SxS"
            )
        notes.append(f"image size: {w} px (all {len(sizes)} images of {folder.root} are {w}x{h})")
        return w
    changed = [(p, s) for p, s in zip(paths, sizes) if s != (setting, setting)]
    if changed:
        kinds = sorted({s for _, s in changed})
        shown = ", ".join(f"{w}x{h}" for w, h in kinds[:3]) + (", ..." if len(kinds) > 3 else "")
        notes.append(
            f"image size: {setting} px (image_size); {len(changed)} of {len(sizes)} images ({shown}) resized, "
            f"shorter side to {setting}, and centre-cropped to {setting}x{setting}"
        )
    return setting


def build_training_data(config: ImageTrainConfig) -> TrainingData:
    """The data set named by ``config.data.dataset`` with the items the model's conditioning needs (generated
    shapes and a folder's random crops are seeded by ``config.train.seed``).

    ``model.conditioning = "auto"`` and ``data.image_size = 0`` are taken from the data (digits: class, 8 px;
    shapes: text, 32 px; a folder: its layout and its images' size); each choice is one line of the returned
    ``notes``. Settings the data contradicts are a ValueError naming the setting."""
    setting, data, seed = config.model.conditioning, config.data, config.train.seed
    notes: list[str] = []
    if data.dataset == "digits":
        size = data.image_size or DIGITS_SIZE
        if not data.image_size:
            notes.append(f"image size: {size} px (the digits' own size)")
        cond = _chosen(setting, "class", "the digits' 10 classes", notes)
        if cond == "text":
            raise ValueError("conditioning: the digits have no captions; use 'class', 'none' or 'auto'")
        resolve_model(config.model, cond)  # a backbone the conditioning contradicts fails here
        base: Dataset = DigitsDataset("train", size=size)
        return TrainingData(_Items(base, cond == "class", False), (1, size, size), 10, [], None, cond, notes)
    if data.dataset == "shapes":
        size = data.image_size or ShapesConfig().image_size
        if not data.image_size:
            notes.append(f"image size: {size} px (the shapes generator's default)")
        cond = _chosen(setting, "text", "the shapes scenes' captions", notes)
        if cond == "class":
            raise ValueError(
                "conditioning: the shapes data set has captions, not classes; use 'text', 'none' or 'auto'"
            )
        resolve_model(config.model, cond)
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
        items = _Items(shapes, False, cond == "text")
        return TrainingData(items, (3, size, size), 0, captions, rendered, cond, notes)
    folder = ImageFolderDataset(data.path, seed=seed)
    loose = folder.loose_images()
    if loose and folder.layout == "classes":
        raise ValueError(
            f"path: {folder.root} holds class sub-folders ({', '.join(folder.classes[:5])}) and also "
            f"{len(loose)} images directly in it ({_listing(loose, folder.root)}), which a class layout leaves out; move "
            "them into a class sub-folder (or out of the folder)"
        )
    if loose:
        notes.append(
            f"data: {len(loose)} images under {folder.root} are not listed in metadata.jsonl and are left out "
            f"({_listing(loose, folder.root)})"
        )
    cond = _folder_conditioning(setting, folder, notes)
    resolve_model(config.model, cond)
    size = _folder_size(data.image_size, folder, notes)
    folder.transform = ImageTransform(size=size)
    channels = 3 if folder.transform.mode == "RGB" else 1
    captions = [e.caption for e in folder.entries if e.caption is not None] if cond == "text" else []
    num_classes = len(folder.classes) if cond == "class" else 0
    items = _Items(folder, cond == "class", cond == "text")
    return TrainingData(items, (channels, size, size), num_classes, captions, None, cond, notes)


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
