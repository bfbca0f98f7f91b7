"""The field's files: 3DGS PLY (read, write, folders), PNG images and grids, turntable GIF / MP4.

Every write goes through :mod:`diffcore.io` (a temporary file beside the target, then an atomic rename).

PLY layout (binary little-endian, one ``vertex`` element, float32 properties, the order the original 3DGS
code writes and SuperSplat / the SIBR viewer read): ``x y z nx ny nz f_dc_0..2 f_rest_0..(3(K-1)-1) opacity
scale_0..2 rot_0..3``, where ``f_dc_c = sh[:, 0, c]``; ``f_rest`` is **channel-major**: ``f_rest_{c (K-1) + k - 1}
= sh[:, k, c]`` for k >= 1 (all red coefficients, then green, then blue); ``opacity`` is the logit,
``scale_*`` the log standard deviations and ``rot_*`` the quaternion in wxyz order; the normals are written
as zeros and ignored on reading.

Images are float tensors in [0, 1], (H, W, 3) or (H, W, 4) (RGBA).
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from diffcore.io import atomic_open, atomic_path

from diff_3d.gaussians import Gaussians

__all__ = [
    "PlyFolder",
    "read_ply",
    "read_ply_folder",
    "to_uint8",
    "write_gif",
    "write_grid",
    "write_mp4",
    "write_ply",
    "write_png",
    "write_turntable",
]

PathLike = str | os.PathLike[str]


# -- PLY ---------------------------------------------------------------------------------------------------------
def _ply_names(k: int) -> list[str]:
    names = ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
    names += [f"f_rest_{i}" for i in range(3 * (k - 1))]
    names += ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
    return names


def write_ply(gaussians: Gaussians, path: PathLike) -> Path:
    """Write ``gaussians`` as a standard 3DGS PLY (module docstring), atomically; returns the path."""
    from plyfile import PlyData, PlyElement

    g = gaussians.detach().to("cpu", torch.float32)
    n, k = g.num, g.sh.shape[1]
    rest = g.sh[:, 1:].transpose(1, 2).reshape(n, 3 * (k - 1))  # (N, 3, K-1): channel-major
    columns = torch.cat(
        [g.means, torch.zeros(n, 3), g.sh[:, 0], rest, g.opacity_logits[:, None], g.log_scales, g.quats],
        dim=1,
    ).numpy()
    names = _ply_names(k)
    data = np.empty(n, dtype=[(name, "f4") for name in names])
    for i, name in enumerate(names):
        data[name] = columns[:, i]
    with atomic_open(path, "wb") as f:
        PlyData([PlyElement.describe(data, "vertex")]).write(f)
    return Path(path)


def read_ply(path: PathLike) -> Gaussians:
    """Read a 3DGS PLY (module docstring) into float32 :class:`Gaussians`; the SH degree follows the number
    of ``f_rest_*`` properties. A file that is not such a PLY raises ValueError naming the file."""
    from plyfile import PlyData

    p = Path(path)
    try:
        ply = PlyData.read(str(p))
    except FileNotFoundError:
        raise
    except Exception as exc:  # plyfile raises several types for malformed files
        raise ValueError(f"{p}: not a readable PLY file ({exc})") from exc
    if "vertex" not in ply:
        raise ValueError(f"{p}: no 'vertex' element; expected a 3DGS PLY")
    v = ply["vertex"]
    props = {prop.name for prop in v.properties}
    n_rest = sum(1 for name in props if name.startswith("f_rest_"))
    k = 1 + n_rest // 3
    required = [name for name in _ply_names(k) if name not in ("nx", "ny", "nz")]
    missing = [name for name in required if name not in props]
    if missing or n_rest % 3 or k not in (1, 4, 9, 16):
        what = f"missing {', '.join(missing[:4])}" if missing else f"{n_rest} f_rest_* properties"
        raise ValueError(
            f"{p}: not a 3DGS PLY ({what}); expected x, y, z, f_dc_*, f_rest_*, opacity, scale_*, rot_*"
        )
    col = lambda name: torch.from_numpy(np.asarray(v[name], dtype=np.float32))  # noqa: E731
    stack = lambda names: torch.stack([col(name) for name in names], dim=1)  # noqa: E731
    n = len(v.data)
    dc = stack(["f_dc_0", "f_dc_1", "f_dc_2"])
    rest = stack([f"f_rest_{i}" for i in range(n_rest)]) if n_rest else torch.zeros(n, 0)
    sh = torch.cat([dc[:, None], rest.reshape(n, 3, k - 1).transpose(1, 2)], dim=1)
    return Gaussians(
        means=stack(["x", "y", "z"]),
        quats=stack(["rot_0", "rot_1", "rot_2", "rot_3"]),
        log_scales=stack(["scale_0", "scale_1", "scale_2"]),
        opacity_logits=col("opacity"),
        sh=sh.contiguous(),
    )


@dataclass
class PlyFolder:
    """What :func:`read_ply_folder` found.

    Attributes:
        paths: the files read, sorted by name.
        gaussians: one :class:`Gaussians` per path.
        skipped: ``(path, reason)`` for every ``.ply`` that could not be read.
    """

    paths: list[Path] = field(default_factory=list)
    gaussians: list[Gaussians] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)


def read_ply_folder(folder: PathLike) -> PlyFolder:
    """Every ``*.ply`` directly in ``folder`` (sorted by name). Unreadable files are not dropped silently:
    they are listed in ``skipped`` with the reason and one warning names them all."""
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"folder: {root} is not a folder (expected a folder of .ply files)")
    out = PlyFolder()
    for path in sorted(root.glob("*.ply")):
        try:
            gs = read_ply(path)
        except (ValueError, OSError) as exc:
            out.skipped.append((path, str(exc)))
            continue
        out.paths.append(path)
        out.gaussians.append(gs)
    if out.skipped:
        names = ", ".join(p.name for p, _ in out.skipped)
        warnings.warn(f"{root}: skipped {len(out.skipped)} unreadable .ply file(s): {names}", stacklevel=2)
    return out


# -- images --------------------------------------------------------------------------------------------------------
def to_uint8(image: torch.Tensor) -> np.ndarray:
    """(..., C) float in [0, 1] (clamped) -> uint8 numpy array (rounded)."""
    return (image.detach().float().cpu().clamp(0, 1) * 255).round().to(torch.uint8).numpy()


def _check_image(name: str, image: torch.Tensor) -> None:
    if not isinstance(image, torch.Tensor) or image.ndim != 3 or image.shape[-1] not in (3, 4):
        got = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
        raise ValueError(f"{name}: expected an (H, W, 3) or (H, W, 4) image tensor, got {got}")


def _pil(image: torch.Tensor, scale: int = 1):
    from PIL import Image

    im = Image.fromarray(to_uint8(image))
    if scale != 1:
        im = im.resize((im.width * scale, im.height * scale), Image.Resampling.NEAREST)
    return im


def write_png(path: PathLike, image: torch.Tensor, *, scale: int = 1) -> Path:
    """Write an (H, W, 3 | 4) image in [0, 1] as PNG, each pixel ``scale x scale``, atomically."""
    _check_image("image", image)
    with atomic_path(path) as tmp:
        _pil(image, scale).save(tmp, format="PNG")
    return Path(path)


def write_grid(
    path: PathLike,
    rows: Sequence[Sequence[torch.Tensor]] | torch.Tensor,
    *,
    pad: int = 2,
    scale: int = 1,
    pad_value: float = 1.0,
) -> Path:
    """Write images as a grid PNG: ``rows`` is a list of rows of (H, W, 3) images (all the same size) or a
    tensor (R, C, H, W, 3); ``pad`` pixels of ``pad_value`` between and around them."""
    grid = [list(r) for r in rows]
    if not grid or not grid[0]:
        raise ValueError("rows: expected at least one row with at least one image")
    h, w, _ = grid[0][0].shape
    for r in grid:
        for im in r:
            _check_image("rows", im)
            if im.shape[:2] != (h, w):
                raise ValueError(f"rows: expected every image {h}x{w}, got {im.shape[0]}x{im.shape[1]}")
    n_rows, n_cols = len(grid), max(len(r) for r in grid)
    canvas = torch.full((pad + n_rows * (h + pad), pad + n_cols * (w + pad), 3), pad_value)
    for i, r in enumerate(grid):
        for j, im in enumerate(r):
            y, x = pad + i * (h + pad), pad + j * (w + pad)
            canvas[y : y + h, x : x + w] = im[..., :3].detach().float().cpu()
    return write_png(path, canvas, scale=scale)


def _check_frames(frames: torch.Tensor | Sequence[torch.Tensor]) -> list[torch.Tensor]:
    frames = list(frames)
    if not frames:
        raise ValueError("frames: expected at least one (H, W, 3) frame")
    for f in frames:
        _check_image("frames", f)
    return frames


def write_gif(
    path: PathLike, frames: torch.Tensor | Sequence[torch.Tensor], *, fps: int = 12, scale: int = 1
) -> Path:
    """Write frames (T, H, W, 3) in [0, 1] as a looping animated GIF, atomically."""
    if fps < 1:
        raise ValueError(f"fps: expected >= 1, got {fps}")
    images = [_pil(f[..., :3], scale) for f in _check_frames(frames)]
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


def write_mp4(
    path: PathLike,
    frames: torch.Tensor | Sequence[torch.Tensor],
    *,
    fps: int = 12,
    scale: int = 1,
    crf: int = 12,
) -> Path:
    """Write frames (T, H, W, 3) in [0, 1] as an H.264 MP4 through PyAV (``av``), atomically; odd sizes are
    padded to even with black (H.264 with yuv420p needs even sizes). ImportError without PyAV."""
    import av

    if fps < 1:
        raise ValueError(f"fps: expected >= 1, got {fps}")
    arrays = [np.asarray(_pil(f[..., :3], scale)) for f in _check_frames(frames)]
    h, w, _ = arrays[0].shape
    ph, pw = h + h % 2, w + w % 2
    with atomic_path(path) as tmp, av.open(str(tmp), mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = pw, ph, "yuv420p"
        stream.options = {"crf": str(crf)}
        for a in arrays:
            padded = np.zeros((ph, pw, 3), dtype=np.uint8)
            padded[:h, :w] = a
            for packet in stream.encode(av.VideoFrame.from_ndarray(padded, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return Path(path)


def write_turntable(
    path: PathLike, frames: torch.Tensor | Sequence[torch.Tensor], *, fps: int = 12, scale: int = 1
) -> list[Path]:
    """Write a turntable as ``<path>.gif`` and, when PyAV is installed, ``<path>.mp4``; returns the files."""
    base = Path(path).with_suffix("")
    written = [write_gif(base.with_suffix(".gif"), frames, fps=fps, scale=scale)]
    try:
        import av  # noqa: F401
    except ImportError:
        return written
    written.append(write_mp4(base.with_suffix(".mp4"), frames, fps=fps, scale=scale))
    return written


def grid_shape(n: int) -> tuple[int, int]:
    """Rows and columns of a near-square grid for n images."""
    cols = math.ceil(math.sqrt(n))
    return math.ceil(n / cols), cols
