"""PIL image -> tensor in ``[-1, 1]``: resize, center or random crop, horizontal flip.

Random choices draw from a ``torch.Generator`` passed to the call, never from global state, so a data set
can make item ``i`` of epoch ``e`` reproducible (see :class:`diff_image.data.folder.ImageFolderDataset`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from PIL import Image

__all__ = ["ImageTransform", "pil_to_tensor"]

_RESAMPLE = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
}


def pil_to_tensor(image: Image.Image, mode: Literal["RGB", "L"] = "RGB") -> torch.Tensor:
    """Convert a PIL image to a float tensor ``(C, H, W)`` in ``[-1, 1]`` (C = 3 for RGB, 1 for L).

    Images with transparency are composited onto white before dropping alpha.
    """
    if mode not in ("RGB", "L"):
        raise ValueError(f"mode: expected 'RGB' or 'L', got {mode!r}")
    if image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    arr = np.asarray(image.convert(mode), dtype=np.uint8)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).float() / 127.5 - 1.0


@dataclass(frozen=True)
class ImageTransform:
    """Resize the shorter side to ``size``, crop ``size x size``, optionally flip, convert to ``[-1, 1]``.

    Attributes:
        size: output side length in pixels.
        crop: ``"center"`` or ``"random"`` (random needs a generator for reproducibility).
        flip_prob: probability of a horizontal flip (0 disables it).
        interpolation: PIL resampling filter for the resize: nearest, bilinear, bicubic or lanczos.
        mode: ``"RGB"`` (3 channels) or ``"L"`` (1 channel).
    """

    size: int = 32
    crop: Literal["center", "random"] = "center"
    flip_prob: float = 0.0
    interpolation: Literal["nearest", "bilinear", "bicubic", "lanczos"] = "bicubic"
    mode: Literal["RGB", "L"] = "RGB"

    def __post_init__(self) -> None:
        if not isinstance(self.size, int) or self.size < 1:
            raise ValueError(f"size: expected a positive int, got {self.size!r}")
        if self.crop not in ("center", "random"):
            raise ValueError(f"crop: expected 'center' or 'random', got {self.crop!r}")
        if not 0.0 <= self.flip_prob <= 1.0:
            raise ValueError(f"flip_prob: expected a probability in [0, 1], got {self.flip_prob}")
        if self.interpolation not in _RESAMPLE:
            raise ValueError(
                f"interpolation: expected one of {sorted(_RESAMPLE)}, got {self.interpolation!r}"
            )
        if self.mode not in ("RGB", "L"):
            raise ValueError(f"mode: expected 'RGB' or 'L', got {self.mode!r}")

    def resize(self, image: Image.Image) -> Image.Image:
        """Scale so the shorter side equals ``size`` (aspect ratio kept)."""
        w, h = image.size
        scale = self.size / min(w, h)
        new = (max(self.size, round(w * scale)), max(self.size, round(h * scale)))
        return image if new == (w, h) else image.resize(new, _RESAMPLE[self.interpolation])

    def crop_box(
        self, width: int, height: int, generator: torch.Generator | None
    ) -> tuple[int, int, int, int]:
        """The ``(left, top, right, bottom)`` crop of a ``width x height`` image."""
        dx, dy = width - self.size, height - self.size
        if self.crop == "center":
            left, top = dx // 2, dy // 2
        else:
            left = int(torch.randint(0, dx + 1, (1,), generator=generator))
            top = int(torch.randint(0, dy + 1, (1,), generator=generator))
        return left, top, left + self.size, top + self.size

    def __call__(self, image: Image.Image, generator: torch.Generator | None = None) -> torch.Tensor:
        """Transform one PIL image into ``(C, size, size)`` in ``[-1, 1]``."""
        image = self.resize(image)
        image = image.crop(self.crop_box(image.width, image.height, generator))
        x = pil_to_tensor(image, self.mode)
        if self.flip_prob > 0 and float(torch.rand((), generator=generator)) < self.flip_prob:
            x = x.flip(-1)
        return x
