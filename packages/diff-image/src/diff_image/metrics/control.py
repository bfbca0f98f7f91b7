"""Does spatial control work? Overlap between requested and generated object layouts, read from pixels.

A ControlNet on the shapes data is asked for a layout (edges, segmentation or boxes of a reference scene);
the generated image's **foreground** is every pixel that is not the background colour (a pixel counts as
background iff it lies within ``tolerance`` of the background RGB, as in
:func:`diff_image.metrics.adherence.segment_colours`). The score is the intersection over union (Jaccard
index) of that foreground with the reference scene's object pixels, per image, then averaged. The same
number for samples drawn without the control (same noise, same caption) is the baseline: control works
when the controlled IoU is clearly above it.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from diff_image.io import to_uint8

__all__ = ["foreground_iou", "foreground_mask"]


def foreground_mask(
    images: Tensor, background: tuple[int, int, int] = (0, 0, 0), tolerance: float = 60.0
) -> Tensor:
    """``(B, H, W)`` bool: pixels of RGB ``images`` ``(B, 3, H, W)`` in ``[-1, 1]`` farther than ``tolerance``
    (Euclidean, 0..255 scale) from ``background``."""
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images: expected RGB (B, 3, H, W) in [-1, 1], got {tuple(images.shape)}")
    if not 0 < tolerance < 255:
        raise ValueError(f"tolerance: expected 0 < tolerance < 255 (RGB distance), got {tolerance}")
    pixels = to_uint8(images).astype(np.float64)  # (B, H, W, 3)
    dist = np.linalg.norm(pixels - np.asarray(background, dtype=np.float64), axis=-1)
    return torch.from_numpy(dist > tolerance)


def foreground_iou(
    images: Tensor,
    target: Tensor,
    background: tuple[int, int, int] = (0, 0, 0),
    tolerance: float = 60.0,
) -> Tensor:
    """Per-image IoU ``(B,)`` of the generated foreground of ``images`` ``(B, 3, H, W)`` with ``target``
    ``(B, H, W)`` (bool or {0, 1}: the requested object pixels). An image whose union is empty scores 1."""
    fg = foreground_mask(images, background, tolerance)
    want = target.detach().cpu().bool()
    if want.shape != fg.shape:
        raise ValueError(f"target: expected (B, H, W) = {tuple(fg.shape)}, got {tuple(target.shape)}")
    inter = (fg & want).flatten(1).sum(1).double()
    union = (fg | want).flatten(1).sum(1).double()
    return torch.where(union > 0, inter / union.clamp_min(1), torch.ones_like(union))
