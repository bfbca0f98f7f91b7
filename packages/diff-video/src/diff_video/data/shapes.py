"""Moving shapes: the default data set of diff-video, generated offline and deterministic by seed.

Each clip shows one or two coloured objects (a square, circle, triangle, or a handwritten digit from
scikit-learn's bundled 8x8 digits as a sprite) on a black background, moving along a known trajectory
(one of 4 or 8 directions, at a named speed), optionally bouncing off the walls, growing or shrinking,
appearing part-way through, or passing behind a grey wall. Its caption states the objects and their motion::

    "a red square moves left while a blue circle moves up quickly"

and its metadata gives, per frame and object, the box, the centroid and the visible fraction, so metrics can
compare a generated clip's motion with what its caption asked for (:mod:`diff_video.metrics.motion`).

Clips are ``(3, T, H, W)`` float32 tensors in ``[-1, 1]`` (``-1`` = black). Pixel ``(row i, column j)`` has its
centre at ``(x, y) = (j + 0.5, i + 0.5)``; ``y`` grows downwards, so "up" is ``-y``. Clip ``i`` of a set with
seed ``s`` is drawn from ``numpy.random.default_rng([s, i])``: the same on every machine and in any order.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

__all__ = [
    "COLOURS",
    "DIRECTIONS",
    "EVENTS",
    "SHAPES",
    "SPEEDS",
    "MovingShapes",
    "ObjectSpec",
    "ShapesConfig",
    "clip_spec",
    "parse_caption",
    "render_clip",
]

from diff_video.data.shapes_config import (
    _EVENT_PHRASE,
    COLOURS,
    DIRECTIONS,
    EVENTS,
    SHAPES,
    SPEEDS,
    WALL_COLOUR,
    ShapesConfig,
)


@dataclass
class ObjectSpec:
    """One object of a clip: what it is, and where it is at each frame.

    ``start`` is the centroid ``(x, y)`` at frame 0 in pixels; ``velocity`` is ``(dx, dy)`` pixels per frame;
    ``digit`` is the sprite's index into scikit-learn's digits (for ``shape == "digit"``) and ``label`` its value.
    """

    colour: str
    shape: str
    direction: str
    speed: str
    event: str | None
    start: tuple[float, float]
    velocity: tuple[float, float]
    size: float
    digit: int = -1
    label: int = -1

    def phrase(self, say_speed: bool) -> str:
        """The caption fragment of this object (``"a red square moves left quickly"``)."""
        noun = f"digit {self.label}" if self.shape == "digit" else self.shape
        words = [f"a {self.colour} {noun}"]
        words.append("appears and moves" if self.event == "appear" else "moves")
        words.append(self.direction)
        if say_speed:
            words.append(self.speed)
        if self.event is not None and _EVENT_PHRASE[self.event]:
            words.append(_EVENT_PHRASE[self.event])
        return " ".join(words)


@dataclass
class ClipSpec:
    """What one clip shows: its objects, caption, and the config it was drawn under."""

    objects: list[ObjectSpec]
    caption: str
    config: ShapesConfig = field(repr=False)


@lru_cache(maxsize=1)
def _digit_sprites() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 1,797 bundled 8x8 digits (values scaled to [0, 1]) and their labels; offline."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return (bunch.images / 16.0).astype(np.float32), bunch.target.astype(np.int64)


def clip_spec(config: ShapesConfig, index: int) -> ClipSpec:
    """The objects and caption of clip ``index`` of the set ``config`` (drawn from ``default_rng([seed, index])``)."""
    if index < 0:
        raise ValueError(f"index: expected >= 0, got {index}")
    rng = np.random.default_rng([config.seed, index])
    count = int(rng.choice(config.num_objects))
    colours = rng.choice(len(config.colours), size=count, replace=False)
    objects = [_draw_object(config, rng, config.colours[int(c)]) for c in colours]
    say_speed = len(config.speeds) > 1
    caption = " while ".join(o.phrase(say_speed) for o in objects)
    return ClipSpec(objects, caption, config)


def _draw_object(config: ShapesConfig, rng: np.random.Generator, colour: str) -> ObjectSpec:
    shape = config.shapes[int(rng.integers(len(config.shapes)))]
    direction = config.direction_names[int(rng.integers(config.directions))]
    speed = config.speeds[int(rng.integers(len(config.speeds)))]
    event = None
    if config.events and rng.random() < config.event_prob:
        event = config.events[int(rng.integers(len(config.events)))]
    side = min(config.height, config.width)
    size = config.size * side
    length = SPEEDS[speed] * 0.4 * side * (2.0 if event == "bounce" else 1.0)
    steps = max(config.frames - 1, 1)
    dx, dy = DIRECTIONS[direction]
    vx, vy = dx * length / steps, dy * length / steps
    grow = {"grow": 1.6, "shrink": 1.0}.get(event or "", 1.0)
    half = size * grow / 2
    start = (
        _start_coordinate(rng, config.width, half, vx * steps, event == "bounce"),
        _start_coordinate(rng, config.height, half, vy * steps, event == "bounce"),
    )
    digit, label = -1, -1
    if shape == "digit":
        sprites, labels = _digit_sprites()
        digit = int(rng.integers(len(sprites)))
        label = int(labels[digit])
    return ObjectSpec(colour, shape, direction, speed, event, start, (vx, vy), size, digit, label)


def _start_coordinate(
    rng: np.random.Generator, extent: int, half: float, travel: float, bounce: bool
) -> float:
    """A start coordinate such that the whole path (``travel`` pixels) stays inside ``[half, extent - half]``
    (a bouncing object only needs to start inside)."""
    lo, hi = half, extent - half
    if not bounce:
        lo, hi = (lo - travel, hi) if travel < 0 else (lo, hi - travel)
    if hi <= lo:  # the path is longer than the frame allows: start at the far side, centred in what is left
        return float((lo + hi) / 2)
    return float(rng.uniform(lo, hi))


def _reflect(p: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Positions ``p`` folded into ``[lo, hi]`` by reflection at both ends (a bounce off the walls)."""
    span = hi - lo
    q = np.mod(p - lo, 2 * span)
    return lo + np.where(q > span, 2 * span - q, q)


def trajectory(obj: ObjectSpec, config: ShapesConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-frame centroid ``(T, 2)`` (x, y), size ``(T,)`` and appearance flag ``(T,)`` of ``obj``."""
    t = np.arange(config.frames, dtype=np.float64)
    frac = t / max(config.frames - 1, 1)
    scale = {"grow": 1.0 + 0.6 * frac, "shrink": 1.0 - 0.5 * frac}.get(obj.event or "", np.ones_like(t))
    sizes = obj.size * scale
    x = obj.start[0] + obj.velocity[0] * t
    y = obj.start[1] + obj.velocity[1] * t
    if obj.event == "bounce":
        half = obj.size / 2
        x = _reflect(x, half, config.width - half)
        y = _reflect(y, half, config.height - half)
    shown = np.ones(config.frames, dtype=bool)
    if obj.event == "appear":
        shown = t >= config.frames / 3
    return np.stack([x, y], axis=1), sizes, shown


def _shape_masks(obj: ObjectSpec, centres: np.ndarray, sizes: np.ndarray, h: int, w: int) -> np.ndarray:
    """Masks ``(T, H, W)`` of ``obj`` drawn at ``centres`` ``(T, 2)`` with ``sizes`` ``(T,)`` (all frames at once)."""
    ys, xs = (np.mgrid[0:h, 0:w].astype(np.float64) + 0.5)[:, None]
    cx, cy = centres[:, 0, None, None], centres[:, 1, None, None]
    size = np.maximum(sizes[:, None, None], 1e-9)
    half = size / 2
    if obj.shape == "square":
        return (np.abs(xs - cx) <= half) & (np.abs(ys - cy) <= half)
    if obj.shape == "circle":
        return (xs - cx) ** 2 + (ys - cy) ** 2 <= half**2
    if obj.shape == "triangle":  # apex up, base down
        rel = (ys - (cy - half)) / size
        return (rel >= 0) & (rel <= 1) & (np.abs(xs - cx) <= rel * half)
    sprite = _digit_sprites()[0][obj.digit]  # 8x8 in [0, 1]; sample it at each pixel's relative position
    u = (xs - (cx - half)) / size
    v = (ys - (cy - half)) / size
    inside = (u >= 0) & (u < 1) & (v >= 0) & (v < 1)
    col = np.clip((u * 8).astype(int), 0, 7)
    row = np.clip((v * 8).astype(int), 0, 7)
    return inside & (sprite[row, col] > 0.4)


def render_clip(spec: ClipSpec) -> tuple[Tensor, dict[str, Any]]:
    """The clip ``(3, T, H, W)`` in ``[-1, 1]`` and its metadata.

    Metadata (numpy arrays, ``K`` objects): ``centroids`` ``(T, K, 2)`` (x, y) and ``boxes`` ``(T, K, 4)``
    ``(x0, y0, x1, y1)`` of each whole object (also where hidden), ``visible`` ``(T, K)``: the fraction of the
    object's pixels that are seen (0 before it appears or behind the wall); and ``caption``.
    """
    cfg = spec.config
    t_, h, w, k = cfg.frames, cfg.height, cfg.width, len(spec.objects)
    frames = np.zeros((t_, h, w, 3), dtype=np.float32)
    centroids = np.zeros((t_, k, 2), dtype=np.float32)
    boxes = np.zeros((t_, k, 4), dtype=np.float32)
    visible = np.zeros((t_, k), dtype=np.float32)
    masks = np.zeros((k, t_, h, w), dtype=bool)
    for j, obj in enumerate(spec.objects):
        path, sizes, shown = trajectory(obj, cfg)
        centroids[:, j] = path
        boxes[:, j] = np.concatenate([path - sizes[:, None] / 2, path + sizes[:, None] / 2], axis=1)
        masks[j] = _shape_masks(obj, path, sizes, h, w) & shown[:, None, None]
    wall = np.zeros((h, w), dtype=bool)
    if any(o.event == "occlude" for o in spec.objects):
        x0, x1 = round(w * 0.42), round(w * 0.58)
        wall[:, x0:x1] = True
    for j, obj in enumerate(spec.objects):  # later objects are drawn over earlier ones
        frames[masks[j]] = COLOURS[obj.colour]
    frames[:, wall] = WALL_COLOUR
    for j in range(k):
        seen = masks[j] & ~wall & ~masks[j + 1 :].any(0)
        total = masks[j].reshape(t_, -1).sum(1)
        visible[:, j] = np.where(total > 0, seen.reshape(t_, -1).sum(1) / np.maximum(total, 1), 0.0)
    clip = torch.from_numpy(frames).permute(3, 0, 1, 2).contiguous() * 2 - 1
    meta = {"caption": spec.caption, "centroids": centroids, "boxes": boxes, "visible": visible}
    return clip, meta


class MovingShapes(Dataset):
    """The moving-shapes set of ``config``: item ``i`` is ``{"x": (3, T, H, W) in [-1, 1], "caption": str}``.

    Clips are rendered on demand (``meta=True`` adds the :func:`render_clip` metadata under ``"meta"``);
    :meth:`spec` gives clip ``i``'s objects without rendering.
    """

    def __init__(self, config: ShapesConfig | None = None, meta: bool = False) -> None:
        self.config = config or ShapesConfig()
        self.meta = meta

    def __len__(self) -> int:
        return self.config.length

    def spec(self, index: int) -> ClipSpec:
        """Clip ``index``'s objects and caption."""
        return clip_spec(self.config, index)

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= index < len(self):
            raise IndexError(f"index: expected 0 <= index < {len(self)}, got {index}")
        clip, meta = render_clip(self.spec(index))
        item: dict[str, Any] = {"x": clip, "caption": meta["caption"]}
        if self.meta:
            item["meta"] = meta
        return item

    def captions(self, count: int | None = None, start: int = 0) -> list[str]:
        """Captions of clips ``start .. start + count - 1`` (default: all)."""
        stop = len(self) if count is None else start + count
        return [self.spec(i).caption for i in range(start, stop)]

    def render(self, count: int, start: int = 0) -> tuple[Tensor, list[str]]:
        """Clips ``start .. start + count - 1`` as one tensor ``(count, 3, T, H, W)`` and their captions."""
        clips, captions = [], []
        for i in range(start, start + count):
            clip, meta = render_clip(self.spec(i))
            clips.append(clip)
            captions.append(meta["caption"])
        return torch.stack(clips), captions


# ---------------------------------------------------------------------------------------- captions -> objects

_OBJECT = re.compile(
    r"an? (?P<colour>\w+) (?P<shape>square|circle|triangle|digit \d)\s+(?P<appear>appears and )?moves "
    r"(?P<direction>[a-z-]+)(?: (?P<speed>slowly|steadily|quickly))?(?P<rest>.*)"
)


@dataclass(frozen=True)
class CaptionObject:
    """One object named by a caption: colour, shape (``digit`` for any digit), direction, speed word or None,
    and event or None."""

    colour: str
    shape: str
    direction: str
    speed: str | None
    event: str | None


def parse_caption(caption: str) -> list[CaptionObject]:
    """The objects a moving-shapes caption names, in order.

    Raises ``ValueError`` naming the part that is not of the form ``a <colour> <shape> moves <direction>
    [<speed>] [and bounces|and grows|and shrinks|behind a grey wall]`` (clauses joined by ``while``).
    """
    out = []
    for part in caption.strip().lower().split(" while "):
        m = _OBJECT.fullmatch(part.strip())
        if m is None or m["colour"] not in COLOURS or m["direction"] not in DIRECTIONS:
            raise ValueError(
                f"caption: {part.strip()!r} is not 'a <colour> <shape> moves <direction> [<speed>] [...]' "
                f"with a colour among {tuple(COLOURS)} and a direction among {tuple(DIRECTIONS)}"
            )
        rest = m["rest"].strip()
        event = "appear" if m["appear"] else None
        for name, phrase in _EVENT_PHRASE.items():
            if phrase and rest == phrase:
                event = name
        if rest and event in (None, "appear"):
            raise ValueError(f"caption: unknown ending {rest!r} in {part.strip()!r}")
        shape = "digit" if m["shape"].startswith("digit") else m["shape"]
        out.append(CaptionObject(m["colour"], shape, m["direction"], m["speed"], event))
    return out


def shapes_vocabulary(config: ShapesConfig | None = None) -> list[str]:
    """Every word a moving-shapes caption can use (whatever ``config`` draws), sorted: the text encoder's
    vocabulary for this set, so that any caption :func:`parse_caption` accepts can be encoded."""
    words = {"a", "and", "appears", "moves", "while", "digit", "behind", "grey", "wall", "bounces", "grows"}
    words |= {"shrinks", *COLOURS, *SHAPES, *DIRECTIONS, *SPEEDS, *(str(d) for d in range(10))}
    return sorted(words)
