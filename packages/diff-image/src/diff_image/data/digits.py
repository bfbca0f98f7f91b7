"""scikit-learn's bundled handwritten digits as a torch ``Dataset`` (offline, no download).

The data: 1,797 greyscale 8x8 images of the digits 0-9 (UCI optical recognition of handwritten digits,
pixel values 0..16), shipped inside scikit-learn (``sklearn.datasets.load_digits``).

Images are scaled to ``[-1, 1]`` (``x = v / 8 - 1``) with shape ``(1, 8, 8)``; ``size=16`` or ``32``
gives a larger image, either by padding with the background value -1 (``resize="pad"``, the digit keeps
its 8x8 pixels in the middle) or by bilinear up-sampling (``resize="bilinear"``).

The train/test split is FIXED: stratified by label, ``sklearn.model_selection.train_test_split`` with
``random_state=0`` and ``test_size=360``, giving **1,437 train** and **360 test** images (35 to 37 per class
in test). The same indices come back on every machine and every call.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

__all__ = ["DIGITS_SPLIT_SEED", "DIGITS_TEST_SIZE", "DigitsDataset", "digits_split_indices"]

DIGITS_SPLIT_SEED = 0
DIGITS_TEST_SIZE = 360
_SIZES = (8, 16, 32)


@lru_cache(maxsize=1)
def _load_raw() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return bunch.images.astype(np.float32), bunch.target.astype(np.int64)


@lru_cache(maxsize=1)
def _split() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.model_selection import train_test_split

    _, labels = _load_raw()
    idx = np.arange(len(labels))
    train, test = train_test_split(
        idx, test_size=DIGITS_TEST_SIZE, stratify=labels, random_state=DIGITS_SPLIT_SEED, shuffle=True
    )
    return np.sort(train), np.sort(test)


def digits_split_indices(split: Literal["train", "test", "all"]) -> np.ndarray:
    """Indices into ``load_digits()`` of the fixed split: 1,437 train, 360 test, or all 1,797 (sorted)."""
    if split == "all":
        return np.arange(len(_load_raw()[1]))
    if split not in ("train", "test"):
        raise ValueError(f"split: expected 'train', 'test' or 'all', got {split!r}")
    train, test = _split()
    return train if split == "train" else test


class DigitsDataset(Dataset):
    """The sklearn digits as ``(image, label)`` pairs.

    Args:
        split: ``"train"`` (1,437), ``"test"`` (360) or ``"all"`` (1,797); see the module docstring.
        size: output side, 8 (native), 16 or 32.
        resize: ``"pad"`` (centre the 8x8 digit on a -1 background) or ``"bilinear"`` (up-sample).

    Items: ``image`` float32 ``(1, size, size)`` in ``[-1, 1]`` (-1 = background), ``label`` int in 0..9.
    The whole set lives in memory: ``dataset.images`` ``(N, 1, size, size)``, ``dataset.labels`` ``(N,)``.
    """

    num_classes = 10

    def __init__(
        self,
        split: Literal["train", "test", "all"] = "train",
        size: int = 8,
        resize: Literal["pad", "bilinear"] = "pad",
    ) -> None:
        if size not in _SIZES:
            raise ValueError(f"size: expected one of {_SIZES}, got {size!r}")
        if resize not in ("pad", "bilinear"):
            raise ValueError(f"resize: expected 'pad' or 'bilinear', got {resize!r}")
        images, labels = _load_raw()
        idx = digits_split_indices(split)
        x = torch.from_numpy(images[idx]).unsqueeze(1) / 8.0 - 1.0
        self.split, self.size, self.resize = split, size, resize
        self.indices = torch.from_numpy(idx)
        self.images = _to_size(x, size, resize).contiguous()
        self.labels = torch.from_numpy(labels[idx])

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.images[index], int(self.labels[index])


def _to_size(x: torch.Tensor, size: int, resize: str) -> torch.Tensor:
    if size == x.shape[-1]:
        return x
    if resize == "pad":
        p = (size - x.shape[-1]) // 2
        return F.pad(x, (p, p, p, p), value=-1.0)
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False).clamp(-1.0, 1.0)
