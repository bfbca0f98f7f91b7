"""Reconstruction and consistency measures: PSNR, SSIM and frame-to-frame temporal consistency.

Clips are ``(B, C, T, H, W)`` in [-1, 1]; PSNR and SSIM are computed on ``[0, 1]`` values (peak 1).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["psnr", "ssim", "temporal_consistency"]


def psnr(a: Tensor, b: Tensor) -> Tensor:
    """Per-item PSNR in dB ``(B,)`` of ``a`` and ``b`` ``(B, ...)`` in [-1, 1] (on [0, 1]; inf where equal)."""
    if a.shape != b.shape:
        raise ValueError(f"a, b: expected the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    mse = (((a.float() - b.float()) / 2) ** 2).reshape(a.shape[0], -1).mean(1)
    return 10 * torch.log10(1.0 / mse)


def ssim(a: Tensor, b: Tensor, window: int = 7, sigma: float = 1.5) -> Tensor:
    """Mean SSIM ``(B,)`` (Wang et al. 2004, Eq. 13; ``C1 = 0.01^2``, ``C2 = 0.03^2``) over channels and frames of
    images ``(B, C, H, W)`` or clips ``(B, C, T, H, W)`` in [-1, 1], with a Gaussian window (valid region only)."""
    if a.shape != b.shape or a.ndim not in (4, 5):
        raise ValueError(
            f"a, b: expected equal (B, C, [T,] H, W) shapes, got {tuple(a.shape)}, {tuple(b.shape)}"
        )
    batch = a.shape[0]
    if a.ndim == 5:  # frames as images: (B, C, T, H, W) -> (B * T, C, H, W)
        a, b = (v.transpose(1, 2).reshape(-1, v.shape[1], *v.shape[-2:]) for v in (a, b))
    x, y = (a.float() + 1) / 2, (b.float() + 1) / 2
    window = min(window, x.shape[-1], x.shape[-2])
    coords = torch.arange(window, dtype=torch.float32) - (window - 1) / 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    g = (g / g.sum()).to(x.device)
    kernel = (g[:, None] * g[None, :]).expand(x.shape[1], 1, window, window)

    def blur(v: Tensor) -> Tensor:
        return F.conv2d(v, kernel, groups=x.shape[1])

    mx, my = blur(x), blur(y)
    sxx, syy, sxy = blur(x * x) - mx**2, blur(y * y) - my**2, blur(x * y) - mx * my
    c1, c2 = 0.01**2, 0.03**2
    s = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx**2 + my**2 + c1) * (sxx + syy + c2))
    return s.mean(dim=(1, 2, 3)).view(batch, -1).mean(1)


def temporal_consistency(clips: Tensor, features: Callable[[Tensor], Tensor] | None = None) -> Tensor:
    """Mean cosine similarity ``(B,)`` between the features of consecutive frames of ``clips`` ``(B, C, T, H, W)``.

    ``features`` maps frames ``(N, C, H, W)`` to ``(N, F)`` (e.g. the FVD-local network's frame features); the
    default is the centred pixels of each frame. 1 for a still clip; unrelated frames score near 0.
    """
    if clips.ndim != 5 or clips.shape[2] < 2:
        raise ValueError(f"clips: expected (B, C, T >= 2, H, W), got {tuple(clips.shape)}")
    b, c, t, h, w = clips.shape
    frames = clips.transpose(1, 2).reshape(b * t, c, h, w).float()
    f = features(frames) if features is not None else frames.reshape(b * t, -1)
    f = f.reshape(b, t, -1)
    if features is None:
        f = f - f.mean(dim=(1, 2), keepdim=True)
    return F.cosine_similarity(f[:, 1:], f[:, :-1], dim=-1).mean(1)
