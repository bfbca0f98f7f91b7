"""``diffuse bench materials``: train a crystal model on the generated perovskites, write CIF files, and report
structural and compositional validity of ab initio samples and the structure-prediction match rate on held-out
compositions.

One network (ab initio generation that also learns structure prediction on half of its examples,
``csp_fraction = 0.5``) is trained on the prototypes of :mod:`diff_materials.data.generated` with a
polymorph-grouped held-out split; ``quick`` fits a CPU in under five minutes. The GPU benchmark on Perov-5 and
Carbon-24 is ``benchmarks/materials/materials_full.py``, built from the same pieces (:func:`run_bench`).

The settings (:class:`BenchSettings`, :data:`QUICK`, :data:`FULL`) and :func:`bench` are a light import; the
runner (:mod:`diff_materials.bench.runner`) loads on first use.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from diffcore.device import Device
from diffcore.modality import BenchResult

__all__ = ["FULL", "QUICK", "TARGETS", "BenchSettings", "bench", "run_bench"]

TARGETS = {"structure_validity": (">=", 0.9)}


@dataclass(frozen=True)
class BenchSettings:
    """Sizes of one benchmark run.

    ``width``/``depth``/``num_freqs``/``wave_order``: the network; ``steps``/``batch_size``/``lr``: training;
    ``max_seconds``: wall-time cap of training; ``coords``/``frac_target``/``type_schedule``/``type_power``: the coordinates'
    process and training target and the atom types' schedule (:class:`~diff_materials.diffusion.CrystalDiffusionConfig`); ``sample_steps``/``step_lr``: the sampler; ``num_generate``:
    ab initio samples; ``num_csp``: held-out compositions predicted; ``candidates``: predictions each;
    ``fingerprints``: compute COV (CrystalNN); ``device``; ``seed``."""

    width: int = 64
    depth: int = 3
    num_freqs: int = 16
    wave_order: int = 3
    steps: int = 8000
    batch_size: int = 64
    lr: float = 2e-3
    max_seconds: float | None = 200.0
    coords: str = "wrapped_normal"
    frac_target: str = "crystal"
    type_schedule: str = "log-linear"
    type_power: float = 2.0
    sample_steps: int = 200
    step_lr: float = 0.0
    num_generate: int = 32
    num_csp: int = 20
    candidates: int = 1
    fingerprints: bool = True
    device: Device = "auto"
    seed: int = 0


QUICK = BenchSettings()
FULL = BenchSettings(width=256, depth=4, num_freqs=64, steps=20000, batch_size=128, lr=5e-4, max_seconds=None,
                     sample_steps=500, step_lr=1e-5, num_generate=256, num_csp=20, candidates=20)  # fmt: skip


def run_bench(*args: Any, **kwargs: Any) -> Any:
    """:func:`diff_materials.bench.runner.run_bench` (loaded on first use)."""
    return importlib.import_module("diff_materials.bench.runner").run_bench(*args, **kwargs)


def bench(out_dir: Path, quick: bool = True) -> BenchResult:
    """What ``diffuse bench materials`` runs: :data:`QUICK` on the CPU, or :data:`FULL` settings on the
    generated set (the Perov-5 / Carbon-24 run is ``benchmarks/materials/materials_full.py``)."""
    return run_bench(Path(out_dir), QUICK if quick else FULL)
