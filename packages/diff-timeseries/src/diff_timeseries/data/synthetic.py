"""The default data set: synthetic series with known generating parameters and captions made from them.

A series of length ``L`` (time ``s = t / (L - 1)`` in [0, 1]) is

    x_t = change * s  +  amplitude * sin(2 pi t / period + phase)  +  shift * 1[t >= k]  +  spike * 1[t = j]
          + noise * std(clean part) * eps_t

then z-scored. The parameters are drawn per series from a ``numpy.random.Generator`` seeded by the caller,
so a set is the same on every machine for the same seed, at any length. Every series has at least one of
trend, cycle or event (a flat, acyclic, eventless series is plain noise, which no caption can describe).

Captions read the parameters, e.g. "a rising series with a cycle of period 7, low noise and a sudden drop
near the end". :func:`caption_of` turns any :class:`~diff_timeseries.features.Attributes` into the same
words, which is how real windows are captioned from their estimated attributes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from diff_timeseries.features import EVENT_POSITIONS, Attributes

__all__ = ["PERIODS", "SeriesSpec", "caption_of", "draw_specs", "render", "synthetic_set"]

PERIODS = (4, 7, 12, 24)
"""Seasonal periods the generator uses (a period is used only when the series holds 3 cycles of it)."""
EVENTS = ("none", "shift up", "shift down", "spike up", "spike down")
_EVENT_WORDS = {
    "shift up": "a sudden jump",
    "shift down": "a sudden drop",
    "spike up": "an upward spike",
    "spike down": "a downward spike",
}


@dataclass(frozen=True)
class SeriesSpec:
    """The generating parameters of one synthetic series (the ground truth of its caption).

    Attributes:
        trend: ``"rising"``, ``"falling"`` or ``"flat"``.
        change: total change of the linear trend, in units of the cycle amplitude scale (0 when flat).
        period: seasonal period in steps (0: none).
        amplitude: amplitude of the sinusoid.
        phase: its phase (radians).
        noise: ``"low"`` or ``"high"``.
        noise_ratio: noise standard deviation as a fraction of the clean signal's.
        event: one of ``none``, ``shift up``, ``shift down``, ``spike up``, ``spike down``.
        event_position: ``start``, ``middle`` or ``end`` (the third of the series); ``""`` without an event.
        event_size: size of the step or spike (signed).
        event_fraction: where in its third the event sits, in [0, 1].
    """

    trend: str
    change: float
    period: int
    amplitude: float
    phase: float
    noise: str
    noise_ratio: float
    event: str
    event_position: str
    event_size: float
    event_fraction: float

    def attributes(self) -> Attributes:
        """The spec as the estimators would report it (``change`` and ``noise_std`` are not comparable)."""
        return Attributes(
            self.trend,
            self.change,
            self.period,
            self.noise,
            self.noise_ratio,
            self.event,
            self.event_position,
        )


def _periods_for(length: int) -> list[int]:
    return [p for p in PERIODS if 3 * p <= length]


def draw_specs(n: int, length: int, rng: np.random.Generator) -> list[SeriesSpec]:
    """``n`` random specs for series of ``length`` points (``length >= 16``)."""
    if length < 16:
        raise ValueError(f"length: expected at least 16 points, got {length}")
    periods = _periods_for(length)
    specs = []
    while len(specs) < n:
        trend = str(rng.choice(["rising", "falling", "flat"]))
        period = int(rng.choice([0, *periods]))
        event = str(rng.choice(EVENTS, p=[0.4, 0.15, 0.15, 0.15, 0.15]))
        if trend == "flat" and period == 0 and event == "none":
            continue
        sign = {"rising": 1.0, "falling": -1.0, "flat": 0.0}[trend]
        position = str(rng.choice(EVENT_POSITIONS)) if event != "none" else ""
        size = 0.0
        if event.startswith("shift"):
            size = rng.uniform(2.5, 3.5) * (1 if event.endswith("up") else -1)
        elif event.startswith("spike"):
            size = rng.uniform(5.0, 7.0) * (1 if event.endswith("up") else -1)
        noise = str(rng.choice(["low", "high"]))
        specs.append(
            SeriesSpec(
                trend=trend,
                change=sign * rng.uniform(2.5, 4.0),
                period=period,
                amplitude=rng.uniform(0.6, 1.0) if period else 0.0,
                phase=rng.uniform(0, 2 * np.pi),
                noise=noise,
                noise_ratio=rng.uniform(0.03, 0.08) if noise == "low" else rng.uniform(0.3, 0.45),
                event=event,
                event_position=position,
                event_size=size,
                event_fraction=rng.uniform(0.25, 0.75),
            )
        )
    return specs


def render(spec: SeriesSpec, length: int, rng: np.random.Generator) -> np.ndarray:
    """The z-scored series ``(length,)`` float32 of ``spec``; ``rng`` draws its noise."""
    t = np.arange(length)
    s = t / (length - 1)
    clean = spec.change * s
    if spec.period:
        clean = clean + spec.amplitude * np.sin(2 * np.pi * t / spec.period + spec.phase)
    if spec.event != "none":
        third = EVENT_POSITIONS.index(spec.event_position)
        lo, hi = third * length // 3, (third + 1) * length // 3
        if spec.event.startswith("shift"):  # keep a step inside the middle 80% that the estimator scans
            lo, hi = max(lo, length // 10 + 1), min(hi, length - length // 10 - 1)
        else:
            lo, hi = max(lo, 2), min(hi, length - 2)
        k = int(lo + spec.event_fraction * (hi - 1 - lo))
        if spec.event.startswith("shift"):
            clean = clean + spec.event_size * (t >= k)
        else:
            bump = np.zeros(length)
            bump[k] = spec.event_size
            clean = clean + bump
    scale = clean.std() if clean.std() > 1e-9 else 1.0
    x = clean + spec.noise_ratio * scale * rng.standard_normal(length)
    x = (x - x.mean()) / x.std()
    return x.astype(np.float32)


def caption_of(attributes: Attributes | SeriesSpec) -> str:
    """Words for a series' attributes: "a rising series with a cycle of period 7, low noise and a sudden drop
    near the end"."""
    a = attributes
    head = {"rising": "a rising series", "falling": "a falling series", "flat": "a flat series"}[a.trend]
    parts = [f"with a cycle of period {a.period}" if a.period else "with no cycle", f"{a.noise} noise"]
    if a.event != "none":
        parts.append(f"{_EVENT_WORDS[a.event]} near the {a.event_position}")
    else:
        parts.append("no sudden events")
    return f"{head} {parts[0]}, {parts[1]} and {parts[2]}"


def synthetic_set(n: int, length: int, seed: int = 0) -> tuple[np.ndarray, list[str], list[SeriesSpec]]:
    """``n`` synthetic series: values ``(n, 1, length)`` float32 (z-scored), their captions and their specs.
    Deterministic in ``(n, length, seed)``."""
    rng = np.random.default_rng([seed, length])
    specs = draw_specs(n, length, rng)
    values = np.stack([render(spec, length, rng) for spec in specs])[:, None]
    return values, [caption_of(spec) for spec in specs], specs
