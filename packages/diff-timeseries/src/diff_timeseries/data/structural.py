"""Uncaptioned synthetic series for the forecasting / imputation prior: sums of the structural components real
series are made of (the basic structural model of Harvey 1989, Ch. 2, with the extras of real data).

A series of length ``L`` is

    x_t = level_t + trend_t + sum_j season_j(t) + cycle_t + shift * 1[t >= k] + e_t

- ``level_t``: a random walk with drift (``sigma_level`` may be 0: a fixed level);
- ``trend_t``: a line whose slope may change once (a broken trend), or a damped trend;
- ``season_j``: zero, one or two seasonal patterns, each of integer period 2-24 and a random shape (1-3
  harmonics), its amplitude constant or drifting;
- ``cycle_t``: sometimes a quasi-periodic cycle whose period wanders by up to 10% (sunspot-like);
- ``e_t``: AR(1) noise (``phi`` in [0, 0.9]) of a random level;
- an occasional level shift.

Each series is z-scored. Unlike :mod:`~diff_timeseries.data.synthetic` these have no caption: they exist so the
prior sees random walks, persistent noise, several seasonalities and trend changes, which the captioned set
(one sinusoid, white noise) lacks and real series have.
"""

from __future__ import annotations

import numpy as np

__all__ = ["render_structural", "structural_set"]


def _season(length: int, period: int, rng: np.random.Generator) -> np.ndarray:
    """One seasonal pattern of unit scale: 1-3 harmonics of ``period`` with random weights and phases."""
    t = np.arange(length)
    harmonics = rng.integers(1, min(3, max(1, period // 2)) + 1)
    out = np.zeros(length)
    for k in range(1, harmonics + 1):
        out += rng.normal() / k * np.sin(2 * np.pi * k * t / period + rng.uniform(0, 2 * np.pi))
    return out / max(out.std(), 1e-9)


def render_structural(length: int, rng: np.random.Generator) -> np.ndarray:
    """One z-scored series ``(length,)`` float32 of the module's model, its components drawn from ``rng``."""
    t = np.arange(length, dtype=np.float64)
    s = t / max(length - 1, 1)
    x = np.zeros(length)
    if rng.random() < 0.5:  # a random walk with drift
        x += np.cumsum(rng.normal(rng.normal(0, 0.3), 1.0, length)) * rng.uniform(0.2, 1.0)
    kind = rng.choice(["none", "line", "broken", "damped"], p=[0.25, 0.35, 0.2, 0.2])
    slope = rng.normal(0, 3.0)
    if kind == "line":
        x += slope * s
    elif kind == "broken":
        k = rng.uniform(0.3, 0.8)
        x += slope * s + rng.normal(0, 3.0) * np.clip(s - k, 0, None)
    elif kind == "damped":
        phi = rng.uniform(0.8, 0.98)
        x += slope * (1 - phi ** (t + 1)) / (1 - phi) / max(length, 1) * 4
    periods = [p for p in range(2, 25) if 2 * p <= length]
    for _ in range(rng.choice([0, 1, 2], p=[0.3, 0.5, 0.2])):
        p = int(rng.choice(periods))
        amp = rng.uniform(0.3, 2.0) * (1 + rng.uniform(-0.5, 0.5) * s)  # a constant or drifting amplitude
        x += amp * _season(length, p, rng)
    if rng.random() < 0.15 and length >= 24:  # a quasi-periodic cycle
        base = rng.uniform(6, min(24, length / 2))
        freq = 1 / (base * (1 + 0.1 * np.cumsum(rng.normal(0, 0.05, length)).clip(-1, 1)))
        x += rng.uniform(0.5, 2.0) * np.sin(2 * np.pi * np.cumsum(freq) + rng.uniform(0, 2 * np.pi))
    if rng.random() < 0.1:
        x += rng.normal(0, 2.0) * (t >= rng.integers(length // 8, length - length // 8))
    phi = rng.uniform(0.0, 0.9)
    e = np.zeros(length)
    innovations = rng.normal(0, 1.0, length)
    e[0] = innovations[0] / np.sqrt(1 - phi**2)
    for i in range(1, length):
        e[i] = phi * e[i - 1] + innovations[i]
    scale = x.std() if x.std() > 1e-9 else 1.0
    x = x + rng.uniform(0.02, 0.5) * scale * e * np.sqrt(1 - phi**2)
    std = x.std()
    return ((x - x.mean()) / (std if std > 1e-9 else 1.0)).astype(np.float32)


def structural_set(n: int, length: int, seed: int = 0) -> np.ndarray:
    """``n`` series ``(n, 1, length)`` float32 (z-scored), deterministic in ``(n, length, seed)``."""
    if n < 0 or length < 8:
        raise ValueError(f"n, length: expected n >= 0 and length >= 8, got {n}, {length}")
    rng = np.random.default_rng([seed, length, 7])
    return np.stack([render_structural(length, rng) for _ in range(n)])[:, None].reshape(n, 1, length)
