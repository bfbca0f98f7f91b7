"""``diffuse bench protein``: train and evaluate a small backbone model and a small sequence model.

Backbones: FrameFlow (SE(3) flow matching, Yim et al. 2023b; or FrameDiff with ``process="diffusion"``)
with the IPA network on the synthetic set, then samples of the training lengths, one motif-scaffolding
sample, PDB files, and the issue's geometry metrics. FrameFlow is the default: it trains faster and
samples well in 100 Euler steps with rotations moved faster than translations (here the linear schedule
sped up 20x, which measured better than FrameFlow's exponential schedule after short trainings). Sequences:
TaxDiff-style masked diffusion on the profile families, CFG samples, label adherence by an
independently trained classifier and by the exact Bayes classifier. ``quick`` fits a CPU in a few
minutes and does not reach the targets; :func:`run_bench` with :data:`FULL` settings is what
``benchmarks/protein/protein_full.py`` runs on a GPU.

The settings (:class:`BenchSettings`, :data:`QUICK`, :data:`FULL`) and :func:`bench` are a light import (the
command line registers :func:`bench`); the runner (:mod:`diff_protein.bench.runner`) loads on first use.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from diffcore.device import Device
from diffcore.modality import BenchResult

__all__ = [
    "FULL",
    "LEG_FILE",
    "QUICK",
    "BackboneList",
    "BenchSettings",
    "backbone_model_config",
    "backbone_objective_config",
    "backbone_process_config",
    "backbone_train_config",
    "bench",
    "draw_sample_lengths",
    "generate_synthetic",
    "run_bench",
    "synthetic_chains",
]


@dataclass(frozen=True)
class BenchSettings:
    """Sizes of one benchmark run (see :data:`QUICK` and :data:`FULL`).

    ``process``: ``"flow"`` (FrameFlow, default) or ``"diffusion"`` (FrameDiff); ``rotation_schedule`` and
    ``rotation_rate``: FrameFlow's rotation sampling (``"linear"`` x 20 measured best after short
    training, see docs/diff-protein.md); ``rotation_rate_t_max``: the sped-up rotations only below this time,
    the plain geodesic ODE above it (0.9 in :data:`FULL`: the topology balance of the data is kept, see
    docs/diff-protein.md); ``compare_rotation``: further ``(schedule, rate)`` pairs sampled
    and reported with the prefix ``backbone_rot_<schedule><rate>_``; ``aux_t_max``: window of the
    auxiliary losses (``None``: the paper's); ``aux_clash``: weight of the steric-violation loss
    (:func:`~diff_protein.diffusion.base.clash_loss`, off by default); ``backbone_max_seconds``: wall-time cap of the backbone
    training (``None``: none); ``noise_scales``: FrameDiff's reverse-SDE noise scales to evaluate;
    ``neighbour_features``: the IPA blocks read their chain neighbours' exact geometry (an ablation switch);
    ``backbone_legs``: plan the backbone training for ``backbone_legs x backbone_max_seconds`` and run it in
    that many calls of at most ``backbone_max_seconds`` each (for machines that limit one command's time):
    a call whose training stops short of the plan writes a checkpoint and :data:`LEG_FILE` under
    ``out_dir/backbone_train`` and returns with ``backbone_unfinished = 1`` and no evaluation; calling again
    with the same ``out_dir`` resumes it, and the call that completes the plan evaluates; ``backbone_init``:
    a saved backbone run folder (``out_dir/backbone_model`` of an earlier run with the same network sizes)
    whose weights start the training, so a finished schedule can be followed by another; ``cuda_graphs``:
    on a GPU, replay the denoiser's training forward and backward from CUDA graphs (batches padded to the
    longest chain; see :class:`~diff_protein.diffusion.objective.BackboneObjectiveConfig`); ``device``: where
    to train and sample (``"auto"``: a GPU when one is present; with ``backbone_max_seconds`` a pilot run then
    sizes the step count to the time budget, except on ``"cpu"``).
    """

    num_backbones: int = 24
    min_length: int = 32
    max_length: int = 48
    topologies: tuple[str, ...] = ("helical_hairpin",)
    node_dim: int = 64
    pair_dim: int = 32
    num_blocks: int = 2
    neighbour_features: bool = True
    backbone_steps: int = 250
    backbone_legs: int = 1
    backbone_init: str | None = None
    cuda_graphs: bool = False
    backbone_batch: int = 8
    backbone_lr: float = 1e-3
    backbone_max_seconds: float | None = None
    ema_decay: float | None = None
    process: str = "flow"
    rotation_schedule: str = "linear"
    rotation_rate: float = 20.0
    rotation_rate_t_max: float = 1.0
    compare_rotation: tuple[tuple[str, float], ...] = ()
    aux_t_max: float | None = None
    aux_clash: float = 0.0
    motif_prob: float = 0.2
    num_samples: int = 4
    sample_steps: int = 50
    noise_scales: tuple[float, ...] = (1.0,)
    num_families: int = 4
    seq_length: int = 32
    per_family: int = 64
    seq_hidden: int = 64
    seq_depth: int = 2
    seq_steps: int = 200
    seq_batch: int = 32
    seq_lr: float = 2e-3
    samples_per_family: int = 16
    guidance_scale: float = 2.0
    classifier_steps: int = 150
    data_workers: int = 0
    seed: int = 0
    device: Device = "cpu"


LEG_FILE = "leg_plan.json"
"""The plan and progress of a backbone training run split into legs (``BenchSettings.backbone_legs``)."""

QUICK = BenchSettings()
"""The ``diffuse bench protein --quick`` settings (CPU, about a minute)."""
FULL = BenchSettings(
    num_backbones=1024,
    min_length=40,
    max_length=96,
    topologies=("helical_hairpin", "helix_bundle", "beta_hairpin"),
    node_dim=128,
    pair_dim=64,
    num_blocks=4,
    backbone_steps=100_000,  # in effect time-bound: the pilot run sizes the plan to the time budget
    cuda_graphs=True,
    backbone_batch=64,
    backbone_lr=8e-4,
    backbone_max_seconds=220.0,
    ema_decay=0.999,
    num_samples=64,
    sample_steps=100,
    rotation_rate_t_max=0.9,
    noise_scales=(1.0, 0.1),
    per_family=512,
    seq_hidden=128,
    seq_depth=4,
    seq_steps=2000,
    seq_batch=64,
    seq_lr=1e-3,
    samples_per_family=64,
    classifier_steps=1000,
    data_workers=-1,
    device="auto",
)
"""What ``benchmarks/protein/protein_full.py`` runs on one H100 (backbone training capped at 220 s of wall time).

The step count is sized to the cap by a 60-step pilot run (``backbone_steps`` is only an upper bound), so
the cosine learning-rate decay completes: in the 2026-11-27 H100 run with 3200 planned steps the cap cut
training at step 2161 with the learning rate still at a third of its peak. The IPA model at these sizes is
bound by kernel launches, not arithmetic (about 100 ms per step at batch 32), so batch 64 costs little
time per step; the synthetic set has 1024 chains so the larger batches do not cycle a small set. Earlier
runs (docs/diff-protein.md) showed the sampler is not what limits quality (linear x 20 / x 10 / exp x 10
within 0.015 of each other in CA-CA validity), so one sampler is evaluated."""


def bench(out_dir: Path, quick: bool) -> BenchResult:
    """``diffuse bench protein``: :data:`QUICK` on CPU when ``quick``, else :data:`FULL`."""
    from diff_protein.bench.runner import run_bench

    return run_bench(out_dir, QUICK if quick else FULL)


_RUNNER = {
    "BackboneList",
    "backbone_model_config",
    "backbone_objective_config",
    "backbone_process_config",
    "backbone_train_config",
    "draw_sample_lengths",
    "generate_synthetic",
    "run_bench",
    "synthetic_chains",
}


def __getattr__(name: str) -> Any:
    if name in _RUNNER:
        value = getattr(importlib.import_module("diff_protein.bench.runner"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'diff_protein.bench' has no attribute {name!r}")
