"""``diffuse bench protein``: train and evaluate a small backbone model and a small sequence model.

Backbones: FrameFlow (SE(3) flow matching, Yim et al. 2023b; or FrameDiff with ``process="diffusion"``)
with the IPA network on the synthetic set, then samples of the training lengths, one motif-scaffolding
sample, PDB files, and the issue's geometry metrics. FrameFlow is the default: it trains faster and
samples well in 100 Euler steps with rotations moved faster than translations (here the linear schedule
sped up 20x, which measured better than FrameFlow's exponential schedule after short trainings). Sequences:
TaxDiff-style masked diffusion on the profile families, CFG samples, label adherence by an
independently trained classifier and by the exact Bayes classifier. ``quick`` fits a CPU in a few
minutes and does not reach the targets; :func:`run_bench` with :data:`FULL` settings is what
``benchmarks/protein_full.py`` runs on a GPU.
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing as mp
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from diffcore.modality import BenchResult
from diffcore.pretrained import atomic_write_bytes
from diffcore.training import list_checkpoints, steady_samples_per_sec
from torch.utils.data import Dataset

from diff_protein import io
from diff_protein.data.profiles import ProfileFamilies, ProfileFamiliesConfig
from diff_protein.data.sequences import detokenize
from diff_protein.data.synthetic import SyntheticBackbone, SyntheticBackboneConfig, SyntheticBackbones
from diff_protein.diffusion.base import AuxLossConfig
from diff_protein.diffusion.objective import BackboneObjectiveConfig
from diff_protein.diffusion.sampling import Motif
from diff_protein.frames import Rigid, frames_from_backbone
from diff_protein.metrics import ca_ca_valid_fraction, clash_count, kabsch_rmsd
from diff_protein.models.ipa import FrameDenoiserConfig
from diff_protein.models.sequence import SequenceDenoiserConfig
from diff_protein.pipeline import (
    FitConfig,
    evaluate_backbones,
    evaluate_sequences,
    generate_sequences,
    sample_backbones,
    train_backbones,
    train_sequences,
    train_taxonomy_classifier,
)

__all__ = [
    "FULL",
    "LEG_FILE",
    "QUICK",
    "BackboneList",
    "BenchSettings",
    "backbone_model_config",
    "backbone_objective_config",
    "backbone_process_config",
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
    longest chain; see :class:`~diff_protein.diffusion.objective.BackboneObjectiveConfig`).
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
    cpu: bool = True


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
    cpu=False,
)
"""What ``benchmarks/protein_full.py`` runs on one H100 (backbone training capped at 220 s of wall time).

The step count is sized to the cap by a 60-step pilot run (``backbone_steps`` is only an upper bound), so
the cosine learning-rate decay completes: in the 2026-11-27 H100 run with 3200 planned steps the cap cut
training at step 2161 with the learning rate still at a third of its peak. The IPA model at these sizes is
bound by kernel launches, not arithmetic (about 100 ms per step at batch 32), so batch 64 costs little
time per step; the synthetic set has 1024 chains so the larger batches do not cycle a small set. Earlier
runs (docs/diff-protein.md) showed the sampler is not what limits quality (linear x 20 / x 10 / exp x 10
within 0.015 of each other in CA-CA validity), so one sampler is evaluated."""


def backbone_model_config(s: BenchSettings) -> FrameDenoiserConfig:
    """The IPA frame denoiser's sizes of a run."""
    return FrameDenoiserConfig(
        node_dim=s.node_dim,
        pair_dim=s.pair_dim,
        num_blocks=s.num_blocks,
        neighbour_features=s.neighbour_features,
    )


def backbone_process_config(s: BenchSettings) -> dict[str, Any]:
    """Process overrides of a run: FrameFlow's sampling rotation schedule (only sampling reads it)."""
    if s.process == "flow":
        return {
            "rotation_schedule": s.rotation_schedule,
            "rotation_rate": s.rotation_rate,
            "rotation_rate_t_max": s.rotation_rate_t_max,
        }
    return {}


def backbone_objective_config(s: BenchSettings) -> BackboneObjectiveConfig:
    """The papers' auxiliary-loss window unless ``aux_t_max`` is set: ``t < 0.25`` for FrameDiff
    (Yim et al. 2023, Sec. 4.2), ``t < 0.75`` for FrameFlow (its ``aux_loss_t_pass = 0.25`` in the
    flow's time direction, t = 1 data)."""
    t_max = s.aux_t_max if s.aux_t_max is not None else (0.75 if s.process == "flow" else 0.25)
    return BackboneObjectiveConfig(
        motif_prob=s.motif_prob, aux=AuxLossConfig(t_max=t_max, clash=s.aux_clash), cuda_graphs=s.cuda_graphs
    )


class BackboneList(Dataset):
    """Items ``{"atoms", "rots", "trans"}`` (as :class:`SyntheticBackbones`) of a list of generated chains."""

    def __init__(self, items: list[SyntheticBackbone]) -> None:
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        atoms = self.items[index].atoms
        frames = frames_from_backbone(atoms[:, 0], atoms[:, 1], atoms[:, 2])
        return {"atoms": atoms, "rots": frames.rots, "trans": frames.trans}


def _generate_chunk(args: tuple[SyntheticBackboneConfig, list[int]]) -> list[SyntheticBackbone]:
    config, indices = args
    torch.set_num_threads(1)
    data = SyntheticBackbones(config)
    return [data.backbone(i) for i in indices]


def generate_synthetic(config: SyntheticBackboneConfig, workers: int = 0) -> list[SyntheticBackbone]:
    """The synthetic set, item ``i`` identical to ``SyntheticBackbones(config).backbone(i)``; generated in
    ``workers`` processes (``-1``: one per CPU core but one; ``0``: in this process)."""
    n = config.num_samples
    if workers < 0:
        workers = max(1, (os.cpu_count() or 2) - 1)
    if workers <= 1 or n < 2 * workers:
        threads = torch.get_num_threads()  # _generate_chunk pins a worker to one thread; not this process
        try:
            return _generate_chunk((config, list(range(n))))
        finally:
            torch.set_num_threads(threads)
    chunks = [(config, list(range(k, n, workers))) for k in range(workers)]
    with mp.get_context("spawn").Pool(workers) as pool:
        parts = pool.map(_generate_chunk, chunks)
    out: list[SyntheticBackbone | None] = [None] * n
    for (_, indices), part in zip(chunks, parts):
        for i, item in zip(indices, part):
            out[i] = item
    return out  # type: ignore[return-value]


def synthetic_chains(s: BenchSettings, num_backbones: int | None = None) -> BackboneList:
    """The synthetic training chains of a run's settings: all ``s.num_backbones`` of them, or the first
    ``num_backbones`` (item ``i`` is the same either way), generated in ``s.data_workers`` processes."""
    n = s.num_backbones if num_backbones is None else min(num_backbones, s.num_backbones)
    config = SyntheticBackboneConfig(
        num_samples=n, min_length=s.min_length, max_length=s.max_length, topologies=s.topologies
    )
    return BackboneList(generate_synthetic(config, workers=s.data_workers))


def _backbone_part(s: BenchSettings, out: Path, files: list[str]) -> dict[str, float]:
    data = synthetic_chains(s)
    model_cfg = backbone_model_config(s)
    if s.backbone_legs < 1:
        raise ValueError(f"backbone_legs: expected >= 1, got {s.backbone_legs}")
    if s.backbone_legs > 1 and s.backbone_max_seconds is None:
        raise ValueError("backbone_legs: more than one leg needs backbone_max_seconds (the length of a leg)")
    train_dir = out / "backbone_train"
    plan_path = train_dir / LEG_FILE
    resume = plan_path.is_file()
    metrics: dict[str, float] = {}
    if resume:  # a later leg: the plan of the first one, so the schedule and EMA warmup stay the same
        metrics |= json.loads(plan_path.read_text())
        steps = int(metrics["backbone_planned_steps"])
    else:
        steps = s.backbone_steps
        if s.backbone_max_seconds is not None and not s.cpu:
            rate = _pilot_steps_per_second(data, model_cfg, s, out)
            budget = s.backbone_max_seconds * s.backbone_legs
            steps = min(steps, max(1, int(0.95 * rate * budget)))
            metrics |= {"backbone_pilot_steps_per_s": rate}
        metrics["backbone_planned_steps"] = float(steps)
    fit_cfg = FitConfig(
        steps=steps,
        batch_size=s.backbone_batch,
        lr=s.backbone_lr,
        warmup_steps=min(100, steps // 10),
        ema_decay=s.ema_decay,
        ema_warmup_steps=steps // 8,
        seed=s.seed,
        cpu=s.cpu,
        output_dir=str(train_dir),
        log_every=max(1, steps // 20),
        max_seconds=s.backbone_max_seconds,
        resume_from="latest" if resume else None,
    )
    t0 = time.perf_counter()
    run = _train(data, model_cfg, fit_cfg, s)
    train_s = time.perf_counter() - t0
    done = list_checkpoints(train_dir / "checkpoints")[-1][0]
    metrics["backbone_legs_run"] = metrics.get("backbone_legs_run", 0.0) + 1
    metrics["backbone_train_s"] = metrics.get("backbone_train_s", 0.0) + train_s
    metrics["backbone_trained_steps"] = float(done)
    if done < steps:  # this leg ran out of time: keep the plan for the next call, evaluate nothing yet
        atomic_write_bytes(plan_path, json.dumps(metrics, indent=2).encode())  # never a half-written plan
        return metrics | {"backbone_unfinished": 1.0}
    plan_path.unlink(missing_ok=True)
    run.save(out / "backbone_model")
    lengths = draw_sample_lengths(run.lengths, s.num_samples, s.seed)
    device = "cpu" if s.cpu or not torch.cuda.is_available() else "cuda"
    # The whole training set: the metrics take its means at the samples' lengths.
    reference = [item.atoms.numpy() for item in data.items]
    base = dict(run.process_config)
    for prefix, overrides in _sampling_variants(s):
        run.process_config = base | overrides
        t0 = time.perf_counter()
        samples = sample_backbones(run, lengths, steps=s.sample_steps, seed=s.seed, device=device)
        metrics[f"{prefix}sample_s"] = time.perf_counter() - t0
        for i, atoms in enumerate(samples):
            path = io.write_backbone(out / "backbones" / f"{prefix}sample_{i:03d}.pdb", atoms)
            files.append(str(path.relative_to(out)))
        metrics |= {f"{prefix}{key}": v for key, v in evaluate_backbones(samples, reference).items()}
    run.process_config = base
    metrics |= _motif_sample(run, data, s, out, files, device)
    return metrics


def draw_sample_lengths(
    train_lengths: list[int], num_samples: int, seed: int, per_length: int = 2
) -> list[int]:
    """``num_samples`` sample lengths drawn from the training lengths, ``per_length`` samples at each drawn length
    (equal lengths are sampled as one batch). Few samples per length keep the draw representative: the
    synthetic set's composition depends on length (beta hairpins only up to 64 residues), and with 8 lengths per
    64 samples the share of short chains in a draw, and so the measured secondary-structure gap, varied
    between 0.09 and 0.23 for one model (docs/diff-protein.md)."""
    if num_samples < 1 or per_length < 1 or not train_lengths:
        raise ValueError(
            f"num_samples, per_length, train_lengths: expected >= 1, >= 1, non-empty; got {num_samples}, "
            f"{per_length}, {len(train_lengths)} lengths"
        )
    per_length = min(per_length, num_samples)
    drawn = np.random.default_rng(seed).choice(train_lengths, size=-(-num_samples // per_length))
    return [int(x) for x in np.repeat(drawn, per_length)][:num_samples]


def _train(data: BackboneList, model_cfg: FrameDenoiserConfig, fit_cfg: FitConfig, s: BenchSettings) -> Any:
    """Train a backbone model with the run's process and objective settings."""
    return train_backbones(
        data,
        model_cfg,
        fit_cfg,
        s.process,
        process_config=backbone_process_config(s),
        objective_config=backbone_objective_config(s),
        init_from=s.backbone_init,
    )


def _pilot_steps_per_second(
    data: BackboneList, model_cfg: FrameDenoiserConfig, s: BenchSettings, out: Path, steps: int = 60
) -> float:
    """Training steps per second of this run's model, batch and device, from a short pilot run (its last
    log window, after start-up). Used to size the learning-rate schedule to ``backbone_max_seconds``, so
    that the cosine decay completes before the wall-time cap instead of being cut off part way."""
    fit_cfg = FitConfig(
        steps=steps,
        batch_size=s.backbone_batch,
        lr=s.backbone_lr,
        seed=s.seed,
        cpu=s.cpu,
        output_dir=str(out / "backbone_pilot"),
        log_every=steps // 3,
    )
    _train(data, model_cfg, fit_cfg, s)
    # Log windows end at steps / 3, 2 steps / 3 and steps: the last one alone is past start-up.
    return steady_samples_per_sec(out / "backbone_pilot", after_step=2 * steps // 3) / s.backbone_batch


def _sampling_variants(s: BenchSettings) -> list[tuple[str, dict[str, Any]]]:
    """``(metric prefix, process overrides)`` of each evaluated sampler; the first is the headline one.

    FrameDiff: each reverse-SDE noise scale (FrameDiff samples with 0.1 for designability, Yim et al.
    2023, Sec. 5). FrameFlow: the configured rotation schedule, then each of ``compare_rotation``.
    """
    if s.process == "diffusion":
        return [
            (
                "backbone_" if k == 0 else f"backbone_noise{x:g}_",
                {"rot_noise_scale": x, "trans_noise_scale": x},
            )
            for k, x in enumerate(s.noise_scales)
        ]
    variants: list[tuple[str, dict[str, Any]]] = [("backbone_", {})]
    for schedule, rate in s.compare_rotation:
        prefix = f"backbone_rot_{schedule}{rate:g}_"
        variants.append((prefix, {"rotation_schedule": schedule, "rotation_rate": rate}))
    return variants


def _motif_sample(
    run: Any, data: BackboneList, s: BenchSettings, out: Path, files: list[str], device: str
) -> dict[str, float]:
    """Scaffold residues 5-14 of training chain 0; the motif's CA RMSD (0 when it is held) and the
    scaffold's CA-CA validity and clash count."""
    item = data[0]
    length = item["trans"].shape[0]
    fixed = torch.zeros(length, dtype=torch.bool)
    fixed[5:15] = True
    motif = Motif(Rigid(item["rots"], item["trans"]), fixed)
    atoms = sample_backbones(run, [length], steps=s.sample_steps, motif=motif, seed=s.seed, device=device)[0]
    path = io.write_backbone(out / "backbones" / "motif_scaffold_000.pdb", atoms)
    files.append(str(path.relative_to(out)))
    return {
        "motif_rmsd": kabsch_rmsd(atoms[5:15, 1], item["atoms"][5:15, 1].numpy()),
        "motif_scaffold_ca_ca_valid": ca_ca_valid_fraction(atoms),
        "motif_scaffold_clashes": float(clash_count(atoms)),
    }


def _sequence_part(s: BenchSettings, out: Path, files: list[str]) -> dict[str, float]:
    families = ProfileFamilies(
        ProfileFamiliesConfig(num_families=s.num_families, length=s.seq_length, seed=s.seed)
    )
    train = families.dataset(s.per_family, torch.Generator().manual_seed(s.seed))
    held_out = families.dataset(s.per_family, torch.Generator().manual_seed(s.seed + 1))

    def fit_cfg(steps: int, name: str) -> FitConfig:
        return FitConfig(
            steps=steps,
            batch_size=s.seq_batch,
            lr=s.seq_lr,
            seed=s.seed,
            cpu=s.cpu,
            output_dir=str(out / name),
            log_every=max(1, steps // 20),
        )

    t0 = time.perf_counter()
    run = train_sequences(
        train,
        SequenceDenoiserConfig(hidden_size=s.seq_hidden, depth=s.seq_depth),
        fit_cfg(s.seq_steps, "seq_train"),
    )
    train_s = time.perf_counter() - t0
    # The judge is trained on an independent draw, never on the generator's data or outputs.
    run.classifier = train_taxonomy_classifier(held_out, fit_cfg(s.classifier_steps, "classifier_train"))
    run.save(out / "sequence_model")
    labels = torch.arange(1, s.num_families + 1).repeat_interleave(s.samples_per_family)
    metrics: dict[str, float] = {"sequence_train_s": train_s}
    for scale in (1.0, s.guidance_scale, 2 * s.guidance_scale):
        tokens = generate_sequences(run, labels, guidance_scale=scale, steps=s.seq_length, seed=s.seed)
        ev = evaluate_sequences(
            tokens, labels, run.classifier, families, reference=[detokenize(t) for t in train.tokens]
        )
        metrics |= {f"sequence_w{scale:g}_{k}": v for k, v in ev.items()}
    fasta = out / "sequences" / "cfg_samples.fasta"
    fasta.parent.mkdir(parents=True, exist_ok=True)
    fasta.write_text(
        "".join(
            f">sample_{i} label={run.vocabulary.decode(int(y))}\n{detokenize(t)}\n"
            for i, (t, y) in enumerate(zip(tokens, labels))
        )
    )
    files.append(str(fasta.relative_to(out)))
    held = run.classifier(torch.stack(held_out.tokens)).argmax(-1)
    metrics["classifier_accuracy_on_own_data"] = float((held == held_out.labels).float().mean())
    return metrics


def run_bench(out_dir: Path, settings: BenchSettings, sequences: bool = True) -> BenchResult:
    """Run both parts with ``settings`` (only the backbone part when ``sequences`` is False); writes models,
    PDB/FASTA files and ``metrics.json`` in ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    files: list[str] = []
    torch.manual_seed(settings.seed)
    metrics = _backbone_part(settings, out_dir, files)
    if metrics.get("backbone_unfinished"):
        summary = (
            f"backbone training leg {int(metrics['backbone_legs_run'])} of {settings.backbone_legs} ended at step "
            f"{int(metrics['backbone_trained_steps'])} of {int(metrics['backbone_planned_steps'])}; run again with "
            f"the same output folder ({out_dir}) to continue"
        )
        return BenchResult(modality="protein", status="ok", summary=summary,
                           seconds=time.perf_counter() - t0, metrics=metrics, files=files)  # fmt: skip
    if sequences:
        metrics |= _sequence_part(settings, out_dir, files)
    (out_dir / "metrics.json").write_text(
        json.dumps({"settings": dataclasses.asdict(settings), "metrics": metrics}, indent=2)
    )
    files.append("metrics.json")
    guided = f"sequence_w{settings.guidance_scale:g}_met_adherence"
    met = [k for k in metrics if k.startswith("backbone_met_") or k == guided]
    summary = (
        f"CA-CA valid {metrics['backbone_ca_ca_valid']:.3f}, clash-free {metrics['backbone_clash_free']:.2f}, "
        f"SSE gap {metrics['backbone_sse_max_abs_diff']:.2f}, CFG adherence "
        f"{metrics.get(f'sequence_w{settings.guidance_scale:g}_adherence_classifier', float('nan')):.2f}; "
        f"targets met: {int(sum(metrics[k] for k in met))}/{len(met)}"
    )
    return BenchResult(
        modality="protein",
        status="ok",
        summary=summary,
        seconds=time.perf_counter() - t0,
        metrics=metrics,
        files=files,
    )


def bench(out_dir: Path, quick: bool) -> BenchResult:
    """``diffuse bench protein``: :data:`QUICK` on CPU when ``quick``, else :data:`FULL`."""
    return run_bench(out_dir, QUICK if quick else FULL)
