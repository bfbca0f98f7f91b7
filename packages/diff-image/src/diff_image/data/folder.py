"""Real images from a local folder, in either of the two common layouts.

* **classes** (torchvision ImageFolder convention): ``root/<class_name>/**/<image>``; labels are the
  indices of the sorted class folder names (``dataset.classes``).
* **captions** (Hugging Face ImageFolder convention): ``root/metadata.jsonl`` with one JSON object per line,
  ``{"file_name": "<path relative to root>", "text": "<caption>"}`` (the caption key is configurable).
* **flat**: images directly under ``root``, no labels.

Unreadable files never stop a run: they are skipped, listed in ``dataset.skipped`` as
:class:`SkippedFile` ``(path, reason)`` and reported with one warning. With ``verify=True`` (default)
every image is fully decoded once at construction, so the data set only ever holds readable files; a
file that breaks later is skipped at read time (the next readable item is returned instead) and added
to ``skipped``. A folder with no readable image raises ValueError.

Random augmentation draws from a generator seeded by ``(seed, epoch, index)``; call
:meth:`ImageFolderDataset.set_epoch` each epoch for fresh but reproducible crops and flips.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from diff_image.data.transforms import ImageTransform

__all__ = ["IMAGE_EXTENSIONS", "ImageFolderDataset", "SkippedFile"]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
METADATA_NAME = "metadata.jsonl"


@dataclass(frozen=True)
class SkippedFile:
    """A file left out of the data set and why."""

    path: Path
    reason: str


@dataclass(frozen=True)
class _Entry:
    path: Path
    label: int | None = None
    caption: str | None = None


def _is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")


def _images_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if _is_image(p))


def _check_readable(path: Path) -> str | None:
    """None if PIL fully decodes ``path``, else the reason it cannot."""
    try:
        with Image.open(path) as img:
            img.load()
    except Exception as exc:  # PIL raises many types for bad files (OSError, SyntaxError, ValueError ...)
        return f"{type(exc).__name__}: {exc}"
    return None


class ImageFolderDataset(Dataset):
    """Images under ``root`` as dicts ``{"image": (C, S, S) in [-1, 1], "index", ["label" | "caption"]}``.

    Args:
        root: the folder.
        transform: resize / crop / flip to tensor (:class:`ImageTransform`); default 32x32 center crop RGB.
        layout: ``"auto"`` (metadata.jsonl -> captions, else sub-folders -> classes, else flat),
            ``"classes"``, ``"captions"`` or ``"flat"``.
        caption_column: the caption key in metadata.jsonl.
        verify: fully decode every image once now (slower start, no surprises later).
        seed: seed of the random augmentation.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        transform: ImageTransform | None = None,
        layout: Literal["auto", "classes", "captions", "flat"] = "auto",
        caption_column: str = "text",
        verify: bool = True,
        seed: int = 0,
    ) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise ValueError(f"root: {self.root} is not a folder")
        if layout not in ("auto", "classes", "captions", "flat"):
            raise ValueError(f"layout: expected 'auto', 'classes', 'captions' or 'flat', got {layout!r}")
        self.transform = transform if transform is not None else ImageTransform()
        self.caption_column, self.seed, self.epoch = caption_column, seed, 0
        self.layout = self._detect_layout() if layout == "auto" else layout
        self.classes: list[str] = []
        self.skipped: list[SkippedFile] = []
        entries = {"classes": self._scan_classes, "captions": self._scan_captions, "flat": self._scan_flat}[
            self.layout
        ]()
        if verify:
            entries = [e for e in entries if self._keep(e.path, _check_readable(e.path))]
        self.entries = entries
        self._report()
        if not self.entries:
            raise ValueError(
                f"root: {self.root} has no readable images for layout {self.layout!r} "
                f"(extensions {IMAGE_EXTENSIONS}; {len(self.skipped)} file(s) skipped)"
            )

    def _detect_layout(self) -> str:
        if (self.root / METADATA_NAME).is_file():
            return "captions"
        if any(d.is_dir() and _images_under(d) for d in self.root.iterdir()):
            return "classes"
        return "flat"

    def _keep(self, path: Path, reason: str | None) -> bool:
        if reason is not None:
            self.skipped.append(SkippedFile(path, reason))
        return reason is None

    def _scan_classes(self) -> list[_Entry]:
        dirs = sorted(d for d in self.root.iterdir() if d.is_dir() and not d.name.startswith("."))
        self.classes = [d.name for d in dirs if _images_under(d)]
        return [
            _Entry(p, label=i) for i, name in enumerate(self.classes) for p in _images_under(self.root / name)
        ]

    def _scan_flat(self) -> list[_Entry]:
        return [_Entry(p) for p in sorted(self.root.iterdir()) if _is_image(p)]

    def _scan_captions(self) -> list[_Entry]:
        meta = self.root / METADATA_NAME
        if not meta.is_file():
            raise ValueError(f"root: layout 'captions' needs {meta} (lines of {{'file_name', 'text'}})")
        entries = []
        try:
            lines = meta.read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError as exc:
            raise ValueError(f"root: {meta} is not UTF-8 text (byte {exc.start}: {exc.reason})") from exc
        for lineno, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            where = Path(f"{meta}:{lineno}")
            try:
                record = json.loads(line)
                name, caption = record["file_name"], record[self.caption_column]
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                self._keep(where, f"bad metadata line ({type(exc).__name__}: {exc})")
                continue
            path = self.root / str(name)
            if not _is_image(path):
                self._keep(path, "listed in metadata.jsonl but not an image file on disk")
                continue
            entries.append(_Entry(path, caption=str(caption)))
        return entries

    def _report(self) -> None:
        if self.skipped:
            first = "; ".join(f"{s.path}: {s.reason}" for s in self.skipped[:3])
            warnings.warn(
                f"ImageFolderDataset skipped {len(self.skipped)} unreadable file(s) under {self.root} "
                f"(see dataset.skipped): {first}",
                stacklevel=3,
            )

    def image_sizes(self) -> list[tuple[int, int]]:
        """``(width, height)`` of every entry, in order, from the file headers (nothing is decoded)."""
        sizes = []
        for entry in self.entries:
            with Image.open(entry.path) as img:
                sizes.append((int(img.width), int(img.height)))
        return sizes

    def loose_images(self) -> list[Path]:
        """Images directly under ``root`` that the layout leaves out: with class sub-folders, those not in
        one; with ``metadata.jsonl``, those it does not list (anywhere under ``root``). Empty for ``flat``."""
        if self.layout == "classes":
            return [p for p in sorted(self.root.iterdir()) if _is_image(p)]
        if self.layout == "captions":
            listed = {e.path.resolve() for e in self.entries} | {s.path.resolve() for s in self.skipped}
            return [p for p in _images_under(self.root) if p.resolve() not in listed]
        return []

    def set_epoch(self, epoch: int) -> None:
        """Select the augmentation stream of ``epoch`` (items stay reproducible per (seed, epoch, index))."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.entries)

    def _load(self, index: int) -> torch.Tensor:
        seed = int(
            np.random.SeedSequence([self.seed, self.epoch, index]).generate_state(1, np.uint64)[0] >> 1
        )
        generator = torch.Generator().manual_seed(seed)
        with Image.open(self.entries[index].path) as img:
            img.load()
            return self.transform(img, generator=generator)

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < len(self):
            raise IndexError(f"index: expected 0 <= index < {len(self)}, got {index}")
        for offset in range(len(self)):
            i = (index + offset) % len(self)
            try:
                image = self._load(i)
            except Exception as exc:  # the file broke after the scan: skip it, never stop the run
                if all(s.path != self.entries[i].path for s in self.skipped):
                    self.skipped.append(SkippedFile(self.entries[i].path, f"{type(exc).__name__}: {exc}"))
                    warnings.warn(
                        f"ImageFolderDataset: skipping unreadable {self.entries[i].path}: {exc}", stacklevel=2
                    )
                continue
            entry = self.entries[i]
            item: dict = {"image": image, "index": i}
            if entry.label is not None:
                item["label"] = entry.label
            if entry.caption is not None:
                item["caption"] = entry.caption
            return item
        raise RuntimeError(f"root: none of the {len(self)} images under {self.root} can be read any more")
