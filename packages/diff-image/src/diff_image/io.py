"""Images and metrics on disk: PNG grids, per-image PNGs, PNGs read back, metrics as JSON.

Pixel convention: model-side images are float tensors ``(B, C, H, W)`` in ``[-1, 1]``; on disk they are
8-bit PNGs. The conversion is ``u = round((x + 1) * 127.5)`` clamped to ``[0, 255]`` (so -1 -> 0, 1 -> 255),
and back ``x = u / 127.5 - 1``; a uint8 image survives the round trip exactly. ``C`` is 1 (grey) or 3 (RGB).

Every write goes through :mod:`diffcore.io` (a temporary file in the same folder, then an atomic rename), so an
interrupted run never leaves a half-written PNG or JSON behind.
"""

from __future__ import annotations

import io
import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from diffcore.io import write_bytes
from PIL import Image

__all__ = [
    "from_uint8",
    "make_grid",
    "read_png",
    "read_pngs",
    "save_grid",
    "save_images",
    "save_metrics_json",
    "save_video",
    "to_uint8",
]


def _check_batch(images: torch.Tensor, name: str = "images") -> torch.Tensor:
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor (B, C, H, W), got {type(images).__name__}")
    if images.ndim == 3:
        images = images.unsqueeze(0)
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"{name}: expected shape (B, C, H, W) with C in (1, 3), got {tuple(images.shape)}")
    return images


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """Float images in ``[-1, 1]`` -> uint8 arrays.

    Args:
        images: ``(B, C, H, W)`` or ``(C, H, W)`` float tensor in ``[-1, 1]`` (values outside are clamped).

    Returns:
        ``(B, H, W, C)`` uint8 numpy array, ``u = round((x + 1) * 127.5)``.
    """
    images = _check_batch(images)
    u = ((images.detach().float().cpu() + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8)
    return u.permute(0, 2, 3, 1).contiguous().numpy()


def from_uint8(array: np.ndarray) -> torch.Tensor:
    """uint8 ``(H, W, C)``, ``(H, W)`` or ``(B, H, W, C)`` array -> float in ``[-1, 1]``, channels first."""
    arr = np.asarray(array)
    if arr.dtype != np.uint8:
        raise TypeError(f"array: expected dtype uint8, got {arr.dtype}")
    if arr.ndim == 2:
        arr = arr[:, :, None]
    t = torch.from_numpy(arr.copy()).float() / 127.5 - 1.0
    return t.permute(2, 0, 1) if t.ndim == 3 else t.permute(0, 3, 1, 2)


def make_grid(
    images: torch.Tensor, nrow: int | None = None, padding: int = 2, pad_value: int = 0
) -> np.ndarray:
    """Tile a batch into one uint8 image.

    Args:
        images: ``(B, C, H, W)`` in ``[-1, 1]``.
        nrow: images per row; default ``ceil(sqrt(B))``.
        padding: pixels between tiles and around the border.
        pad_value: uint8 value of the padding.

    Returns:
        ``(rows * (H + p) + p, nrow * (W + p) + p, C)`` uint8 array.
    """
    u = to_uint8(images)
    b, h, w, c = u.shape
    nrow = nrow if nrow is not None else max(1, math.ceil(math.sqrt(b)))
    if nrow < 1:
        raise ValueError(f"nrow: expected >= 1, got {nrow}")
    if padding < 0:
        raise ValueError(f"padding: expected >= 0, got {padding}")
    if not 0 <= pad_value <= 255:
        raise ValueError(f"pad_value: expected a uint8 value in [0, 255], got {pad_value}")
    rows = math.ceil(b / nrow)
    grid = np.full((rows * (h + padding) + padding, nrow * (w + padding) + padding, c), pad_value, np.uint8)
    for i in range(b):
        r, col = divmod(i, nrow)
        y, x = padding + r * (h + padding), padding + col * (w + padding)
        grid[y : y + h, x : x + w] = u[i]
    return grid


def _png_bytes(array: np.ndarray) -> bytes:
    img = Image.fromarray(np.ascontiguousarray(array[:, :, 0] if array.shape[2] == 1 else array))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def save_grid(
    images: torch.Tensor,
    path: str | os.PathLike[str],
    nrow: int | None = None,
    padding: int = 2,
    pad_value: int = 0,
) -> Path:
    """Save ``images`` ``(B, C, H, W)`` in ``[-1, 1]`` as one PNG grid at ``path`` (see :func:`make_grid`)."""
    out = Path(path)
    write_bytes(out, _png_bytes(make_grid(images, nrow=nrow, padding=padding, pad_value=pad_value)))
    return out


def save_images(
    images: torch.Tensor,
    directory: str | os.PathLike[str],
    prefix: str = "",
    start_index: int = 0,
    digits: int = 5,
) -> list[Path]:
    """Save each image of ``(B, C, H, W)`` in ``[-1, 1]`` as ``directory/{prefix}{index:0{digits}d}.png``.

    Returns the written paths in batch order.
    """
    u = to_uint8(images)
    folder = Path(directory)
    paths = []
    for i, arr in enumerate(u):
        p = folder / f"{prefix}{start_index + i:0{digits}d}.png"
        write_bytes(p, _png_bytes(arr))
        paths.append(p)
    return paths


def read_png(path: str | os.PathLike[str], mode: str | None = None) -> torch.Tensor:
    """Read one image file as a float tensor ``(C, H, W)`` in ``[-1, 1]``.

    Args:
        path: image file (PNG, or anything PIL reads).
        mode: ``"RGB"`` (C=3), ``"L"`` (C=1), or None to keep grey images grey and turn the rest into RGB.
    """
    if mode not in (None, "RGB", "L"):
        raise ValueError(f"mode: expected None, 'RGB' or 'L', got {mode!r}")
    with Image.open(path) as img:
        target = mode or ("L" if img.mode in ("L", "1", "I;16", "I") else "RGB")
        arr = np.asarray(img.convert(target), dtype=np.uint8)
    return from_uint8(arr)


def read_pngs(directory: str | os.PathLike[str], mode: str | None = None) -> torch.Tensor:
    """Read every ``*.png`` in ``directory`` (sorted by name) as ``(B, C, H, W)`` in ``[-1, 1]``.

    All images must share one size and channel count.
    """
    folder = Path(directory)
    paths = sorted(folder.glob("*.png"))
    if not paths:
        raise FileNotFoundError(f"directory: {folder} holds no .png files")
    tensors = [read_png(p, mode=mode) for p in paths]
    shapes = {tuple(t.shape) for t in tensors}
    if len(shapes) != 1:
        raise ValueError(
            f"directory: {folder} mixes image shapes {sorted(shapes)}; pass mode= or resize first"
        )
    return torch.stack(tensors)


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (str, int, bool)) or value is None:
        return value
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Sequence):
        return [_jsonable(v) for v in value]
    if hasattr(value, "to_dict"):
        return _jsonable(value.to_dict())
    raise TypeError(f"metrics: value of type {type(value).__name__} cannot be written as JSON")


def save_metrics_json(metrics: Mapping[str, Any], path: str | os.PathLike[str]) -> Path:
    """Write ``metrics`` as indented JSON at ``path``, atomically.

    Tensors, numpy arrays and numpy scalars become JSON numbers/lists; objects with ``to_dict()`` are
    expanded; non-finite floats (NaN, inf) are written as ``null`` so the file stays strict JSON.
    """
    if not isinstance(metrics, Mapping):
        raise TypeError(f"metrics: expected a mapping, got {type(metrics).__name__}")
    text = json.dumps(_jsonable(metrics), indent=2, sort_keys=True, allow_nan=False)
    out = Path(path)
    write_bytes(out, (text + "\n").encode())
    return out


def save_video(
    frames: torch.Tensor, path: str | os.PathLike[str], fps: int = 8, format: str = "auto"
) -> Path:
    """Write frames ``(T, C, H, W)`` in ``[-1, 1]`` as a video: ``mp4`` (H.264 through PyAV, which must be
    installed; odd sizes padded to even with black), ``gif`` (PIL, looping), or ``auto`` (mp4 when PyAV is
    installed, else gif). ``path``'s suffix is replaced by the format's. Returns the written path."""
    if format not in ("auto", "mp4", "gif"):
        raise ValueError(f"format: expected 'auto', 'mp4' or 'gif', got {format!r}")
    if fps < 1:
        raise ValueError(f"fps: expected >= 1, got {fps}")
    if format == "auto":
        try:
            import av  # noqa: F401
        except ImportError:
            format = "gif"
        else:
            format = "mp4"
    arrays = to_uint8(_check_batch(frames, "frames"))
    if arrays.shape[-1] == 1:
        arrays = np.repeat(arrays, 3, axis=-1)
    out = Path(path).with_suffix(f".{format}")
    if format == "gif":
        images = [Image.fromarray(a) for a in arrays]
        buffer = io.BytesIO()
        images[0].save(buffer, format="GIF", save_all=True, append_images=images[1:],
                       duration=max(1, round(1000 / fps)), loop=0)  # fmt: skip
        write_bytes(out, buffer.getvalue())
        return out
    return _save_mp4(arrays, out, fps)


def _save_mp4(arrays: np.ndarray, path: Path, fps: int) -> Path:
    try:
        import av
    except ImportError as exc:
        raise ImportError(
            "format: mp4 needs PyAV (pip install av), which is not installed; use 'gif'"
        ) from exc
    t, h, w, _ = arrays.shape
    padded = np.zeros((t, h + h % 2, w + w % 2, 3), dtype=np.uint8)
    padded[:, :h, :w] = arrays
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = padded.shape[2], padded.shape[1], "yuv420p"
        for frame in padded:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    write_bytes(path, buffer.getvalue())
    return path
