"""Writing and reading the field's files: MP4 (H.264 through PyAV), animated GIF, PNG frame strips and grids.

Every write goes through :mod:`diffcore.io` (a temporary file beside the target, then an atomic rename). Clips
are ``(C, T, H, W)`` (or batches ``(B, C, T, H, W)``) floats in ``[-1, 1]`` with ``C`` = 1 or 3.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from diffcore.io import atomic_path, write_json
from PIL import Image
from torch import Tensor

__all__ = [
    "read_image",
    "save_clips",
    "save_frame_strip",
    "save_gif",
    "save_grid",
    "save_metrics_json",
    "save_mp4",
    "to_uint8_frames",
]

PathLike = str | os.PathLike[str]


def to_uint8_frames(clip: Tensor) -> np.ndarray:
    """``(C, T, H, W)`` in [-1, 1] -> ``(T, H, W, 3)`` uint8 (grey clips repeated to RGB); values outside [-1, 1]
    are an error, not clipped."""
    if clip.ndim != 4 or clip.shape[0] not in (1, 3):
        raise ValueError(f"clip: expected (C, T, H, W) with C = 1 or 3, got {tuple(clip.shape)}")
    clip = clip.detach().float().cpu()
    lo, hi = float(clip.min()), float(clip.max())
    if lo < -1.001 or hi > 1.001:
        raise ValueError(f"clip: expected values in [-1, 1], got [{lo:.3f}, {hi:.3f}]")
    if clip.shape[0] == 1:
        clip = clip.expand(3, -1, -1, -1)
    frames = ((clip.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return frames.permute(1, 2, 3, 0).contiguous().numpy()


def save_mp4(clip: Tensor, path: PathLike, fps: int = 8, crf: int = 12) -> Path:
    """Write ``clip`` ``(C, T, H, W)`` as an H.264 MP4 (yuv420p; odd sizes are padded to even with black, which
    H.264 needs) at ``fps`` frames per second; ``crf`` is x264's quality (0 lossless luma .. 51)."""
    import av

    frames = to_uint8_frames(clip)
    t, h, w, _ = frames.shape
    ph, pw = h + h % 2, w + w % 2
    if (ph, pw) != (h, w):
        padded = np.zeros((t, ph, pw, 3), dtype=np.uint8)
        padded[:, :h, :w] = frames
        frames = padded
    if fps < 1:
        raise ValueError(f"fps: expected >= 1, got {fps}")
    with atomic_path(path) as tmp, av.open(str(tmp), mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = pw, ph, "yuv420p"
        stream.options = {"crf": str(crf)}
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return Path(path)


def save_gif(clip: Tensor, path: PathLike, fps: int = 8, scale: int = 1) -> Path:
    """Write ``clip`` ``(C, T, H, W)`` as a looping animated GIF, each pixel shown as ``scale x scale``."""
    frames = to_uint8_frames(clip)
    images = [
        Image.fromarray(f).resize((f.shape[1] * scale, f.shape[0] * scale), Image.NEAREST) for f in frames
    ]
    with atomic_path(path) as tmp:
        images[0].save(
            tmp,
            format="GIF",
            save_all=True,
            append_images=images[1:],
            duration=max(1, round(1000 / fps)),
            loop=0,
        )
    return Path(path)


def _strip(clip: Tensor, pad: int) -> np.ndarray:
    frames = to_uint8_frames(clip)
    t, h, w, _ = frames.shape
    out = np.full((h, t * (w + pad) - pad, 3), 255, dtype=np.uint8)
    for i, f in enumerate(frames):
        out[:, i * (w + pad) : i * (w + pad) + w] = f
    return out


def save_frame_strip(clip: Tensor, path: PathLike, pad: int = 1, scale: int = 1) -> Path:
    """Write the frames of ``clip`` ``(C, T, H, W)`` side by side in one PNG (white gaps of ``pad`` pixels)."""
    return _save_png(_strip(clip, pad), path, scale)


def save_grid(clips: Tensor, path: PathLike, pad: int = 1, scale: int = 1, max_frames: int = 16) -> Path:
    """Write a PNG grid: one row per clip of ``clips`` ``(B, C, T, H, W)``, frames left to right (every
    ``ceil(T / max_frames)``-th frame, so long clips stay readable)."""
    if clips.ndim != 5:
        raise ValueError(f"clips: expected (B, C, T, H, W), got {tuple(clips.shape)}")
    step = -(-clips.shape[2] // max_frames)
    rows = [_strip(c[:, ::step], pad) for c in clips]
    width = rows[0].shape[1]
    out = np.full((len(rows) * (rows[0].shape[0] + pad) - pad, width, 3), 255, dtype=np.uint8)
    for i, r in enumerate(rows):
        out[i * (r.shape[0] + pad) : i * (r.shape[0] + pad) + r.shape[0]] = r
    return _save_png(out, path, scale)


def _save_png(array: np.ndarray, path: PathLike, scale: int) -> Path:
    image = Image.fromarray(array)
    if scale > 1:
        image = image.resize((array.shape[1] * scale, array.shape[0] * scale), Image.NEAREST)
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG")
    return Path(path)


def save_clips(
    clips: Tensor,
    folder: PathLike,
    formats: Sequence[str] = ("mp4", "gif", "png"),
    fps: int = 8,
    captions: Sequence[str] | None = None,
    prefix: str = "sample",
) -> list[Path]:
    """Write each clip of ``clips`` ``(B, C, T, H, W)`` as ``<prefix>_<i>.<mp4|gif|png>`` in ``folder``, plus
    ``grid.png`` (all clips) and ``captions.json`` when ``captions`` are given; returns the paths written."""
    bad = [f for f in formats if f not in ("mp4", "gif", "png")]
    if bad:
        raise ValueError(f"formats: expected any of mp4, gif, png, got {bad}")
    folder = Path(folder)
    written = []
    for i, clip in enumerate(clips):
        stem = folder / f"{prefix}_{i:03d}"
        if "mp4" in formats:
            written.append(save_mp4(clip, stem.with_suffix(".mp4"), fps))
        if "gif" in formats:
            written.append(
                save_gif(clip, stem.with_suffix(".gif"), fps, scale=4 if clip.shape[-1] <= 64 else 1)
            )
        if "png" in formats:
            written.append(save_frame_strip(clip, stem.with_suffix(".png")))
    written.append(save_grid(clips, folder / "grid.png", scale=2 if clips.shape[-1] <= 64 else 1))
    if captions is not None:
        written.append(
            write_json({f"{prefix}_{i:03d}": c for i, c in enumerate(captions)}, folder / "captions.json")
        )
    return written


def read_image(path: PathLike, size: tuple[int, int] | None = None) -> Tensor:
    """A PNG/JPEG as ``(3, H, W)`` in [-1, 1]; with ``size`` ``(H, W)`` it must already have that size (an error
    names both sizes; nothing is resized silently)."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"image: {p} does not exist")
    try:
        with Image.open(p) as im:
            array = np.asarray(im.convert("RGB"), dtype=np.float32)
    except OSError as exc:
        raise ValueError(f"image: {p} is not a readable image ({exc})") from exc
    if size is not None and array.shape[:2] != tuple(size):
        raise ValueError(
            f"image: {p} is {array.shape[0]}x{array.shape[1]}, the pipeline makes {size[0]}x{size[1]}"
        )
    return torch.from_numpy(array).permute(2, 0, 1) / 127.5 - 1


def save_metrics_json(metrics: dict[str, float], path: PathLike) -> Path:
    """Write ``metrics`` as JSON (atomically)."""
    return write_json(metrics, path)
