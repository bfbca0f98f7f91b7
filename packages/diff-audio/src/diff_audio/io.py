"""Audio files and pictures of them: WAV / FLAC through soundfile (16-bit PCM for WAV, 24-bit for FLAC) and
spectrogram PNGs, every write through :func:`diffcore.io.atomic_path` (a temporary file renamed into place).

Audio tensors are ``(channels, samples)`` float in ``[-1, 1]``; values outside are an error, not clipped.
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from diffcore.io import atomic_path, write_bytes, write_json
from torch import Tensor

__all__ = [
    "read_audio",
    "save_audio_batch",
    "save_metrics_json",
    "save_spectrogram_grid",
    "write_audio",
    "write_png",
]

FORMATS = {".wav": ("WAV", "PCM_16"), ".flac": ("FLAC", "PCM_24"), ".ogg": ("OGG", "VORBIS")}
PathLike = str | os.PathLike[str]


def write_audio(path: PathLike, audio: Tensor | np.ndarray, sample_rate: int) -> Path:
    """Write ``audio`` ``(channels, samples)`` (or ``(samples,)``) to ``path``; the suffix picks the format."""
    out = Path(path)
    fmt = FORMATS.get(out.suffix.lower())
    if fmt is None:
        raise ValueError(f"path: {out} must end in one of {sorted(FORMATS)}")
    data = torch.as_tensor(audio).detach().float().cpu().numpy()
    if data.ndim == 1:
        data = data[None]
    if data.ndim != 2:
        raise ValueError(f"audio: expected (channels, samples), got {data.shape}")
    if not np.isfinite(data).all():
        raise ValueError(f"audio: {out.name} holds NaN or inf samples")
    peak = float(np.abs(data).max()) if data.size else 0.0
    if peak > 1.0 + 1e-6:
        raise ValueError(
            f"audio: {out.name} peaks at {peak:.3f}, outside [-1, 1] (scale it; nothing is clipped)"
        )
    with atomic_path(out) as tmp:
        sf.write(str(tmp), data.T, sample_rate, format=fmt[0], subtype=fmt[1])
    return out


def read_audio(path: PathLike) -> tuple[Tensor, int]:
    """``(audio (channels, samples) float32, sample_rate)`` of a file soundfile can read."""
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (RuntimeError, sf.LibsndfileError) as exc:
        raise ValueError(f"input: cannot read {path} as audio ({exc})") from exc
    return torch.from_numpy(data.T.copy()), int(rate)


def save_audio_batch(
    audios: Sequence[Tensor] | Tensor,
    folder: PathLike,
    sample_rate: int,
    prefix: str = "sample",
    fmt: str = "wav",
) -> list[Path]:
    """Write each clip as ``folder/<prefix>_<i>.<fmt>``; returns the paths."""
    return [
        write_audio(Path(folder) / f"{prefix}_{i:03d}.{fmt}", a, sample_rate) for i, a in enumerate(audios)
    ]


def save_metrics_json(metrics: dict[str, float], path: PathLike) -> Path:
    """Metrics as a sorted JSON object."""
    return write_json({k: metrics[k] for k in sorted(metrics)}, path)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return (
        struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    )


def write_png(path: PathLike, rgb: np.ndarray) -> Path:
    """Write an ``(H, W, 3)`` uint8 image as an 8-bit RGB PNG (zlib; PNG spec, ISO/IEC 15948)."""
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"rgb: expected (H, W, 3) uint8, got {rgb.shape} {rgb.dtype}")
    h, w, _ = rgb.shape
    raw = b"".join(b"\x00" + rgb[row].tobytes() for row in range(h))
    png = b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
    png += _png_chunk(b"IDAT", zlib.compress(raw, 6)) + _png_chunk(b"IEND", b"")
    return write_bytes(path, png)


def _colormap(v: np.ndarray) -> np.ndarray:
    """Values in [0, 1] -> a dark-blue / magenta / yellow ramp (uint8 RGB)."""
    stops = np.array(
        [[0, 0, 4], [80, 18, 123], [182, 54, 121], [251, 136, 97], [252, 253, 191]], dtype=np.float64
    )
    pos = np.clip(v, 0, 1) * (len(stops) - 1)
    lo = np.floor(pos).astype(int).clip(0, len(stops) - 2)
    frac = (pos - lo)[..., None]
    return (stops[lo] * (1 - frac) + stops[lo + 1] * frac).astype(np.uint8)


def spectrogram_image(
    audio: Tensor, sample_rate: int, height: int = 128, db_range: float = 80.0, min_width: int = 128
) -> np.ndarray:
    """Log-mel spectrogram of the channel mean as an RGB array ``(height, width, 3)``, low frequencies at the
    bottom, ``db_range`` dB below the clip's peak mapped to black; each frame is repeated so the width is at
    least ``min_width`` pixels."""
    from diff_audio.metrics.features import log_mel

    lm = log_mel(
        torch.as_tensor(audio).float()[None] if torch.as_tensor(audio).ndim == 2 else audio,
        sample_rate,
        height,
    )[0]
    db = 10 * lm.numpy() / np.log(10)
    img = (db - (db.max() - db_range)) / db_range
    repeat = max(1, -(-min_width // img.shape[1]))  # short clips: widen each frame so the tile is readable
    return _colormap(np.repeat(img[::-1], repeat, axis=1))


def save_spectrogram_grid(
    audios: Sequence[Tensor] | Tensor, path: PathLike, sample_rate: int, ncol: int = 4, height: int = 96
) -> Path:
    """A grid of spectrograms (one tile per clip, row-major, 2-pixel gaps) as a PNG."""
    tiles = [spectrogram_image(a, sample_rate, height) for a in audios]
    if not tiles:
        raise ValueError("audios: expected at least one clip")
    th, tw = height, max(t.shape[1] for t in tiles)
    ncol = min(ncol, len(tiles))
    nrow = -(-len(tiles) // ncol)
    grid = np.full((nrow * (th + 2), ncol * (tw + 2), 3), 255, dtype=np.uint8)
    for i, tile in enumerate(tiles):
        r, c = divmod(i, ncol)
        grid[r * (th + 2) : r * (th + 2) + th, c * (tw + 2) : c * (tw + 2) + tile.shape[1]] = tile
    return write_png(path, grid)
