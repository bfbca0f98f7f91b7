"""Motion adherence on the moving-shapes set: does a clip show what its caption says?

Each object a caption names (:func:`~diff_video.data.shapes.parse_caption`) is tracked by colour segmentation:
every pixel is assigned to the nearest of the palette's colours, black (the background) and the wall's grey, and
the object's mask in a frame is the pixels assigned to its colour. From the per-frame centroids:

- **direction**: the least-squares velocity ``(vx, vy)`` of the centroid over the frames where the object is found
  (the first quarter of the clip for a bouncing object) is classified to the nearest of the direction words in use
  (4 or 8); adherent when that is the caption's and the object moved at least ``min_motion`` pixels;
- **speed**: the velocity's magnitude classified to the nearest speed word (in log scale; only for captions that
  name one);
- **colour**: the object's colour is found in at least half of the frames where it should be visible;
- **shape**: the mask's fill ratio (area / bounding-box area: square ~1, circle ~0.79, triangle ~0.5, a digit
  sprite lower) put in the buckets ``square`` (>= 0.87), ``circle`` (0.66 - 0.87) and ``other`` (triangle, digit);
- **persistence**: the object is found in every frame where it should be visible (all frames; after the first
  third for "appears"; objects passing behind a wall are not counted).

Clips are ``(3, T, H, W)`` in [-1, 1]; coordinates as in :mod:`diff_video.data.shapes` (``y`` down).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from diff_video.data.shapes import parse_caption
from diff_video.data.shapes_config import COLOURS, DIRECTIONS, FOUR_DIRECTIONS, SPEEDS, WALL_COLOUR

__all__ = ["ObjectTrack", "motion_adherence", "track_objects"]

_PALETTE_NAMES = ["black", "wall", *COLOURS]
_PALETTE = torch.tensor([(0.0, 0.0, 0.0), WALL_COLOUR, *COLOURS.values()])


@dataclass
class ObjectTrack:
    """One named object tracked through a clip: per-frame ``found`` ``(T,)``, ``centroid`` ``(T, 2)`` (NaN where not
    found) and ``fill`` ``(T,)`` (area / box area), with the caption's words it is compared against."""

    colour: str
    shape: str
    direction: str
    speed: str | None
    event: str | None
    found: np.ndarray
    centroid: np.ndarray
    fill: np.ndarray


def palette_labels(clip: Tensor) -> Tensor:
    """``(3, T, H, W)`` in [-1, 1] -> ``(T, H, W)`` index of each pixel's nearest palette colour
    (0 black, 1 wall, then :data:`~diff_video.data.shapes.COLOURS` in order)."""
    rgb = (clip.detach().float().cpu().permute(1, 2, 3, 0) + 1) / 2  # (T, H, W, 3) in [0, 1]
    return torch.cdist(rgb.reshape(-1, 3), _PALETTE).argmin(-1).view(rgb.shape[:3])


def track_objects(clip: Tensor, caption: str, min_area: float = 0.01) -> list[ObjectTrack]:
    """Track each object of ``caption`` in ``clip`` ``(3, T, H, W)``; an object is found in a frame when at least
    ``max(1, min_area * H * W)`` pixels take its colour and fill at least a quarter of their bounding box (a
    colour scattered over the frame, as in noise, is not an object)."""
    labels = palette_labels(clip).numpy()
    t, h, w = labels.shape
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64) + 0.5
    need = max(1.0, min_area * h * w)
    tracks = []
    for obj in parse_caption(caption):
        mask = labels == _PALETTE_NAMES.index(obj.colour)
        area = mask.reshape(t, -1).sum(1).astype(np.float64)
        fill_all = np.array([_fill_ratio(m) if a > 0 else 0.0 for m, a in zip(mask, area)])
        found = (area >= need) & (
            fill_all >= 0.25
        )  # scattered pixels of the colour (noise) are not an object
        safe = np.maximum(area, 1)
        cx = (mask * xs).reshape(t, -1).sum(1) / safe
        cy = (mask * ys).reshape(t, -1).sum(1) / safe
        centroid = np.where(found[:, None], np.stack([cx, cy], 1), np.nan)
        fill = np.where(found, fill_all, np.nan)
        tracks.append(
            ObjectTrack(obj.colour, obj.shape, obj.direction, obj.speed, obj.event, found, centroid, fill)
        )
    return tracks


def _fill_ratio(mask: np.ndarray) -> float:
    rows, cols = np.nonzero(mask)
    box = (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)
    return float(len(rows) / box)


def _velocity(track: ObjectTrack) -> tuple[float, float, int]:
    """Least-squares centroid velocity ``(vx, vy)`` in pixels per frame, and the frames it used."""
    frames = np.arange(len(track.found))
    use = track.found.copy()
    if track.event == "bounce":
        use &= frames < max(3, len(frames) // 4)
    if use.sum() < 2:
        return 0.0, 0.0, int(use.sum())
    f = frames[use].astype(np.float64)
    c = track.centroid[use]
    f = f - f.mean()
    denom = float((f**2).sum())
    return (
        float((f * (c[:, 0] - c[:, 0].mean())).sum() / denom),
        float((f * (c[:, 1] - c[:, 1].mean())).sum() / denom),
        int(use.sum()),
    )


def nearest_direction(vx: float, vy: float, directions: Sequence[str]) -> str:
    """The direction word of ``directions`` nearest in angle to ``(vx, vy)`` (image coordinates, ``y`` down)."""
    return max(directions, key=lambda d: vx * DIRECTIONS[d][0] + vy * DIRECTIONS[d][1])


def _shape_bucket(shape_or_fill: str | float) -> str:
    if isinstance(shape_or_fill, str):
        return shape_or_fill if shape_or_fill in ("square", "circle") else "other"
    if shape_or_fill >= 0.87:
        return "square"
    return "circle" if shape_or_fill >= 0.66 else "other"


def motion_adherence(
    clips: Tensor,
    captions: Sequence[str],
    directions: int = 8,
    min_motion: float = 0.1,
    min_area: float = 0.01,
) -> dict[str, float]:
    """Rates over all objects named by ``captions`` of how ``clips`` ``(B, 3, T, H, W)`` follow them.

    Returns ``direction_adherence``, ``speed_adherence`` (objects whose caption names a speed), ``colour_adherence``,
    ``shape_adherence``, ``object_persistence`` (see the module docstring), ``num_objects``. ``directions`` (4 or 8)
    is the set of direction words a velocity is classified into (chance: ``1 / directions``); ``min_motion`` is the
    least displacement over the clip, as a fraction of ``min(H, W)``, that counts as moving.
    """
    if clips.ndim != 5 or clips.shape[1] != 3 or len(captions) != clips.shape[0]:
        raise ValueError(
            f"clips, captions: expected (B, 3, T, H, W) clips and B captions, got {tuple(clips.shape)} and "
            f"{len(captions)}"
        )
    if directions not in (4, 8):
        raise ValueError(f"directions: expected 4 or 8, got {directions}")
    names = FOUR_DIRECTIONS if directions == 4 else tuple(DIRECTIONS)
    t, side = clips.shape[2], min(clips.shape[-2:])
    hits: dict[str, list[float]] = {k: [] for k in ("direction", "speed", "colour", "shape", "persistence")}
    for clip, caption in zip(clips, captions):
        for tr in track_objects(clip, caption, min_area):
            expected = np.ones(t, dtype=bool)
            if tr.event == "appear":
                expected = np.arange(t) >= t / 3
            vx, vy, used = _velocity(tr)
            span = max(used - 1, 1)
            moved = math.hypot(vx, vy) * span >= min_motion * side
            hits["direction"].append(float(moved and nearest_direction(vx, vy, names) == tr.direction))
            if tr.speed is not None:
                expected_speed = {
                    w: SPEEDS[w] * 0.4 * side / max(t - 1, 1) * (2 if tr.event == "bounce" else 1)
                    for w in SPEEDS
                }
                speed = math.hypot(vx, vy)
                guess = min(SPEEDS, key=lambda w: abs(math.log(max(speed, 1e-6) / expected_speed[w])))
                hits["speed"].append(float(guess == tr.speed))
            seen = tr.found[expected]
            hits["colour"].append(float(seen.mean() >= 0.5))
            fill = np.nanmedian(tr.fill) if tr.found.any() else float("nan")
            hits["shape"].append(
                float(tr.found.any() and _shape_bucket(float(fill)) == _shape_bucket(tr.shape))
            )
            if tr.event != "occlude":
                hits["persistence"].append(float(seen.all()))
    out = {f"{k}_adherence": _mean(v) for k, v in hits.items() if k != "persistence"}
    out["object_persistence"] = _mean(hits["persistence"])
    out["num_objects"] = float(len(hits["direction"]))
    return out


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else float("nan")
