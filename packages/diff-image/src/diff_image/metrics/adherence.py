"""Caption adherence for the shapes data set, read exactly from the pixels (no learned model).

For each image and its caption (the grammar of :mod:`diff_image.data.shapes`):

1. **colour segmentation**: every pixel takes the nearest palette colour (background included) if it lies
   within ``tolerance`` (Euclidean RGB distance, 0..255 scale), else it is "unknown" and ignored;
2. **connected components** (8-connectivity, ``scipy.ndimage.label``) per colour, with interior holes
   filled (speckle inside a shape); components smaller than ``min_area`` pixels are noise and ignored;
3. **shape from geometry** of each component: fill ratio of its bounding box (square ~1, circle ~pi/4,
   diamond and triangle ~1/2), the centroid's offset from the box centre (a triangle's centroid sits a
   third of the way from its base: offset ~1/6 of the box; the symmetric shapes: 0) and the aspect ratio;
4. **relations** from component centres: "A to the left of B" holds iff ``cx_A < cx_B`` (``strict=True``
   also demands that x is the axis of the larger displacement, the rule captions are generated with).

An image passes when every caption object is found exactly once with its colour and shape, no other
object is present (unless ``allow_extra``) and every stated relation holds. The report gives the pass
rate over all images and separately over one-object and multi-object captions.
"""

from __future__ import annotations

import itertools
import re
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from scipy import ndimage

from diff_image.data.shapes import PALETTE, RELATIONS, SHAPES, Relation, ShapesConfig, relation_between
from diff_image.io import to_uint8

__all__ = [
    "AdherenceConfig",
    "AdherenceReport",
    "CaptionSpec",
    "DetectedObject",
    "ImageAdherence",
    "caption_adherence",
    "check_image",
    "classify_shape",
    "detect_objects",
    "object_masks",
    "parse_caption",
    "segment_colours",
]

_EIGHT = np.ones((3, 3), dtype=bool)


@dataclass(frozen=True)
class AdherenceConfig:
    """How pixels are read.

    Attributes:
        colours: palette colour names that objects may have (default: all of :data:`PALETTE`).
        background: background RGB.
        tolerance: largest RGB distance from a palette colour for a pixel to count as that colour; below
            half the smallest palette gap (127 between red/orange/yellow) so the labels never collide.
        min_area: smallest component (pixels) that counts as an object; None = ``max(4, H * W / 128)``.
        allow_extra: let objects the caption does not mention pass.
        strict_relations: require the stated axis to be the one of larger displacement.
    """

    colours: tuple[str, ...] = tuple(PALETTE)
    background: tuple[int, int, int] = (0, 0, 0)
    tolerance: float = 60.0
    min_area: int | None = None
    allow_extra: bool = False
    strict_relations: bool = False

    def __post_init__(self) -> None:
        bad = [c for c in self.colours if c not in PALETTE]
        if bad or not self.colours:
            raise ValueError(f"colours: expected a non-empty subset of {tuple(PALETTE)}, got {self.colours}")
        if not 0 < self.tolerance < 127:
            raise ValueError(f"tolerance: expected 0 < tolerance < 127 (RGB distance), got {self.tolerance}")
        if self.min_area is not None and self.min_area < 1:
            raise ValueError(f"min_area: expected >= 1 or None, got {self.min_area}")

    @classmethod
    def from_shapes(cls, config: ShapesConfig, **overrides: Any) -> AdherenceConfig:
        """The reading settings that match a :class:`ShapesConfig` (its colours and background)."""
        return cls(colours=tuple(config.colours), background=tuple(config.background), **overrides)


@dataclass(frozen=True)
class CaptionSpec:
    """A parsed caption: ``objects`` as (colour, shape) pairs, ``relations`` between their indices."""

    objects: tuple[tuple[str, str], ...]
    relations: tuple[Relation, ...]


_COLOUR_RE = "|".join(sorted(PALETTE, key=len, reverse=True))
_SHAPE_RE = "|".join(SHAPES)
_REL_RE = "|".join(re.escape(r) for r in RELATIONS)
_OBJ = rf"(?:a|an|the) ({_COLOUR_RE}) ({_SHAPE_RE})"
_CLAUSE = re.compile(rf"^{_OBJ}(?: ({_REL_RE}) {_OBJ})?$")


def parse_caption(caption: str) -> CaptionSpec:
    """Parse a shapes caption ("a red circle to the left of a blue square, and ...") into a spec.

    Clauses are joined by ", and "; a clause is ``<object>`` or ``<object> <relation> <object>``; an
    object already named is referred back to by colour and shape. Raises ValueError on any other text.
    """
    objects: list[tuple[str, str]] = []
    relations: list[Relation] = []

    def index_of(colour: str, shape: str) -> int:
        if (colour, shape) not in objects:
            objects.append((colour, shape))
        return objects.index((colour, shape))

    for clause in caption.strip().lower().split(", and "):
        m = _CLAUSE.match(clause.strip())
        if m is None:
            raise ValueError(f"caption: cannot parse {clause!r} of {caption!r} (expected the shapes grammar)")
        subject = index_of(m.group(1), m.group(2))
        if m.group(3) is not None:
            relations.append(Relation(subject, m.group(3), index_of(m.group(4), m.group(5))))
    return CaptionSpec(tuple(objects), tuple(relations))


@dataclass(frozen=True)
class DetectedObject:
    """One connected component: its colour, classified shape (or "unknown"), bbox ``(x0, y0, x1, y1)``
    end-exclusive, centre ``(cx, cy)`` (mean pixel centre), area in pixels and bbox fill ratio."""

    colour: str
    shape: str
    bbox: tuple[int, int, int, int]
    centre: tuple[float, float]
    area: int
    fill: float


def segment_colours(image: np.ndarray, config: AdherenceConfig) -> np.ndarray:
    """Label pixels of ``image`` ``(H, W, 3)`` uint8: 0 background, ``k + 1`` = ``config.colours[k]``,
    -1 unknown (farther than ``tolerance`` from every palette colour)."""
    refs = np.asarray([config.background] + [PALETTE[c] for c in config.colours], dtype=np.float64)
    dist = np.linalg.norm(image.astype(np.float64)[:, :, None, :] - refs[None, None], axis=-1)
    labels = dist.argmin(-1)
    return np.where(dist.min(-1) <= config.tolerance, labels, -1)


def classify_shape(mask: np.ndarray) -> tuple[str, float]:
    """Shape name (one of :data:`SHAPES` or "unknown") and bbox fill ratio of a component mask ``(h, w)``.

    Thresholds measured on the renders of :func:`diff_image.data.shapes.shape_mask` at sides 6..24:
    fill: square 1.0, circle 0.76-0.89, diamond 0.50-0.67, triangle 0.50-0.60; centroid offset from the
    box centre (fraction of the side): triangle 0.11-0.17, the others 0.
    """
    ys, xs = np.nonzero(mask)
    h, w = int(ys.max() - ys.min() + 1), int(xs.max() - xs.min() + 1)
    fill = float(len(ys)) / (h * w)
    offset = max(
        abs((ys.min() + h / 2.0) - (ys.mean() + 0.5)) / h, abs((xs.min() + w / 2.0) - (xs.mean() + 0.5)) / w
    )
    if max(h, w) > 1.5 * min(h, w):
        return "unknown", fill
    if offset > 0.07 and fill < 0.72:
        return "triangle", fill
    if offset > 0.07:
        return "unknown", fill
    if fill >= 0.94:
        return "square", fill
    if fill >= 0.70:
        return "circle", fill
    if fill >= 0.40:
        return "diamond", fill
    return "unknown", fill


def object_masks(image: np.ndarray, config: AdherenceConfig | None = None) -> list[tuple[str, np.ndarray]]:
    """``(colour, mask (H, W) bool)`` of every object (palette-coloured connected component, interior holes
    filled, of at least ``min_area`` pixels) in ``image`` ``(H, W, 3)`` uint8, in colour order then component
    order."""
    config = config or AdherenceConfig()
    h, w = image.shape[:2]
    min_area = config.min_area if config.min_area is not None else max(4, (h * w) // 128)
    labels = segment_colours(image, config)
    found = []
    for k, colour in enumerate(config.colours):
        comps, n = ndimage.label(labels == k + 1, structure=_EIGHT)
        for c in range(1, n + 1):
            mask = ndimage.binary_fill_holes(comps == c)
            if int(mask.sum()) >= min_area:
                found.append((colour, mask))
    return found


def detect_objects(image: np.ndarray, config: AdherenceConfig | None = None) -> list[DetectedObject]:
    """Every object of :func:`object_masks` with its shape, box, centre, area and fill."""
    found = []
    for colour, mask in object_masks(image, config):
        ys, xs = np.nonzero(mask)
        shape, fill = classify_shape(mask[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1])
        bbox = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
        centre = (float(xs.mean()) + 0.5, float(ys.mean()) + 0.5)
        found.append(DetectedObject(colour, shape, bbox, centre, int(mask.sum()), fill))
    return found


@dataclass(frozen=True)
class ImageAdherence:
    """Verdict for one image: ``passed`` and, when it failed, the ``reasons`` (human-readable)."""

    caption: str
    passed: bool
    num_objects: int
    reasons: tuple[str, ...]
    detected: tuple[DetectedObject, ...]


def _assign(spec: CaptionSpec, detected: list[DetectedObject]) -> tuple[dict[int, DetectedObject], list[str]]:
    """Match caption objects to components of their colour, best shape agreement first."""
    assignment: dict[int, DetectedObject] = {}
    reasons: list[str] = []
    for colour in dict.fromkeys(c for c, _ in spec.objects):
        wanted = [i for i, (c, _) in enumerate(spec.objects) if c == colour]
        comps = [d for d in detected if d.colour == colour]
        if len(comps) != len(wanted):
            reasons.append(f"found {len(comps)} {colour} object(s), caption has {len(wanted)}")
            continue
        best = max(
            itertools.permutations(comps),
            key=lambda perm: sum(d.shape == spec.objects[i][1] for i, d in zip(wanted, perm)),
        )
        for i, d in zip(wanted, best):
            assignment[i] = d
            if d.shape != spec.objects[i][1]:
                reasons.append(
                    f"the {colour} object looks like a {d.shape}, caption says {spec.objects[i][1]}"
                )
    return assignment, reasons


def _relation_holds(a: tuple[float, float], b: tuple[float, float], relation: str, strict: bool) -> bool:
    if strict:
        return relation_between(a, b) == relation
    dx, dy = a[0] - b[0], a[1] - b[1]
    return {"to the left of": dx < 0, "to the right of": dx > 0, "above": dy < 0, "below": dy > 0}[relation]


def check_image(image: np.ndarray, caption: str, config: AdherenceConfig | None = None) -> ImageAdherence:
    """Does ``image`` ``(H, W, 3)`` uint8 show exactly what ``caption`` says? See the module docstring."""
    config = config or AdherenceConfig()
    spec = parse_caption(caption)
    detected = detect_objects(image, config)
    assignment, reasons = _assign(spec, detected)
    if not config.allow_extra:
        named = {c for c, _ in spec.objects}
        reasons += [
            f"extra {d.colour} {d.shape} not in the caption" for d in detected if d.colour not in named
        ]
    for r in spec.relations:
        a, b = assignment.get(r.subject), assignment.get(r.object)
        if (
            a is not None
            and b is not None
            and not _relation_holds(a.centre, b.centre, r.relation, config.strict_relations)
        ):
            s, o = spec.objects[r.subject], spec.objects[r.object]
            reasons.append(f"the {' '.join(s)} is not {r.relation} the {' '.join(o)}")
    return ImageAdherence(caption, not reasons, len(spec.objects), tuple(reasons), tuple(detected))


@dataclass(frozen=True)
class AdherenceReport:
    """Pass rates over a batch: ``overall``, ``one_object`` and ``multi_object`` captions (NaN if none)."""

    results: tuple[ImageAdherence, ...] = field(repr=False)
    overall: float
    one_object: float
    multi_object: float
    num_one_object: int
    num_multi_object: int

    def to_dict(self) -> dict[str, Any]:
        """Rates and counts (no per-image detail), ready for :func:`diff_image.io.save_metrics_json`."""
        return {
            "adherence": self.overall,
            "adherence_one_object": self.one_object,
            "adherence_multi_object": self.multi_object,
            "num_images": len(self.results),
            "num_one_object": self.num_one_object,
            "num_multi_object": self.num_multi_object,
        }


def _rate(results: list[ImageAdherence]) -> float:
    return float(np.mean([r.passed for r in results])) if results else float("nan")


def _as_uint8(images: torch.Tensor | np.ndarray) -> np.ndarray:
    if isinstance(images, torch.Tensor):
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images: expected RGB (B, 3, H, W) in [-1, 1], got {tuple(images.shape)}")
        return to_uint8(images)
    arr = np.asarray(images)
    if arr.dtype != np.uint8 or arr.ndim != 4 or arr.shape[-1] != 3:
        raise ValueError(
            f"images: expected uint8 (B, H, W, 3) or a float tensor (B, 3, H, W) in [-1, 1], got {arr.dtype} {arr.shape}"
        )
    return arr


def _check_chunk(
    images: np.ndarray, captions: list[str], config: AdherenceConfig | None
) -> list[ImageAdherence]:
    return [check_image(img, cap, config) for img, cap in zip(images, captions)]


def caption_adherence(
    images: torch.Tensor | np.ndarray,
    captions: list[str],
    config: AdherenceConfig | None = None,
    executor: Executor | None = None,
    chunk_size: int = 32,
) -> AdherenceReport:
    """Check every image against its caption.

    Args:
        images: float tensor ``(B, 3, H, W)`` in ``[-1, 1]`` or uint8 array ``(B, H, W, 3)``.
        captions: ``B`` captions in the shapes grammar.
        config: how pixels are read (:class:`AdherenceConfig`).
        executor: checks chunks of ``chunk_size`` images in parallel (e.g. a ``ProcessPoolExecutor``: reading
            a noisy sample's connected components costs ~20 ms of CPU per image); the report is the same.
    """
    arr = _as_uint8(images)
    if len(captions) != len(arr):
        raise ValueError(f"captions: expected {len(arr)} captions (one per image), got {len(captions)}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size: expected a positive number of images, got {chunk_size}")
    if executor is None:
        results = _check_chunk(arr, captions, config)
    else:
        parts = [
            executor.submit(_check_chunk, arr[i : i + chunk_size], captions[i : i + chunk_size], config)
            for i in range(0, len(arr), chunk_size)
        ]
        results = [r for part in parts for r in part.result()]
    one = [r for r in results if r.num_objects == 1]
    multi = [r for r in results if r.num_objects > 1]
    return AdherenceReport(tuple(results), _rate(results), _rate(one), _rate(multi), len(one), len(multi))
