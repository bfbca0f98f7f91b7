"""A procedurally generated text-to-image data set: 1 to 3 coloured shapes on a plain background.

Every image holds 1-3 non-overlapping objects, each a (colour, shape) pair with a distinct colour, drawn
without anti-aliasing (a pixel belongs to a shape iff its centre does), so every object pixel has exactly
its palette colour and :mod:`diff_image.metrics.adherence` can read the scene back from the pixels.

Captions follow one small grammar (parsed back by :func:`diff_image.metrics.adherence.parse_caption`)::

    "a red circle"
    "a red circle to the left of a blue square"
    "a red circle above a blue square, and an orange diamond to the right of the blue square"

A relation compares object centres along the axis of the larger displacement (image y points down):
``to the left of`` / ``to the right of`` when ``|dx| >= |dy|``, else ``above`` / ``below``.

Determinism: item ``i`` is a pure function of ``(seed, split, i)`` (numpy ``default_rng`` on that tuple),
so any index can be read in any order, by any worker, on any machine, with the same result.

Concept hold-out (for a LoRA / fine-tuning concept test): ``ShapesConfig(holdout=("red circle",))``
makes ``split="train"`` never draw a red circle and ``split="holdout"`` draw one in every image (as the
first object). A concept is a colour (``"red"``), a shape (``"circle"``) or both (``"red circle"``).

Control maps for ControlNet-style conditioning are derived from the render: ``edges`` (object outlines),
``segmentation`` (shape class ids) and ``boxes`` (one filled-bounding-box channel per shape class).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Literal

import numpy as np
import torch
from torch.utils.data import Dataset

__all__ = [
    "CONTROL_KINDS",
    "PALETTE",
    "RELATIONS",
    "SHAPES",
    "Relation",
    "ShapeObject",
    "ShapesConfig",
    "ShapesDataset",
    "ShapesSample",
    "describe",
    "generate_sample",
    "relation_between",
    "shape_mask",
]

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "diamond")
PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (255, 0, 0),
    "green": (0, 255, 0),
    "blue": (0, 0, 255),
    "yellow": (255, 255, 0),
    "magenta": (255, 0, 255),
    "cyan": (0, 255, 255),
    "orange": (255, 128, 0),
    "white": (255, 255, 255),
}
RELATIONS: tuple[str, ...] = ("to the left of", "to the right of", "above", "below")
CONTROL_KINDS: tuple[str, ...] = ("edges", "segmentation", "boxes")
_SPLITS = {"all": 0, "train": 1, "holdout": 2}


@dataclass(frozen=True)
class ShapesConfig:
    """What the generator draws.

    Attributes:
        image_size: side of the square RGB image in pixels (>= 16).
        min_objects, max_objects: object count range per image, within 1..len(colours).
        shapes: shape names, a subset of :data:`SHAPES`.
        colours: colour names, a subset of :data:`PALETTE` (objects in one image have distinct colours).
        min_size, max_size: object side range in pixels; default ``0.22 * image_size`` and
            ``0.38 * image_size`` (7..12 at 32x32).
        gap: minimum number of background pixels between two objects' bounding boxes (>= 1 keeps
            objects separate connected components).
        background: background RGB; must be far (> 100 in RGB distance) from every palette colour used.
        holdout: held-out concepts (``"red"``, ``"circle"``, ``"red circle"``), see the module docstring.
    """

    image_size: int = 32
    min_objects: int = 1
    max_objects: int = 3
    shapes: tuple[str, ...] = SHAPES
    colours: tuple[str, ...] = tuple(PALETTE)
    min_size: int | None = None
    max_size: int | None = None
    gap: int = 2
    background: tuple[int, int, int] = (0, 0, 0)
    holdout: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.image_size < 16:
            raise ValueError(f"image_size: expected >= 16, got {self.image_size}")
        bad = [s for s in self.shapes if s not in SHAPES]
        if bad or not self.shapes:
            raise ValueError(f"shapes: expected a non-empty subset of {SHAPES}, got {self.shapes}")
        bad = [c for c in self.colours if c not in PALETTE]
        if bad or not self.colours:
            raise ValueError(f"colours: expected a non-empty subset of {tuple(PALETTE)}, got {self.colours}")
        if not 1 <= self.min_objects <= self.max_objects <= min(3, len(self.colours)):
            raise ValueError(
                f"min_objects, max_objects: expected 1 <= min <= max <= {min(3, len(self.colours))}, "
                f"got {self.min_objects}, {self.max_objects}"
            )
        lo, hi = self.size_range
        if not 6 <= lo <= hi <= self.image_size // 2:
            raise ValueError(
                f"min_size, max_size: expected 6 <= min <= max <= image_size // 2, got {lo}, {hi}"
            )
        if self.gap < 1:
            raise ValueError(f"gap: expected >= 1, got {self.gap}")
        bg = np.asarray(self.background, dtype=float)
        near = [c for c in self.colours if np.linalg.norm(bg - np.asarray(PALETTE[c])) <= 100]
        if bg.shape != (3,) or near:
            raise ValueError(f"background: expected an RGB triple far from the palette; too close to {near}")
        for concept in self.holdout:
            parse_concept(concept)
        if self.holdout and not self.allowed_pairs("train"):
            raise ValueError(f"holdout: {self.holdout} leaves no (colour, shape) pair to train on")

    @property
    def size_range(self) -> tuple[int, int]:
        """``(min_size, max_size)`` in pixels after defaults."""
        lo = self.min_size if self.min_size is not None else max(6, round(0.22 * self.image_size))
        hi = self.max_size if self.max_size is not None else max(lo, round(0.38 * self.image_size))
        return lo, hi

    def allowed_pairs(self, split: str) -> list[tuple[str, str]]:
        """The (colour, shape) pairs that ``split`` may draw (for "holdout": those of a held-out concept)."""
        pairs = [(c, s) for c in self.colours for s in self.shapes]
        if split == "all" or not self.holdout:
            return pairs
        held = [p for p in pairs if any(_matches(p, parse_concept(h)) for h in self.holdout)]
        return held if split == "holdout" else [p for p in pairs if p not in held]


def parse_concept(concept: str) -> tuple[str | None, str | None]:
    """Split a concept into ``(colour, shape)``, either possibly None.

    ``"red circle"`` -> ``("red", "circle")``; ``"red"`` -> ``("red", None)``;
    ``"circle"`` -> ``(None, "circle")``.
    """
    words = concept.split()
    colour = next((w for w in words if w in PALETTE), None)
    shape = next((w for w in words if w in SHAPES), None)
    if not words or len(words) != (colour is not None) + (shape is not None):
        raise ValueError(f"holdout: concept {concept!r} is not '<colour>', '<shape>' or '<colour> <shape>'")
    return colour, shape


def _matches(pair: tuple[str, str], concept: tuple[str | None, str | None]) -> bool:
    return (concept[0] is None or concept[0] == pair[0]) and (concept[1] is None or concept[1] == pair[1])


@dataclass(frozen=True)
class ShapeObject:
    """One drawn object. ``bbox = (x0, y0, x1, y1)`` in pixels, end-exclusive; ``centre = (cx, cy)`` is the
    mean of the object's pixel centres (pixel ``(x, y)`` has centre ``(x + 0.5, y + 0.5)``)."""

    shape: str
    colour: str
    bbox: tuple[int, int, int, int]
    centre: tuple[float, float]

    @property
    def name(self) -> str:
        return f"{self.colour} {self.shape}"


@dataclass(frozen=True)
class Relation:
    """``objects[subject]`` is ``relation`` ``objects[object]`` (e.g. 0 "to the left of" 1)."""

    subject: int
    relation: str
    object: int


@dataclass(frozen=True)
class ShapesSample:
    """One generated scene.

    Attributes:
        image: ``(H, W, 3)`` uint8 RGB render.
        object_ids: ``(H, W)`` int16, 0 = background, ``k + 1`` = ``objects[k]``.
        objects: the drawn objects, in caption order.
        relations: the relations the caption states.
        caption: the text description.
        shapes: the shape vocabulary giving segmentation class ids (``1 + shapes.index(shape)``).
    """

    image: np.ndarray
    object_ids: np.ndarray
    objects: tuple[ShapeObject, ...]
    relations: tuple[Relation, ...]
    caption: str
    shapes: tuple[str, ...] = field(default=SHAPES)

    def to_tensor(self) -> torch.Tensor:
        """The image as ``(3, H, W)`` float in ``[-1, 1]``."""
        return torch.from_numpy(self.image.copy()).permute(2, 0, 1).float() / 127.5 - 1.0

    def edges(self) -> torch.Tensor:
        """``(1, H, W)`` float in {0, 1}: object pixels with a 4-neighbour of another label (outlines)."""
        ids = self.object_ids
        padded = np.pad(ids, 1, mode="edge")
        h, w = ids.shape
        neighbours = [padded[:-2, 1:-1], padded[2:, 1:-1], padded[1:-1, :-2], padded[1:-1, 2:]]
        edge = (ids > 0) & np.any([n != ids for n in neighbours], axis=0)
        return torch.from_numpy(edge.astype(np.float32)).reshape(1, h, w)

    def segmentation(self) -> torch.Tensor:
        """``(H, W)`` int64 shape class ids: 0 = background, ``1 + shapes.index(shape)`` for object pixels."""
        lut = np.zeros(len(self.objects) + 1, dtype=np.int64)
        for k, obj in enumerate(self.objects):
            lut[k + 1] = 1 + self.shapes.index(obj.shape)
        return torch.from_numpy(lut[self.object_ids.astype(np.int64)])

    def boxes(self) -> torch.Tensor:
        """``(len(shapes), H, W)`` float in {0, 1}: channel ``c`` holds the filled boxes of shape ``c``."""
        h, w = self.object_ids.shape
        out = torch.zeros(len(self.shapes), h, w)
        for obj in self.objects:
            x0, y0, x1, y1 = obj.bbox
            out[self.shapes.index(obj.shape), y0:y1, x0:x1] = 1.0
        return out

    def metadata(self) -> dict:
        """Objects and relations as plain JSON-able data."""
        return {
            "caption": self.caption,
            "objects": [asdict(o) for o in self.objects],
            "relations": [asdict(r) for r in self.relations],
        }


def shape_mask(shape: str, size: int) -> np.ndarray:
    """``(size, size)`` bool mask of ``shape`` filling a ``size``-pixel box; a pixel is in iff its centre is.

    circle: inscribed disc; square: the whole box; triangle: isosceles, apex up, base on the bottom edge;
    diamond: the inscribed rhombus ``|dx| + |dy| <= size / 2``.
    """
    c = np.arange(size) + 0.5
    x, y = np.meshgrid(c, c, indexing="xy")
    half = size / 2.0
    if shape == "circle":
        return (x - half) ** 2 + (y - half) ** 2 <= half**2
    if shape == "square":
        return np.ones((size, size), dtype=bool)
    if shape == "triangle":
        return np.abs(x - half) <= y / 2.0
    if shape == "diamond":
        return np.abs(x - half) + np.abs(y - half) <= half
    raise ValueError(f"shape: expected one of {SHAPES}, got {shape!r}")


def relation_between(a: tuple[float, float], b: tuple[float, float]) -> str:
    """Relation of centre ``a`` to centre ``b`` along the axis of larger displacement (y points down)."""
    dx, dy = a[0] - b[0], a[1] - b[1]
    if abs(dx) >= abs(dy):
        return "to the left of" if dx < 0 else "to the right of"
    return "above" if dy < 0 else "below"


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def describe(objects: tuple[ShapeObject, ...], relations: tuple[Relation, ...]) -> str:
    """The caption of a scene: first object, its relation to the second, then ", and" each further one."""
    if not objects:
        raise ValueError("objects: expected at least one object")

    def a(o: ShapeObject) -> str:
        return f"{_article(o.colour)} {o.name}"

    if len(objects) == 1:
        return a(objects[0])
    parts = []
    for r in relations:
        subject, obj = objects[r.subject], objects[r.object]
        ref = a(obj) if not parts else f"the {obj.name}"
        parts.append(f"{a(subject)} {r.relation} {ref}")
    return ", and ".join(parts)


def _draw_pairs(cfg: ShapesConfig, split: str, n: int, rng: np.random.Generator) -> list[tuple[str, str]]:
    first_pool = cfg.allowed_pairs(split)
    rest_pool = cfg.allowed_pairs("all" if split == "holdout" else split)
    chosen: list[tuple[str, str]] = []
    for k in range(n):
        used = {c for c, _ in chosen}
        pool = [p for p in (first_pool if k == 0 else rest_pool) if p[0] not in used]
        if not pool:
            break
        chosen.append(pool[int(rng.integers(len(pool)))])
    return chosen


def _place(cfg: ShapesConfig, sizes: list[int], rng: np.random.Generator) -> list[tuple[int, int, int]]:
    """Top-left corners and sizes ``(x0, y0, s)`` with bounding boxes ``gap`` pixels apart; objects that do
    not fit after 100 tries are shrunk to ``min_size`` and finally dropped."""
    placed: list[tuple[int, int, int]] = []
    lo, _ = cfg.size_range
    for s in sizes:
        for size in dict.fromkeys((s, lo)):
            spot = _try_place(cfg, size, placed, rng)
            if spot is not None:
                placed.append(spot)
                break
    return placed


def _try_place(
    cfg: ShapesConfig, s: int, placed: list[tuple[int, int, int]], rng: np.random.Generator
) -> tuple[int, int, int] | None:
    g = cfg.gap
    for _ in range(100):
        x0, y0 = (int(v) for v in rng.integers(0, cfg.image_size - s + 1, size=2))
        if all(
            x0 >= px + ps + g or px >= x0 + s + g or y0 >= py + ps + g or py >= y0 + s + g
            for px, py, ps in placed
        ):
            return x0, y0, s
    return None


def generate_sample(
    config: ShapesConfig, seed: int, index: int, split: Literal["train", "holdout", "all"] = "train"
) -> ShapesSample:
    """Draw scene ``index`` of ``(seed, split)``; a pure function of its arguments."""
    if split not in _SPLITS:
        raise ValueError(f"split: expected one of {tuple(_SPLITS)}, got {split!r}")
    if split == "holdout" and not config.holdout:
        raise ValueError("split: 'holdout' needs ShapesConfig.holdout to name at least one concept")
    if index < 0 or seed < 0:
        raise ValueError(f"seed, index: expected non-negative ints, got {seed}, {index}")
    rng = np.random.default_rng([seed, _SPLITS[split], index])
    n = int(rng.integers(config.min_objects, config.max_objects + 1))
    pairs = _draw_pairs(config, split, n, rng)
    lo, hi = config.size_range
    spots = _place(config, [int(v) for v in rng.integers(lo, hi + 1, size=len(pairs))], rng)
    return _render(config, pairs[: len(spots)], spots)


def _render(
    cfg: ShapesConfig, pairs: list[tuple[str, str]], spots: list[tuple[int, int, int]]
) -> ShapesSample:
    h = w = cfg.image_size
    image = np.empty((h, w, 3), dtype=np.uint8)
    image[:] = np.asarray(cfg.background, dtype=np.uint8)
    ids = np.zeros((h, w), dtype=np.int16)
    objects = []
    for k, ((colour, shape), (x0, y0, s)) in enumerate(zip(pairs, spots)):
        mask = shape_mask(shape, s)
        ids[y0 : y0 + s, x0 : x0 + s][mask] = k + 1
        image[y0 : y0 + s, x0 : x0 + s][mask] = PALETTE[colour]
        ys, xs = np.nonzero(mask)
        bbox = (x0 + int(xs.min()), y0 + int(ys.min()), x0 + int(xs.max()) + 1, y0 + int(ys.max()) + 1)
        centre = (x0 + float(xs.mean()) + 0.5, y0 + float(ys.mean()) + 0.5)
        objects.append(ShapeObject(shape=shape, colour=colour, bbox=bbox, centre=centre))
    relations = tuple(
        Relation(k, relation_between(objects[k].centre, objects[ref].centre), ref)
        for k, ref in ([(0, 1)] + [(k, k - 1) for k in range(2, len(objects))] if len(objects) > 1 else [])
    )
    objs = tuple(objects)
    return ShapesSample(image, ids, objs, relations, describe(objs, relations), tuple(cfg.shapes))


class ShapesDataset(Dataset):
    """``length`` generated scenes, index-addressable (item ``i`` depends only on ``(seed, split, i)``).

    Args:
        length: number of items.
        seed: generator seed; use different seeds for training and evaluation sets.
        split: ``"train"`` (no held-out concept), ``"holdout"`` (a held-out concept in every image) or
            ``"all"`` (ignore the hold-out).
        config: what to draw (:class:`ShapesConfig`).
        controls: control maps to add to each item, any of :data:`CONTROL_KINDS`.

    Items are dicts: ``image`` ``(3, H, W)`` float in ``[-1, 1]``, ``caption`` str, ``index`` int, and per
    requested control ``edges`` ``(1, H, W)``, ``segmentation`` ``(H, W)`` int64, ``boxes``
    ``(len(config.shapes), H, W)`` (control maps in ``[0, 1]``). Full metadata: :meth:`sample`.
    """

    def __init__(
        self,
        length: int = 10_000,
        seed: int = 0,
        split: Literal["train", "holdout", "all"] = "train",
        config: ShapesConfig | None = None,
        controls: tuple[str, ...] = (),
    ) -> None:
        if length < 1:
            raise ValueError(f"length: expected >= 1, got {length}")
        bad = [c for c in controls if c not in CONTROL_KINDS]
        if bad:
            raise ValueError(f"controls: expected a subset of {CONTROL_KINDS}, got {bad}")
        self.length, self.seed, self.split = length, seed, split
        self.config = config if config is not None else ShapesConfig()
        self.controls = tuple(controls)
        generate_sample(self.config, seed, 0, split)  # validate (seed, split, config) up front

    def __len__(self) -> int:
        return self.length

    def sample(self, index: int) -> ShapesSample:
        """The full scene (uint8 image, object ids, objects, relations, caption) of item ``index``."""
        if not 0 <= index < self.length:
            raise IndexError(f"index: expected 0 <= index < {self.length}, got {index}")
        return generate_sample(self.config, self.seed, index, self.split)

    def __getitem__(self, index: int) -> dict:
        s = self.sample(index)
        item: dict = {"image": s.to_tensor(), "caption": s.caption, "index": index}
        for kind in self.controls:
            item[kind] = getattr(s, kind)()
        return item
