"""Pinhole cameras in the OpenCV convention, and the NeRF-synthetic (Blender) ``transforms.json`` format.

Convention: a :class:`Camera` holds ``viewmat``, the 4x4 **world-to-camera** matrix with OpenCV camera axes
(x right, y down, z forward: points in front of the camera have z > 0), and the intrinsics ``fx, fy, cx, cy``
in pixels for an image of ``width x height``. A camera-space point ``(x, y, z)`` lands at pixel coordinates
``(fx x / z + cx, fy y / z + cy)``, where the centre of pixel ``(row i, column j)`` is ``(j + 0.5, i + 0.5)``
(gsplat's convention), so a centred principal point is ``cx = width / 2``.

The Blender / NeRF-synthetic convention (``transforms.json``) stores ``transform_matrix``, the
**camera-to-world** matrix with OpenGL camera axes (x right, y up, z backward), and ``camera_angle_x``, the
horizontal field of view in radians. Converting flips the camera's y and z axes:
``c2w_opencv = c2w_opengl @ diag(1, -1, -1, 1)``.

The scenes of this package are y-up; :func:`orbit_cameras` and :func:`random_cameras` circle the y axis.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch

__all__ = [
    "OPENGL_TO_OPENCV",
    "Camera",
    "look_at",
    "orbit_cameras",
    "random_cameras",
    "read_transforms",
    "write_transforms",
]

OPENGL_TO_OPENCV = torch.diag(torch.tensor([1.0, -1.0, -1.0, 1.0], dtype=torch.float64))
"""Right-multiplying a camera-to-world matrix by this swaps between OpenGL and OpenCV camera axes (its own inverse)."""

DEFAULT_FOV_X = 0.6911112070083618
"""The horizontal field of view (radians) of the NeRF-synthetic scenes, used by default."""


@dataclass
class Camera:
    """A pinhole camera (module docstring: OpenCV axes, pixel centres at +0.5).

    Attributes:
        viewmat: (4, 4) world-to-camera matrix, OpenCV axes.
        fx, fy: focal lengths in pixels.
        cx, cy: principal point in pixels.
        width, height: image size in pixels.
    """

    viewmat: torch.Tensor
    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int

    def __post_init__(self) -> None:
        if not isinstance(self.viewmat, torch.Tensor) or self.viewmat.shape != (4, 4):
            got = (
                tuple(self.viewmat.shape)
                if isinstance(self.viewmat, torch.Tensor)
                else type(self.viewmat).__name__
            )
            raise ValueError(f"viewmat: expected a (4, 4) world-to-camera tensor, got {got}")
        for name in ("width", "height"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: expected a positive integer number of pixels, got {value!r}")
        for name in ("fx", "fy"):
            if not float(getattr(self, name)) > 0:
                raise ValueError(f"{name}: expected a focal length > 0 pixels, got {getattr(self, name)!r}")

    # -- construction -------------------------------------------------------------------------------------------
    @classmethod
    def from_fov(cls, viewmat: torch.Tensor, width: int, height: int, fov_x: float = DEFAULT_FOV_X) -> Camera:
        """Square pixels, centred principal point, horizontal field of view ``fov_x`` (radians)."""
        if not 0 < fov_x < math.pi:
            raise ValueError(f"fov_x: expected a field of view in (0, pi) radians, got {fov_x!r}")
        f = 0.5 * width / math.tan(0.5 * fov_x)
        return cls(viewmat, f, f, width / 2, height / 2, width, height)

    @classmethod
    def from_c2w_opengl(
        cls, c2w: torch.Tensor, camera_angle_x: float, width: int, height: int, fov_y: float | None = None
    ) -> Camera:
        """A camera from a Blender / NeRF-synthetic ``transform_matrix`` (camera-to-world, OpenGL axes) and
        ``camera_angle_x``; ``fov_y`` (radians) if the pixels are not square."""
        c2w = torch.as_tensor(c2w, dtype=torch.float64)
        if c2w.shape != (4, 4):
            raise ValueError(f"c2w: expected a (4, 4) camera-to-world matrix, got {tuple(c2w.shape)}")
        cam = cls.from_fov(torch.linalg.inv(c2w @ OPENGL_TO_OPENCV).float(), width, height, camera_angle_x)
        if fov_y is not None:
            cam.fy = 0.5 * height / math.tan(0.5 * fov_y)
        return cam

    # -- views ----------------------------------------------------------------------------------------------------
    @property
    def K(self) -> torch.Tensor:
        """(3, 3) intrinsic matrix (same dtype and device as ``viewmat``)."""
        k = torch.zeros(3, 3, dtype=self.viewmat.dtype, device=self.viewmat.device)
        k[0, 0], k[1, 1], k[0, 2], k[1, 2], k[2, 2] = self.fx, self.fy, self.cx, self.cy, 1.0
        return k

    def c2w(self) -> torch.Tensor:
        """(4, 4) camera-to-world matrix, OpenCV axes."""
        return torch.linalg.inv(self.viewmat.double()).to(self.viewmat.dtype)

    def c2w_opengl(self) -> torch.Tensor:
        """(4, 4) camera-to-world matrix, OpenGL axes (Blender's ``transform_matrix``)."""
        return (torch.linalg.inv(self.viewmat.double()) @ OPENGL_TO_OPENCV.to(self.viewmat.device)).to(
            self.viewmat.dtype
        )

    @property
    def position(self) -> torch.Tensor:
        """(3,) the camera centre in world coordinates: ``-R^T t``."""
        r, t = self.viewmat[:3, :3], self.viewmat[:3, 3]
        return -(r.T @ t)

    @property
    def fov_x(self) -> float:
        """Horizontal field of view (radians): Blender's ``camera_angle_x``."""
        return 2 * math.atan(0.5 * self.width / self.fx)

    def to(self, *args, **kwargs) -> Camera:
        """A copy with ``viewmat`` moved / cast (``torch.Tensor.to``)."""
        return Camera(
            self.viewmat.to(*args, **kwargs), self.fx, self.fy, self.cx, self.cy, self.width, self.height
        )

    def resized(self, width: int, height: int) -> Camera:
        """The same camera for an image resampled to ``width x height`` (intrinsics scaled)."""
        sx, sy = width / self.width, height / self.height
        return Camera(self.viewmat, self.fx * sx, self.fy * sy, self.cx * sx, self.cy * sy, width, height)

    def world_to_camera(self, points: torch.Tensor) -> torch.Tensor:
        """(..., 3) world points -> (..., 3) camera-space points (OpenCV axes)."""
        r, t = self.viewmat[:3, :3].to(points.dtype), self.viewmat[:3, 3].to(points.dtype)
        return points @ r.T + t

    def project(self, points: torch.Tensor) -> torch.Tensor:
        """(..., 3) world points -> (..., 2) pixel coordinates (x = column, y = row; module docstring)."""
        p = self.world_to_camera(points)
        return torch.stack(
            [self.fx * p[..., 0] / p[..., 2] + self.cx, self.fy * p[..., 1] / p[..., 2] + self.cy], -1
        )

    def rays(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Ray origins and unit directions through every pixel centre, world coordinates, each (H, W, 3)."""
        dev, dt = self.viewmat.device, self.viewmat.dtype
        j = torch.arange(self.width, device=dev, dtype=dt) + 0.5
        i = torch.arange(self.height, device=dev, dtype=dt) + 0.5
        ii, jj = torch.meshgrid(i, j, indexing="ij")
        d_cam = torch.stack([(jj - self.cx) / self.fx, (ii - self.cy) / self.fy, torch.ones_like(ii)], -1)
        r = self.viewmat[:3, :3]
        d = d_cam @ r  # R^T d for row vectors
        d = d / d.norm(dim=-1, keepdim=True)
        return self.position.expand_as(d), d


def look_at(
    eye: torch.Tensor | tuple[float, float, float],
    target: torch.Tensor | tuple[float, float, float] = (0.0, 0.0, 0.0),
    up: torch.Tensor | tuple[float, float, float] = (0.0, 1.0, 0.0),
) -> torch.Tensor:
    """(4, 4) float32 world-to-camera matrix (OpenCV axes) of a camera at ``eye`` looking at ``target``, with
    ``up`` pointing up in the image (towards smaller row indices)."""
    eye_t = torch.as_tensor(eye, dtype=torch.float64)
    forward = torch.as_tensor(target, dtype=torch.float64) - eye_t
    if forward.norm() < 1e-12:
        raise ValueError("eye: expected a point different from target")
    forward = forward / forward.norm()
    right = torch.linalg.cross(forward, torch.as_tensor(up, dtype=torch.float64), dim=-1)
    if right.norm() < 1e-9:
        raise ValueError("up: expected a direction not parallel to the viewing direction")
    right = right / right.norm()
    down = torch.linalg.cross(forward, right, dim=-1)
    r = torch.stack([right, down, forward])  # rows: camera axes in world coordinates
    view = torch.eye(4, dtype=torch.float64)
    view[:3, :3] = r
    view[:3, 3] = -r @ eye_t
    return view.float()


def orbit_cameras(
    n: int,
    radius: float = 2.6,
    elevation: float = 20.0,
    *,
    width: int = 64,
    height: int = 64,
    fov_x: float = DEFAULT_FOV_X,
    target: tuple[float, float, float] = (0.0, 0.0, 0.0),
    start_azimuth: float = 0.0,
) -> list[Camera]:
    """``n`` cameras evenly spaced in azimuth on a circle about the y axis, ``elevation`` degrees above the xz
    plane, at distance ``radius`` from ``target``, all looking at it (a turntable)."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n: expected an integer >= 1, got {n!r}")
    if not radius > 0:
        raise ValueError(f"radius: expected > 0, got {radius!r}")
    if not -90 < elevation < 90:
        raise ValueError(f"elevation: expected degrees in (-90, 90), got {elevation!r}")
    cams = []
    el = math.radians(elevation)
    for k in range(n):
        az = math.radians(start_azimuth) + 2 * math.pi * k / n
        eye = (
            target[0] + radius * math.cos(el) * math.sin(az),
            target[1] + radius * math.sin(el),
            target[2] + radius * math.cos(el) * math.cos(az),
        )
        cams.append(Camera.from_fov(look_at(eye, target), width, height, fov_x))
    return cams


def random_cameras(
    n: int,
    radius: float = 2.6,
    generator: torch.Generator | None = None,
    *,
    min_elevation: float = -30.0,
    max_elevation: float = 75.0,
    width: int = 64,
    height: int = 64,
    fov_x: float = DEFAULT_FOV_X,
) -> list[Camera]:
    """``n`` cameras at distance ``radius`` looking at the origin, positions uniform on the part of the sphere
    between ``min_elevation`` and ``max_elevation`` degrees (uniform in area: sin(elevation) is uniform)."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n: expected an integer >= 1, got {n!r}")
    if not -90 <= min_elevation < max_elevation <= 90:
        raise ValueError(
            f"min_elevation, max_elevation: expected -90 <= min < max <= 90, got {min_elevation}, {max_elevation}"
        )
    lo, hi = math.sin(math.radians(min_elevation)), math.sin(math.radians(max_elevation))
    s = lo + (hi - lo) * torch.rand(n, generator=generator, dtype=torch.float64)
    az = 2 * math.pi * torch.rand(n, generator=generator, dtype=torch.float64)
    # keep away from the poles, where "up" is parallel to the view direction
    s = s.clamp(-0.999, 0.999)
    c = (1 - s * s).sqrt()
    eyes = torch.stack([radius * c * az.sin(), radius * s, radius * c * az.cos()], -1)
    return [Camera.from_fov(look_at(e), width, height, fov_x) for e in eyes]


# -- transforms.json ----------------------------------------------------------------------------------------------
def _transforms_file(folder: Path, split: str | None) -> Path:
    names = [f"transforms_{split}.json"] if split else []
    names.append("transforms.json")
    for name in names:
        if (folder / name).is_file():
            return folder / name
    raise FileNotFoundError(f"folder: no {' or '.join(names)} in {folder}")


def _image_path(folder: Path, file_path: str) -> Path:
    p = (folder / file_path).resolve()
    if p.suffix == "":  # NeRF-synthetic writes "./train/r_0" without the extension
        p = p.with_suffix(".png")
    return p


def read_transforms(
    folder: str | Path,
    *,
    split: str | None = None,
    background: tuple[float, float, float] = (1.0, 1.0, 1.0),
    size: tuple[int, int] | None = None,
    max_views: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor, list[Camera]]:
    """Images and cameras of one multi-view set in the NeRF-synthetic format.

    Reads ``transforms_<split>.json`` (when ``split`` is given and the file exists) or ``transforms.json``:
    ``camera_angle_x`` (or ``fl_x``/``fl_y``/``cx``/``cy`` in pixels, the instant-ngp keys) and ``frames``, each
    with ``file_path`` (relative to ``folder``; ``.png`` added when it has no extension) and
    ``transform_matrix`` (camera-to-world, OpenGL axes).

    Returns ``images`` (V, H, W, 3) float in [0, 1], RGBA composited over ``background``; ``alphas``
    (V, H, W) (ones for RGB files); and the V cameras (OpenCV convention, module docstring). ``size``:
    ``(width, height)`` to resample to (box filter; intrinsics scaled); ``max_views``: keep the first ones.
    """
    import numpy as np
    from PIL import Image

    folder = Path(folder)
    path = _transforms_file(folder, split)
    meta = json.loads(path.read_text(encoding="utf-8"))
    frames = meta.get("frames")
    if not isinstance(frames, list) or not frames:
        raise ValueError(f"{path}: expected a non-empty 'frames' list")
    if max_views is not None:
        frames = frames[:max_views]
    images, alphas, cameras = [], [], []
    bg = np.asarray(background, dtype=np.float32)
    for frame in frames:
        img_path = _image_path(folder, frame["file_path"])
        with Image.open(img_path) as im:
            im = im.convert("RGBA")
            w0, h0 = im.size
            if size is not None and (w0, h0) != tuple(size):
                im = im.resize(tuple(size), Image.Resampling.BOX)
            rgba = np.asarray(im, dtype=np.float32) / 255.0
        alpha = rgba[..., 3:]
        images.append(torch.from_numpy(rgba[..., :3] * alpha + bg * (1 - alpha)))
        alphas.append(torch.from_numpy(alpha[..., 0].copy()))
        cameras.append(_frame_camera(meta, frame, w0, h0, path).resized(*(size or (w0, h0))))
    return torch.stack(images), torch.stack(alphas), cameras


def _frame_camera(meta: dict, frame: dict, width: int, height: int, path: Path) -> Camera:
    c2w = torch.tensor(frame["transform_matrix"], dtype=torch.float64)
    if c2w.shape != (4, 4):
        raise ValueError(f"{path}: expected 4x4 transform_matrix entries, got {tuple(c2w.shape)}")
    view = torch.linalg.inv(c2w @ OPENGL_TO_OPENCV).float()
    get = lambda key: frame.get(key, meta.get(key))  # noqa: E731
    if get("fl_x") is not None:
        fx = float(get("fl_x"))
        fy = float(get("fl_y") or fx)
        cx = float(get("cx") if get("cx") is not None else width / 2)
        cy = float(get("cy") if get("cy") is not None else height / 2)
        return Camera(view, fx, fy, cx, cy, width, height)
    if get("camera_angle_x") is None:
        raise ValueError(f"{path}: expected 'camera_angle_x' or 'fl_x' for the intrinsics")
    cam = Camera.from_fov(view, width, height, float(get("camera_angle_x")))
    if get("camera_angle_y") is not None:
        cam.fy = 0.5 * height / math.tan(0.5 * float(get("camera_angle_y")))
    return cam


def write_transforms(
    folder: str | Path,
    images: torch.Tensor,
    cameras: list[Camera],
    *,
    alphas: torch.Tensor | None = None,
    name: str = "transforms.json",
    image_dir: str = "images",
) -> Path:
    """Write a multi-view set that :func:`read_transforms` (and NeRF-synthetic readers) read back.

    ``images`` (V, H, W, 3) in [0, 1]; ``alphas`` (V, H, W) makes RGBA PNGs (then store the images
    *un*-composited, or over black). PNGs go to ``folder/image_dir/view_###.png``; the JSON holds
    ``camera_angle_x`` of the first camera and per frame ``fl_x, fl_y, cx, cy``, ``w``, ``h`` and
    ``transform_matrix`` (camera-to-world, OpenGL axes). Every file is written atomically.
    """
    from diffcore.io import write_json

    from diff_3d.io import write_png

    folder = Path(folder)
    if images.ndim != 4 or images.shape[-1] != 3 or images.shape[0] != len(cameras):
        raise ValueError(
            f"images: expected shape ({len(cameras)}, H, W, 3) (one per camera), got {tuple(images.shape)}"
        )
    frames = []
    for k, cam in enumerate(cameras):
        rel = f"{image_dir}/view_{k:03d}.png"
        rgb = images[k]
        if alphas is not None:
            rgb = torch.cat([rgb, alphas[k][..., None]], dim=-1)
        write_png(folder / rel, rgb)
        frames.append(
            {
                "file_path": rel,
                "transform_matrix": cam.c2w_opengl().double().tolist(),
                "fl_x": cam.fx,
                "fl_y": cam.fy,
                "cx": cam.cx,
                "cy": cam.cy,
                "w": cam.width,
                "h": cam.height,
            }
        )
    return write_json({"camera_angle_x": cameras[0].fov_x, "frames": frames}, folder / name)
