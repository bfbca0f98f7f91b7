"""Seeds for the few-step benchmarks: mean and standard error over training seeds, the "not worse with more
steps" check, and a JSON store that a run resumes from (one cell per method, seed and metric).

A cell's key is ``"<method>/<seed>"``; its value maps ``"<metric>/<steps>"`` to a number. ``summary`` turns the
cells into ``{method: {metric: {steps: {"mean", "se", "n"}}}}`` with ``se = std / sqrt(n)`` (sample std,
``ddof = 1``).
"""

from __future__ import annotations

import itertools
import json
import math
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any


def mean_se(values: Iterable[float]) -> dict[str, float]:
    """``{"mean", "se", "n"}`` of ``values`` (``se`` = sample standard deviation / sqrt(n); 0 for one value)."""
    v = [float(x) for x in values]
    if not v:
        raise ValueError("values: expected at least one number")
    m = sum(v) / len(v)
    var = sum((x - m) ** 2 for x in v) / (len(v) - 1) if len(v) > 1 else 0.0
    return {"mean": m, "se": math.sqrt(var / len(v)), "n": len(v)}


def not_worse_with_steps(cells: dict[str, dict[str, float]], steps: tuple[str, ...], z: float = 2.0) -> bool:
    """Whether an error does not increase along ``steps`` (e.g. ``("1", "2", "4")``): each next mean is at most
    the previous plus ``z`` combined standard errors (``sqrt(se_a^2 + se_b^2)``), the seeds' tolerance."""
    for a, b in itertools.pairwise(steps):
        ca, cb = cells[a], cells[b]
        if cb["mean"] > ca["mean"] + z * math.hypot(ca["se"], cb["se"]):
            return False
    return True


def cells_path(out: Path) -> Path:
    """The per-seed store beside a summary ``<script>[-<variant>]-<device>.json``: the same name with ``cells`` added
    to the variant (``few_step_gmm-seeds-cpu.json`` -> ``few_step_gmm-seeds-cells-cpu.json``)."""
    out = Path(out)
    head, sep, device = out.stem.rpartition("-")
    return out.with_name(f"{head}-cells-{device}.json" if sep else f"{out.stem}-cells.json")


class SeedStore:
    """Per-seed results in a JSON file, written atomically after every cell so a stopped run resumes."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.doc: dict[str, Any] = json.loads(self.path.read_text()) if self.path.exists() else {}
        self.doc.setdefault("cells", {})

    def has(self, method: str, seed: int) -> bool:
        """Whether ``method`` at ``seed`` is already measured."""
        return f"{method}/{seed}" in self.doc["cells"]

    def put(self, method: str, seed: int, values: dict[str, float], **info: Any) -> None:
        """Store one cell (``values``: ``"<metric>/<steps>" -> number``) and write the file."""
        self.doc["cells"][f"{method}/{seed}"] = {"values": values, **info}
        self.save()

    def save(self) -> None:
        """Write the store (temp file, then rename)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            json.dump(self.doc, f, indent=1, sort_keys=True)
        os.replace(tmp, self.path)

    def summary(self) -> dict[str, dict[str, dict[str, dict[str, float]]]]:
        """``{method: {metric: {steps: mean_se}}}`` over the stored seeds."""
        grouped: dict[str, dict[str, dict[str, list[float]]]] = {}
        for key, cell in self.doc["cells"].items():
            method = key.rsplit("/", 1)[0]
            for name, value in cell["values"].items():
                metric, steps = name.rsplit("/", 1)
                grouped.setdefault(method, {}).setdefault(metric, {}).setdefault(steps, []).append(value)
        return {
            m: {k: {s: mean_se(v) for s, v in by_steps.items()} for k, by_steps in metrics.items()}
            for m, metrics in grouped.items()
        }
