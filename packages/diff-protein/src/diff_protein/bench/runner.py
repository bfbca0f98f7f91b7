"""The protein benchmark's runner: :func:`run_bench` and its parts (see :mod:`diff_protein.bench`).

Backbone part: the synthetic chains of the settings (generated in worker processes), a backbone pipeline
trained with :func:`diff_protein.pipeline.train_backbones` (in legs when the settings say so), samples at
lengths drawn from the training lengths, one motif-scaffolding sample, PDB files and the geometry targets.
Sequence part: the profile families, a sequence pipeline, CFG samples at three guidance scales, label adherence
by an independently trained classifier and by the exact Bayes classifier.
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing as mp
import os
import time
from pathlib import Path
from typing import Any

import torch
from diffcore.device import resolve_device
from diffcore.io import write_json
from diffcore.modality import BenchResult
from diffcore.rng import make_generator
from diffcore.training import TrainConfig, list_checkpoints, steady_samples_per_sec
from torch.utils.data import Dataset

from diff_protein import io
from diff_protein.bench import LEG_FILE, BenchSettings
from diff_protein.config import ProteinTrainConfig, default_train_config
from diff_protein.data.profiles import ProfileFamilies, ProfileFamiliesConfig
from diff_protein.data.sequences import detokenize
from diff_protein.data.synthetic import SyntheticBackbone, SyntheticBackboneConfig, SyntheticBackbones
from diff_protein.diffusion.objective import BackboneObjectiveConfig
from diff_protein.diffusion.sampling import Motif
from diff_protein.frames import Rigid, frames_from_backbone
from diff_protein.metrics import ca_ca_valid_fraction, clash_count, kabsch_rmsd
from diff_protein.models.configs import FrameDenoiserConfig, SequenceDenoiserConfig
from diff_protein.pipeline import (
    ProteinPipeline,
    draw_sample_lengths,
    evaluate_backbones,
    evaluate_sequences,
    generate_sequences,
    objective_config,
    process_config,
    sample_backbones,
    train_backbones,
    train_sequences,
    train_taxonomy_classifier,
)

__all__ = [
    "BackboneList",
    "backbone_model_config",
    "backbone_objective_config",
    "backbone_process_config",
    "backbone_train_config",
    "draw_sample_lengths",
    "generate_synthetic",
    "run_bench",
    "synthetic_chains",
]


def backbone_model_config(s: BenchSettings) -> FrameDenoiserConfig:
    """The IPA frame denoiser's sizes of a run."""
    return FrameDenoiserConfig(
        node_dim=s.node_dim,
        pair_dim=s.pair_dim,
        num_blocks=s.num_blocks,
        neighbour_features=s.neighbour_features,
    )


def _train_settings(
    s: BenchSettings,
    steps: int,
    lr: float,
    output_dir: str | Path,
    log_every: int | None = None,
    **extra: Any,
) -> TrainConfig:
    """A run's :class:`TrainConfig`: cosine decay unless the run is too short for one (the rule of
    diff-protein 0.1's ``fit``, which the measured runs used)."""
    warmup = extra.pop("warmup_steps", 0)
    return default_train_config(
        steps=steps,
        lr=lr,
        warmup_steps=warmup,
        lr_schedule="cosine" if steps > 2 * warmup + 10 else "constant",
        seed=s.seed,
        device=s.device,
        output_dir=str(output_dir),
        log_every=log_every if log_every is not None else max(1, steps // 20),
        **extra,
    )


def backbone_train_config(
    s: BenchSettings,
    steps: int | None = None,
    output_dir: str | Path = "runs/protein_bench/backbone_train",
    resume: bool = False,
) -> ProteinTrainConfig:
    """The backbone training of a run as a :class:`ProteinTrainConfig` (``steps`` default:
    ``s.backbone_steps``; ``resume``: continue the latest checkpoint under ``output_dir``)."""
    steps = s.backbone_steps if steps is None else steps
    train = _train_settings(
        s, steps, s.backbone_lr, output_dir, warmup_steps=min(100, steps // 10), ema_decay=s.ema_decay,
        ema_warmup_steps=steps // 8, max_seconds=s.backbone_max_seconds,
    )  # fmt: skip
    return ProteinTrainConfig(
        what="backbone",
        process=s.process,  # type: ignore[arg-type]
        batch_size=s.backbone_batch,
        backbone=backbone_model_config(s),
        motif_prob=s.motif_prob,
        aux_t_max=s.aux_t_max,
        aux_clash=s.aux_clash,
        rotation_schedule=s.rotation_schedule,  # type: ignore[arg-type]
        rotation_rate=s.rotation_rate,
        rotation_rate_t_max=s.rotation_rate_t_max,
        cuda_graphs=s.cuda_graphs,
        init_from=s.backbone_init,
        train=dataclasses.replace(train, resume="latest" if resume else None),
    )


def backbone_process_config(s: BenchSettings) -> dict[str, Any]:
    """Process overrides of a run: FrameFlow's sampling rotation schedule (only sampling reads it)."""
    return process_config(backbone_train_config(s))


def backbone_objective_config(s: BenchSettings) -> BackboneObjectiveConfig:
    """The backbone loss of a run (:func:`diff_protein.pipeline.objective_config`: the papers' auxiliary-loss
    window unless ``aux_t_max`` is set)."""
    return objective_config(backbone_train_config(s))


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


def _synthetic_config(s: BenchSettings, num_backbones: int | None = None) -> SyntheticBackboneConfig:
    n = s.num_backbones if num_backbones is None else min(num_backbones, s.num_backbones)
    return SyntheticBackboneConfig(
        num_samples=n, min_length=s.min_length, max_length=s.max_length, topologies=s.topologies
    )


def synthetic_chains(s: BenchSettings, num_backbones: int | None = None) -> BackboneList:
    """The synthetic training chains of a run's settings: all ``s.num_backbones`` of them, or the first
    ``num_backbones`` (item ``i`` is the same either way), generated in ``s.data_workers`` processes."""
    return BackboneList(generate_synthetic(_synthetic_config(s, num_backbones), workers=s.data_workers))


def _backbone_part(s: BenchSettings, out: Path, files: list[str]) -> dict[str, float]:
    data = synthetic_chains(s)
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
        if s.backbone_max_seconds is not None and s.device != "cpu":
            rate = _pilot_steps_per_second(data, s, out)
            budget = s.backbone_max_seconds * s.backbone_legs
            steps = min(steps, max(1, int(0.95 * rate * budget)))
            metrics |= {"backbone_pilot_steps_per_s": rate}
        metrics["backbone_planned_steps"] = float(steps)
    config = backbone_train_config(s, steps, train_dir, resume=resume)
    info = {"kind": "synthetic", "config": dataclasses.asdict(_synthetic_config(s))}
    t0 = time.perf_counter()
    pipe = train_backbones(config, data, data_info=info)
    train_s = time.perf_counter() - t0
    done = list_checkpoints(train_dir / "checkpoints")[-1][0]
    metrics["backbone_legs_run"] = metrics.get("backbone_legs_run", 0.0) + 1
    metrics["backbone_train_s"] = metrics.get("backbone_train_s", 0.0) + train_s
    metrics["backbone_trained_steps"] = float(done)
    if done < steps:  # this leg ran out of time: keep the plan for the next call, evaluate nothing yet
        write_json(metrics, plan_path)  # atomic: never a half-written plan
        return metrics | {"backbone_unfinished": 1.0}
    plan_path.unlink(missing_ok=True)
    pipe.save_pretrained(out / "backbone_model")
    lengths = draw_sample_lengths(pipe.lengths, s.num_samples, s.seed)
    device = resolve_device(s.device)
    # The whole training set: the metrics take its means at the samples' lengths.
    reference = [item.atoms.numpy() for item in data.items]
    base = dict(pipe.process_config)
    for prefix, overrides in _sampling_variants(s):
        pipe.process_config = base | overrides
        t0 = time.perf_counter()
        samples = sample_backbones(pipe, lengths, steps=s.sample_steps, generator=make_generator(s.seed, device),
                                   device=device)  # fmt: skip
        metrics[f"{prefix}sample_s"] = time.perf_counter() - t0
        for i, atoms in enumerate(samples):
            path = io.write_backbone(out / "backbones" / f"{prefix}sample_{i:03d}.pdb", atoms)
            files.append(str(path.relative_to(out)))
        metrics |= {f"{prefix}{key}": v for key, v in evaluate_backbones(samples, reference).items()}
    pipe.process_config = base
    metrics |= _motif_sample(pipe, data, s, out, files, device)
    return metrics


def _pilot_steps_per_second(data: BackboneList, s: BenchSettings, out: Path, steps: int = 60) -> float:
    """Training steps per second of this run's model, batch and device, from a short pilot run (its last
    log window, after start-up). Used to size the learning-rate schedule to ``backbone_max_seconds``, so
    that the cosine decay completes before the wall-time cap instead of being cut off part way."""
    config = backbone_train_config(s, steps, out / "backbone_pilot")
    pilot = _train_settings(s, steps, s.backbone_lr, out / "backbone_pilot", log_every=steps // 3)
    train_backbones(dataclasses.replace(config, train=pilot), data)
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
    pipe: ProteinPipeline,
    data: BackboneList,
    s: BenchSettings,
    out: Path,
    files: list[str],
    device: torch.device,
) -> dict[str, float]:
    """Scaffold residues 5-14 of training chain 0; the motif's CA RMSD (0 when it is held) and the
    scaffold's CA-CA validity and clash count."""
    item = data[0]
    length = item["trans"].shape[0]
    fixed = torch.zeros(length, dtype=torch.bool)
    fixed[5:15] = True
    motif = Motif(Rigid(item["rots"], item["trans"]), fixed)
    atoms = sample_backbones(pipe, [length], steps=s.sample_steps, motif=motif,
                             generator=make_generator(s.seed, device), device=device)[0]  # fmt: skip
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
    train = families.dataset(s.per_family, make_generator(s.seed))
    held_out = families.dataset(s.per_family, make_generator(s.seed + 1))
    config = ProteinTrainConfig(
        what="sequence",
        batch_size=s.seq_batch,
        sequence=SequenceDenoiserConfig(hidden_size=s.seq_hidden, depth=s.seq_depth),
        classifier_steps=0,  # trained below, on the held-out draw
        train=_train_settings(s, s.seq_steps, s.seq_lr, out / "seq_train"),
    )
    info = {"kind": "families", "config": dataclasses.asdict(families.config), "per_family": s.per_family,
            "seed": s.seed}  # fmt: skip
    t0 = time.perf_counter()
    pipe = train_sequences(config, train, data_info=info)
    train_s = time.perf_counter() - t0
    # The judge is trained on an independent draw, never on the generator's data or outputs.
    judge = dataclasses.replace(
        config,
        classifier_steps=s.classifier_steps,
        train=_train_settings(s, s.classifier_steps, s.seq_lr, out / "classifier_train"),
    )
    pipe.classifier = train_taxonomy_classifier(held_out, judge)
    pipe.save_pretrained(out / "sequence_model")
    labels = torch.arange(1, s.num_families + 1).repeat_interleave(s.samples_per_family)
    metrics: dict[str, float] = {"sequence_train_s": train_s}
    for scale in (1.0, s.guidance_scale, 2 * s.guidance_scale):
        tokens = generate_sequences(pipe, labels, guidance_scale=scale, steps=s.seq_length,
                                    generator=make_generator(s.seed))  # fmt: skip
        ev = evaluate_sequences(
            tokens, labels, pipe.classifier, families, reference=[detokenize(t) for t in train.tokens]
        )
        metrics |= {f"sequence_w{scale:g}_{k}": v for k, v in ev.items()}
    assert pipe.vocabulary is not None
    fasta = io.write_fasta(
        out / "sequences" / "cfg_samples.fasta",
        [(f"sample_{i} label={pipe.vocabulary.decode(int(y))}", detokenize(t))
         for i, (t, y) in enumerate(zip(tokens, labels))],
    )  # fmt: skip
    files.append(str(fasta.relative_to(out)))
    held = pipe.classifier(torch.stack(held_out.tokens)).argmax(-1)
    metrics["classifier_accuracy_on_own_data"] = float((held == held_out.labels).float().mean())
    return metrics


def run_bench(out_dir: Path, settings: BenchSettings, sequences: bool = True) -> BenchResult:
    """Run both parts with ``settings`` (only the backbone part when ``sequences`` is False); writes pipelines,
    PDB/FASTA files and ``metrics.json`` in ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    files: list[str] = []
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
    write_json({"settings": dataclasses.asdict(settings), "metrics": metrics}, out_dir / "metrics.json")
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
