"""The vocabulary and settings of the moving-shapes set (colours, shapes, directions, speeds, events and
:class:`ShapesConfig`), in plain Python so configurations and ``diffuse --help`` load without numpy or torch;
the generator is :mod:`diff_video.data.shapes`."""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = [
    "COLOURS",
    "DIRECTIONS",
    "EVENTS",
    "FOUR_DIRECTIONS",
    "SHAPES",
    "SPEEDS",
    "WALL_COLOUR",
    "ShapesConfig",
]

COLOURS: dict[str, tuple[float, float, float]] = {
    "red": (1.0, 0.0, 0.0),
    "green": (0.0, 1.0, 0.0),
    "blue": (0.0, 0.0, 1.0),
    "yellow": (1.0, 1.0, 0.0),
    "magenta": (1.0, 0.0, 1.0),
    "cyan": (0.0, 1.0, 1.0),
}
"""Object colours (RGB in [0, 1]); pure and far apart, so colour segmentation can find each object."""

SHAPES = ("square", "circle", "triangle", "digit")
DIRECTIONS: dict[str, tuple[float, float]] = {
    "right": (1.0, 0.0),
    "up-right": (math.sqrt(0.5), -math.sqrt(0.5)),
    "up": (0.0, -1.0),
    "up-left": (-math.sqrt(0.5), -math.sqrt(0.5)),
    "left": (-1.0, 0.0),
    "down-left": (-math.sqrt(0.5), math.sqrt(0.5)),
    "down": (0.0, 1.0),
    "down-right": (math.sqrt(0.5), math.sqrt(0.5)),
}
"""Unit displacement ``(dx, dy)`` in image coordinates (``y`` down) of each direction word, in angle order."""
FOUR_DIRECTIONS = ("right", "up", "left", "down")

SPEEDS: dict[str, float] = {"slowly": 0.5, "steadily": 1.0, "quickly": 1.5}
"""Speed words and their factor: a clip's path is ``factor * 0.4 * min(H, W)`` pixels long (a bounce path twice)."""

EVENTS = ("bounce", "grow", "shrink", "appear", "occlude")
"""Optional events: bounce off the walls, grow to 1.6x / shrink to 0.5x, appear after the first third of the
clip, pass behind a grey wall in the middle of the frame."""

WALL_COLOUR = (0.5, 0.5, 0.5)
_EVENT_PHRASE = {
    "bounce": "and bounces",
    "grow": "and grows",
    "shrink": "and shrinks",
    "appear": "",
    "occlude": "behind a grey wall",
}


@dataclass
class ShapesConfig:
    """The generated moving-shapes set.

    Attributes:
        frames: frames per clip (16 by default; any number >= 1, a 1-frame clip is an image).
        height: frame height in pixels.
        width: frame width in pixels.
        num_objects: the object counts a clip may have (each equally likely): ``(1,)``, ``(2,)`` or ``(1, 2)``.
        shapes: the shapes drawn (``square``, ``circle``, ``triangle``, ``digit``: an sklearn digit sprite).
        colours: the colours drawn (names of :data:`COLOURS`); the objects of one clip differ in colour.
        directions: 4 (right, up, left, down) or 8 (and the four diagonals).
        speeds: the speed words used (:data:`SPEEDS`); with one speed the caption leaves it out.
        events: the optional events (:data:`EVENTS`) an object may have.
        event_prob: the probability that an object has one of ``events``.
        size: the object's size (side, diameter) as a fraction of ``min(height, width)``.
        length: clips in the set (clip ``i`` is generated from ``(seed, i)``).
        seed: the seed of the set.
    """

    frames: int = 16
    height: int = 32
    width: int = 32
    num_objects: tuple[int, ...] = (1, 2)
    shapes: tuple[str, ...] = SHAPES
    colours: tuple[str, ...] = tuple(COLOURS)
    directions: int = 8
    speeds: tuple[str, ...] = ("slowly", "quickly")
    events: tuple[str, ...] = EVENTS
    event_prob: float = 0.3
    size: float = 0.25
    length: int = 10_000
    seed: int = 0

    def __post_init__(self) -> None:
        self.num_objects = tuple(int(n) for n in self.num_objects)
        self.shapes, self.colours = tuple(self.shapes), tuple(self.colours)
        self.speeds, self.events = tuple(self.speeds), tuple(self.events)
        _check_members("shapes", self.shapes, SHAPES)
        _check_members("colours", self.colours, tuple(COLOURS))
        _check_members("speeds", self.speeds, tuple(SPEEDS))
        _check_members("events", self.events, EVENTS)
        if self.frames < 1 or self.height < 8 or self.width < 8:
            raise ValueError(
                f"frames, height, width: expected >= 1, >= 8, >= 8, got {self.frames}, {self.height}, {self.width}"
            )
        if not self.num_objects or not set(self.num_objects) <= {1, 2}:
            raise ValueError(f"num_objects: expected counts among (1, 2), got {self.num_objects}")
        if max(self.num_objects) > len(self.colours):
            raise ValueError(
                f"colours: {max(self.num_objects)} objects need as many colours, got {self.colours}"
            )
        if self.directions not in (4, 8):
            raise ValueError(f"directions: expected 4 or 8, got {self.directions}")
        if not 0.0 <= self.event_prob <= 1.0:
            raise ValueError(f"event_prob: expected a probability in [0, 1], got {self.event_prob}")
        if not 0.05 <= self.size <= 0.5:
            raise ValueError(f"size: expected a fraction of the frame in [0.05, 0.5], got {self.size}")
        if self.length < 1:
            raise ValueError(f"length: expected >= 1 clips, got {self.length}")

    @property
    def direction_names(self) -> tuple[str, ...]:
        """The direction words in use, in angle order."""
        return FOUR_DIRECTIONS if self.directions == 4 else tuple(DIRECTIONS)


def _check_members(name: str, got: tuple[str, ...], allowed: tuple[str, ...]) -> None:
    bad = [g for g in got if g not in allowed]
    if bad or (name != "events" and not got):
        raise ValueError(f"{name}: expected names among {allowed}, got {got}")
