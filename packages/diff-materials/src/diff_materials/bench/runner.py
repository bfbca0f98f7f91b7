"""The benchmark run behind :func:`diff_materials.bench.bench`."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from diffcore.device import resolve_device
from diffcore.io import write_json
from diffcore.modality import BenchResult
from diffcore.rng import make_generator
from diffcore.training import TrainConfig

from diff_materials import metrics as M
from diff_materials.bench import TARGETS, BenchSettings
from diff_materials.config import CrystalModelConfig, CrystalTrainConfig
from diff_materials.data import GeneratedConfig, generate_crystals, polymorph_grouped_split
from diff_materials.io import structure_grid, write_cifs
from diff_materials.pipeline import (
    CrystalPipeline,
    _diffusion_config,
    generate,
    predict_structures,
    train_denoiser,
)

__all__ = ["run_bench", "train_config"]


def train_config(
    s: BenchSettings, out: Path, task: str = "gen", properties: tuple[str, ...] = ()
) -> CrystalTrainConfig:
    """The training configuration of a benchmark run."""
    return CrystalTrainConfig(
        model=CrystalModelConfig(
            width=s.width, depth=s.depth, num_freqs=s.num_freqs, wave_order=s.wave_order
        ),
        task=task,  # type: ignore[arg-type]
        properties=list(properties),
        batch_size=s.batch_size,
        coords=s.coords,  # type: ignore[arg-type]
        frac_target=s.frac_target,  # type: ignore[arg-type]
        type_schedule=s.type_schedule,
        type_power=s.type_power,
        train=TrainConfig(
            steps=s.steps,
            lr=s.lr,
            lr_schedule="cosine",
            warmup_steps=min(100, s.steps // 10),
            ema_decay=0.999,
            output_dir=str(out),
            device=s.device,
            seed=s.seed,
            progress_bar=True,
            tensorboard=False,
            checkpoint_every=1000,
            log_every=100,
            max_seconds=s.max_seconds,
            resume="auto",
        ),
    )


def run_bench(out_dir: Path, settings: BenchSettings) -> BenchResult:
    """Train on the generated perovskites (polymorph-grouped 10 % held out), then: ab initio samples (validity,
    COV, Wasserstein, uniqueness, novelty) and structure prediction of the held-out compositions (match rate)."""
    t_start = time.perf_counter()
    out = Path(out_dir)
    crystals = generate_crystals(GeneratedConfig(kinds=("perovskite",), seed=settings.seed))
    train_set, held = polymorph_grouped_split(crystals, 0.1, settings.seed)
    config = train_config(settings, out / "train")
    t0 = time.perf_counter()
    model = train_denoiser(config, train_set)
    train_s = time.perf_counter() - t0
    pipe = CrystalPipeline(model, dataclasses.asdict(_diffusion_config(config)),
                           num_atoms=[c.num_atoms for c in train_set],
                           compositions=[c.numbers.tolist() for c in train_set])  # fmt: skip
    pipe.save_pretrained(out / "pipeline")
    device = resolve_device(settings.device)
    pipe.to(device)
    gen = make_generator(settings.seed, device)
    t0 = time.perf_counter()
    samples = generate(pipe, settings.num_generate, steps=settings.sample_steps, step_lr=settings.step_lr,
                       generator=gen, progress=False)  # fmt: skip
    sample_s = time.perf_counter() - t0
    refs = held[: settings.num_csp]
    preds = predict_structures(pipe, [c.numbers.tolist() for c in refs], settings.candidates,
                               steps=settings.sample_steps, step_lr=settings.step_lr, generator=gen, progress=False)  # fmt: skip
    t0 = time.perf_counter()
    metrics = M.generation_metrics(samples, held, train_set, fingerprints=settings.fingerprints)
    metrics |= {f"csp_{k}": v for k, v in M.csp_metrics(preds, refs).items()}
    metrics["csp_structure_validity"] = sum(M.structure_valid(p[0]) for p in preds) / len(preds)
    metrics |= {
        "train_s": train_s,
        "train_steps": float(_last_step(out / "train" / "log.jsonl")),
        "sample_s": sample_s,
        "metrics_s": time.perf_counter() - t0,
        "num_train": float(len(train_set)),
        "num_held": float(len(held)),
    }
    for i, c in enumerate(samples):
        c.material_id = f"sample_{i:03d}"
    files = write_cifs(out / "samples", samples[:16], [c.material_id for c in samples[:16]])
    files += write_cifs(out / "csp", [p[0] for p in preds], [f"{r.material_id}_0" for r in refs])
    files.append(structure_grid(out / "samples.png", samples[:16]))
    files.append(write_json(metrics, out / "metrics.json"))
    valid = metrics["structure_validity"]
    return BenchResult(
        modality="materials",
        status="ok",
        summary=(
            f"{len(train_set)} generated perovskites, {train_s:.0f} s of training: {valid:.0%} structurally valid "
            f"samples, CSP match rate {metrics['csp_match_rate@1']:.0%} on {len(refs)} held-out formulas."
        ),
        seconds=time.perf_counter() - t_start,
        metrics=metrics,
        files=[str(Path(f).relative_to(out)) for f in files],
        targets=TARGETS,
    )


def _last_step(log: Path) -> int:
    """The last optimizer step in a training ``log.jsonl`` (how far a time-capped run got), 0 if none."""
    import json

    lines = log.read_text().splitlines() if log.is_file() else []
    return int(json.loads(lines[-1])["step"]) if lines else 0
