"""The report's pictures, written by hand as inline SVG: no plotting library (``diffcore`` does not depend
on matplotlib) and nothing fetched when the page opens.

- :func:`target_chart`: each targeted metric as a bar beside a mark at its target, green when met.
- :func:`structure_preview`: a structure's C-alpha trace (or point cloud) projected on its two principal axes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from html import escape

import numpy as np

from diffcore.bench.samples import Structure

COLOURS = {"met": "#2e7d32", "not met": "#c62828", "missing": "#9e9e9e"}
CHAIN_COLOURS = ("#1565c0", "#ef6c00", "#6a1b9a", "#00838f", "#ad1457", "#558b2f")


@dataclass(frozen=True)
class ChartRow:
    """One targeted metric: its name, measured value (None when missing), target and verdict."""

    metric: str
    value: float | None
    direction: str
    target: float
    verdict: str


def fmt(value: object) -> str:
    """A metric value as the report prints it: four significant digits for floats."""
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def target_chart(rows: list[ChartRow], title: str) -> str:
    """An SVG with one row per metric: a bar from zero to the value, a dark mark at the target.

    Each row has its own scale (metrics differ by orders of magnitude); the value and the target are
    printed as numbers too, so the bar is a glance and the numbers are the record.
    """
    label_w, track_w, text_w, row_h, top = 230, 260, 170, 26, 8
    width, height = label_w + track_w + text_w, top * 2 + row_h * len(rows)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}" class="chart">',
        f"<title>{escape(title)}</title>",
    ]
    for i, row in enumerate(rows):
        y = top + i * row_h
        finite = row.value is not None and math.isfinite(row.value)
        values = [0.0, row.target] + ([row.value] if finite else [])
        lo, hi = min(values), max(values)
        span = (hi - lo) or 1.0
        lo, hi = lo - 0.08 * span * (lo < 0), hi + 0.08 * span

        def x(v: float, lo: float = lo, hi: float = hi) -> float:
            return label_w + track_w * (v - lo) / (hi - lo)

        colour = COLOURS.get(row.verdict, COLOURS["missing"])
        label = row.metric if len(row.metric) <= 34 else row.metric[:33] + "…"
        parts.append(
            f'<text x="{label_w - 8}" y="{y + 17}" text-anchor="end">{escape(label)}</text>'
            f'<rect x="{label_w}" y="{y + 5}" width="{track_w}" height="16" fill="#f2f2f2"/>'
        )
        if finite:
            x0, x1 = sorted((x(0.0), x(row.value)))
            parts.append(
                f'<rect x="{x0:.1f}" y="{y + 7}" width="{max(x1 - x0, 1.0):.1f}" height="12" fill="{colour}"/>'
            )
        xt = x(row.target)
        parts.append(
            f'<line x1="{xt:.1f}" x2="{xt:.1f}" y1="{y + 2}" y2="{y + 24}" stroke="#212121" stroke-width="2"/>'
        )
        shown = fmt(row.value) if finite else "missing"
        parts.append(
            f'<text x="{label_w + track_w + 8}" y="{y + 17}">{escape(shown)} '
            f'<tspan fill="#616161">(target {escape(row.direction)} {fmt(float(row.target))})</tspan></text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def structure_preview(structure: Structure, title: str, size: int = 180, max_points: int = 3000) -> str:
    """An SVG of ``structure`` seen along its third principal axis: C-alpha chains as lines, clouds as dots."""
    points = np.concatenate(structure.chains)
    centre = points.mean(0)
    _, _, axes = np.linalg.svd(points - centre, full_matrices=False)
    plane = axes[:2].T  # (3, 2): the two directions of largest spread
    flat_all = (points - centre) @ plane
    middle = (flat_all.min(0) + flat_all.max(0)) / 2  # the drawing's centre is its bounding box's
    extent = float(np.abs(flat_all - middle).max()) or 1.0
    scale = (size / 2 - 6) / extent
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{size}" height="{size}" '
        f'viewBox="0 0 {size} {size}" role="img" aria-label="{escape(title)}" class="preview">',
        f"<title>{escape(title)}</title>",
        f'<rect width="{size}" height="{size}" fill="#fafafa"/>',
    ]
    budget = max(max_points // max(len(structure.chains), 1), 2)
    for k, chain in enumerate(structure.chains):
        step = max(math.ceil(len(chain) / budget), 1)
        flat = ((chain[::step] - centre) @ plane - middle) * scale + size / 2
        colour = CHAIN_COLOURS[k % len(CHAIN_COLOURS)]
        coords = " ".join(f"{u:.1f},{size - v:.1f}" for u, v in flat)
        if structure.trace:
            parts.append(
                f'<polyline points="{coords}" fill="none" stroke="{colour}" stroke-width="1.5" '
                'stroke-linejoin="round"/>'
            )
        else:
            parts += [
                f'<circle cx="{u:.1f}" cy="{size - v:.1f}" r="1" fill="{colour}" fill-opacity="0.5"/>'
                for u, v in flat
            ]
    parts.append("</svg>")
    return "".join(parts)
