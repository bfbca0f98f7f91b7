"""Live previews of sampling: small pictures of the x0 estimate every few steps, for whoever listens.

:func:`diffcore.sample` asks :func:`hook` for a preview function once per call; with no :func:`previewing` block
around it there is none and sampling reads no tensor for previews. Inside one (the workflow executor opens one
per node, so ``diffuse serve``'s queue page shows the pictures), every ``every`` steps and at the last step the
sampler's x0 estimate of the first few samples goes through the modality's decoder (:func:`preview_decoder`:
the image pipeline's latent decoder; without one, an x0 of shape ``(B, 1 or 3, H, W)`` is shown as it is),
is shrunk to at most ``size`` pixels a side and handed to the listener as ``(k, C, h, w)`` floats in
``[-1, 1]`` on the CPU. :func:`png_data_url` turns them into one PNG strip (written with the standard
library's zlib, no imaging dependency).
"""

from __future__ import annotations

import base64
import contextlib
import contextvars
import struct
import zlib
from collections.abc import Callable, Iterator

import torch
from torch import Tensor
from torch.nn import functional as F

__all__ = ["PreviewListener", "hook", "png_data_url", "preview_decoder", "previewing", "thumbnails"]

PreviewListener = Callable[[str, int, "int | None", Tensor], None]
"""``listener(desc, n, total, images)``: step ``n`` of ``total`` done; ``images`` ``(k, C, h, w)`` in [-1, 1]."""

_LISTENER: contextvars.ContextVar[tuple[PreviewListener, int, int, int] | None] = contextvars.ContextVar(
    "diffcore_preview", default=None
)
_DECODER: contextvars.ContextVar[Callable[[Tensor], Tensor] | None] = contextvars.ContextVar(
    "diffcore_preview_decoder", default=None
)


@contextlib.contextmanager
def previewing(
    listener: PreviewListener, every: int = 4, size: int = 64, max_images: int = 4
) -> Iterator[None]:
    """Within the block (this thread or task), sampling calls ``listener`` every ``every`` steps and at the last
    step with up to ``max_images`` x0 estimates, at most ``size`` pixels a side."""
    if every < 1 or size < 1 or max_images < 1:
        raise ValueError(f"every, size, max_images: expected >= 1, got {every}, {size}, {max_images}")
    token = _LISTENER.set((listener, every, size, max_images))
    try:
        yield
    finally:
        _LISTENER.reset(token)


@contextlib.contextmanager
def preview_decoder(decode: Callable[[Tensor], Tensor]) -> Iterator[None]:
    """Within the block, previews pass the x0 estimate through ``decode`` (model space -> images ``(B, C, H,
    W)`` in [-1, 1]), e.g. a latent pipeline's autoencoder decoder."""
    token = _DECODER.set(decode)
    try:
        yield
    finally:
        _DECODER.reset(token)


def thumbnails(images: Tensor, size: int) -> Tensor:
    """``images`` ``(k, C, H, W)`` shrunk by area averaging so the longer side is at most ``size`` (never
    enlarged), as float32 on the CPU."""
    images = images.detach().float()
    h, w = images.shape[-2:]
    scale = min(1.0, size / max(h, w))
    if scale < 1.0:
        images = F.interpolate(images, size=(max(1, round(h * scale)), max(1, round(w * scale))), mode="area")
    return images.cpu()


def hook(desc: str, total: int | None) -> Callable[[int, Tensor], None] | None:
    """For a sampling loop of ``total`` steps: ``fn(i, x0)`` to call after step ``i`` (0-based), or None when
    no :func:`previewing` block is open (then previews cost nothing)."""
    setting = _LISTENER.get()
    if setting is None:
        return None
    listener, every, size, max_images = setting
    decode = _DECODER.get()

    def fn(i: int, x0: Tensor) -> None:
        n = i + 1
        if n % every and n != total:
            return
        if x0.device.type == "cuda" and torch.cuda.is_current_stream_capturing():
            return
        with torch.no_grad():
            images = x0[:max_images]
            if decode is not None:
                images = decode(images)
            if images.ndim != 4 or images.shape[1] not in (1, 3):
                return  # nothing a picture can show (no decoder for this modality's space)
            listener(desc, n, total, thumbnails(images.clamp(-1.0, 1.0), size))

    return fn


def _png(pixels: Tensor) -> bytes:
    """PNG bytes of ``pixels`` ``(H, W, 3)`` uint8 (RGB, 8 bit, no filter)."""
    h, w, _ = pixels.shape
    raw = b"".join(b"\x00" + bytes(row) for row in pixels.reshape(h, w * 3).numpy())

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw, 6))
        + chunk(b"IEND", b"")
    )


def png_data_url(images: Tensor) -> str:
    """``images`` ``(k, C, h, w)`` in [-1, 1] (C = 1 or 3) side by side as a ``data:image/png;base64,`` URL."""
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"images: expected (k, 1 or 3, h, w), got {tuple(images.shape)}")
    pixels = ((images.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).expand(-1, 3, -1, -1)
    strip = torch.cat(list(pixels), dim=2).permute(1, 2, 0).contiguous()  # (h, k * w, 3)
    return "data:image/png;base64," + base64.b64encode(_png(strip)).decode("ascii")
