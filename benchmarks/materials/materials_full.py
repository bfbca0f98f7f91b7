"""diff-materials on a GPU: crystal structure prediction on Perov-5 and Carbon-24, ab initio generation and
property guidance on Perov-5, against the targets of issue #28.

Data: the CDVAE validation splits under --data (perov_5_val.csv, carbon_24_val.csv); each is split once at
random (20 % held back, seed 0) and the model trains on the rest only. Stages (each writes
--out/stages/<name>.json and is skipped when that file exists, and every training resumes from its last
checkpoint, so a cut run continues where it stopped):

1. ``perov``: one network for Perov-5 (ab initio generation, which also learns structure prediction on half of
   its examples, conditioned on ``heat_ref`` through adapters with 30 % condition dropout), ``--perov-minutes``
   of training. Reported: CSP match rate / RMSE (best of 1 and of 20) on the held-out structures, and on the
   held-out structures whose formula never occurs in training (the polymorph-grouped number, Martirossyan et
   al. 2025); ab initio structural / SMACT validity, COV-R / COV-P (CDVAE's Perov-5 cutoffs), Wasserstein
   distances, uniqueness, novelty.
2. ``guidance``: an independent ``heat_ref`` predictor trained on the held-out crystals only judges samples; the
   fraction of samples whose predicted ``heat_ref`` falls in the lowest decile of the training values, with
   classifier-free guidance towards that range against unguided sampling (target: at least 3x), validity
   kept.
3. ``carbon``: a structure-prediction network for Carbon-24, ``--carbon-minutes`` of training; match rate on
   all held-out structures and on those without a StructureMatcher duplicate in training (Carbon-24 is mostly
   duplicates).

    uv run python benchmarks/materials/materials_full.py --data /work/shared/data/crystals       # one H100, ~8 min
    uv run python benchmarks/materials/materials_full.py --data /work/shared/data/crystals --quick  # CPU smoke run

Prints a table and writes benchmarks/results/materials_full[-quick]-<device>.json (models, CIF files under --out).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from diff_materials import metrics as M
from diff_materials.config import CrystalModelConfig, CrystalTrainConfig
from diff_materials.data import Crystal, random_split, read_cdvae_csv
from diff_materials.data.splits import leaked
from diff_materials.diffusion import CrystalDiffusionConfig, Guidance
from diff_materials.io import structure_grid, write_cifs
from diff_materials.pipeline import (
    CrystalPipeline,
    generate,
    predict_structures,
    train_denoiser,
    train_predictor,
)
from diffcore.io import write_json
from diffcore.rng import make_generator
from diffcore.training import TrainConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: the shared helpers
from results_io import write_result

TARGETS = {
    "perov_csp_match_rate@1": (">=", 0.50),
    "carbon_csp_match_rate@1": (">=", 0.17),
    "perov_structure_validity": (">=", 0.99),
    "perov_composition_validity": (">=", 0.95),
    "perov_cov_recall": (">=", 0.95),
    "guidance_ratio": (">=", 3.0),
}


def load(path: Path, cache: Path, limit: int | None) -> list[Crystal]:
    """The crystals of a CDVAE CSV, cached as JSON (parsing thousands of CIFs takes a minute)."""
    if cache.is_file():
        rows = json.loads(cache.read_text())
        return [Crystal(r["lattice"], r["frac"], r["numbers"], r["id"], r["props"]) for r in rows]
    result = read_cdvae_csv(path, limit)
    if result.skipped:
        result.report()
    rows = [{"lattice": c.lattice.tolist(), "frac": c.frac.tolist(), "numbers": c.numbers.tolist(),
             "id": c.material_id, "props": c.properties} for c in result.crystals]  # fmt: skip
    write_json(rows, cache)
    return result.crystals


def train_config(args, out: Path, minutes: float, task: str, properties=()) -> CrystalTrainConfig:
    cuda = args.device != "cpu" and torch.cuda.is_available()
    return CrystalTrainConfig(
        model=CrystalModelConfig(width=args.width, depth=args.depth, num_freqs=args.num_freqs),
        task=task,
        properties=list(properties),
        p_uncond=0.3,
        batch_size=args.batch_size,
        train=TrainConfig(
            steps=max(50, int(minutes * 60 * args.steps_per_second)),
            lr=args.lr,
            lr_schedule="cosine",
            warmup_steps=min(200, int(minutes * 60 * args.steps_per_second) // 10),
            ema_decay=0.999,
            output_dir=str(out),
            device=args.device,
            seed=0,
            mixed_precision="bf16" if cuda and args.bf16 else "no",
            checkpoint_every=500,
            log_every=100,
            max_seconds=60 * minutes,
            tensorboard=False,
            resume="auto",
        ),
    )


def pipeline_for(out: Path, config: CrystalTrainConfig, train: list[Crystal]) -> CrystalPipeline:
    folder = out / "pipeline"
    if (folder / "pipeline.json").is_file():
        return CrystalPipeline.from_pretrained(folder)
    model = train_denoiser(config, train)
    diffusion = CrystalDiffusionConfig(task=config.task)
    pipe = CrystalPipeline(model, dataclasses.asdict(diffusion), properties=config.properties,
                           num_atoms=[c.num_atoms for c in train], compositions=[c.numbers.tolist() for c in train])  # fmt: skip
    pipe.save_pretrained(folder)
    return pipe


def csp_stage(pipe, train, held, args, prefix: str, dedupe: bool) -> dict[str, float]:
    device = torch.device(
        args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    )
    pipe.to(device)
    refs = held[: args.num_csp]
    t0 = time.perf_counter()
    preds = predict_structures(pipe, [c.numbers.tolist() for c in refs], args.candidates, steps=args.sample_steps,
                               step_lr=args.step_lr, batch=args.sample_batch,
                               generator=make_generator(0, device))  # fmt: skip
    sample_s = time.perf_counter() - t0
    out = {f"{prefix}_csp_{k}": v for k, v in M.csp_metrics(preds, refs, processes=args.processes).items()}
    seen = {c.formula for c in train}
    unseen = [i for i, c in enumerate(refs) if c.formula not in seen]
    if unseen:
        m = M.csp_metrics([preds[i] for i in unseen], [refs[i] for i in unseen], processes=args.processes)
        out |= {f"{prefix}_csp_unseen_formula_{k}": v for k, v in m.items()}
    out[f"{prefix}_csp_unseen_formula_count"] = float(len(unseen))
    if dedupe:
        dup = leaked(refs, train)
        fresh = [i for i, d in enumerate(dup) if not d]
        out[f"{prefix}_csp_held_duplicates_of_train"] = float(np.mean(dup))
        if fresh:
            m = M.csp_metrics([preds[i] for i in fresh], [refs[i] for i in fresh], processes=args.processes)
            out |= {f"{prefix}_csp_deduplicated_{k}": v for k, v in m.items()}
    out[f"{prefix}_csp_sample_s"] = sample_s
    write_cifs(
        Path(args.out) / f"{prefix}_csp",
        [p[0] for p in preds[:32]],
        [f"{r.material_id}_0" for r in refs[:32]],
    )
    return out


def guidance_stage(pipe, train, held, args) -> dict[str, float]:
    """CFG towards the lowest decile of training heat_ref, judged by a predictor trained on held data."""
    device = torch.device(
        args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    )
    judge_cfg = TrainConfig(steps=args.judge_steps, lr=1e-3, lr_schedule="cosine", ema_decay=None, device=args.device,
                            output_dir=str(Path(args.out) / "judge"), checkpoint_every=None, tensorboard=False,
                            resume="auto", log_every=100)  # fmt: skip
    judge = train_predictor(held, ["heat_ref"], judge_cfg, noisy=False,
                            model=pipe.denoiser.config, batch_size=args.batch_size).to(device)  # fmt: skip
    values = np.array([c.properties["heat_ref"] for c in train if "heat_ref" in c.properties])
    low, high = float(values.min()), float(np.quantile(values, 0.1))
    pipe.to(device)

    def in_range(samples: list[Crystal]) -> tuple[float, float]:
        from diff_materials.data import CrystalDataset, collate_crystals
        from diff_materials.lattice import normalise_lattice

        valid = [c for c in samples if M.structure_valid(c)]
        if not valid:
            return 0.0, 0.0
        b = collate_crystals([CrystalDataset(valid)[i] for i in range(len(valid))])
        b = {k: v.to(device) for k, v in b.items()}
        enc = judge.encoder
        with torch.no_grad():
            x = normalise_lattice(b["lattice"], b["num_atoms"], enc.lattice_mean, enc.lattice_std)
            pred = judge(b["frac"], x, b["types"], torch.zeros(len(valid), device=device), b["num_atoms"])
        pred = pred[:, 0].cpu().numpy() * judge.config.property_std[0] + judge.config.property_mean[0]
        hits = ((pred >= low) & (pred <= high)).sum()
        return float(hits / len(samples)), len(valid) / len(samples)

    n = args.num_generate
    base = generate(pipe, n, steps=args.sample_steps, step_lr=args.step_lr, batch=args.sample_batch,
                    generator=make_generator(1, device), progress=False)  # fmt: skip
    target = torch.full((n, 1), (low + high) / 2)
    guided = generate(pipe, n, steps=args.sample_steps, step_lr=args.step_lr, batch=args.sample_batch,
                      guidance=Guidance(properties=target, scale=args.guidance_scale),
                      generator=make_generator(1, device), progress=False)  # fmt: skip
    (hit_u, val_u), (hit_g, val_g) = in_range(base), in_range(guided)
    write_cifs(Path(args.out) / "guided", guided[:16], [f"guided_{i:03d}" for i in range(min(16, n))])
    return {"guidance_target_low": low, "guidance_target_high": high, "guidance_unguided_in_range": hit_u,
            "guidance_guided_in_range": hit_g, "guidance_ratio": hit_g / hit_u if hit_u > 0 else (math.inf if hit_g > 0 else math.nan),
            "guidance_unguided_validity": val_u, "guidance_guided_validity": val_g}  # fmt: skip


def stage(out: Path, name: str, fn) -> dict[str, float]:
    path = out / "stages" / f"{name}.json"
    if path.is_file():
        return json.loads(path.read_text())
    t0 = time.perf_counter()
    result = fn() | {f"{name}_stage_s": time.perf_counter() - t0}
    write_json(result, path)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=Path("/work/shared/data/crystals"))
    parser.add_argument("--out", type=Path, default=Path("runs/materials-full"))
    parser.add_argument("--device", default="auto")
    parser.add_argument("--quick", action="store_true", help="tiny sizes, a CPU smoke run")
    parser.add_argument("--perov-minutes", type=float, default=3.0)
    parser.add_argument("--carbon-minutes", type=float, default=1.5)
    parser.add_argument("--processes", type=int, default=min(16, os.cpu_count() or 1))
    parser.add_argument("--no-bf16", dest="bf16", action="store_false")
    parser.add_argument("--steps-per-second", type=float, default=15.0,
                        help="planned training speed: steps = minutes * 60 * this (the cosine schedule's length); "
                        "training also stops at the minutes given")  # fmt: skip
    args = parser.parse_args()
    sizes = dict(width=256, depth=4, num_freqs=64, batch_size=256, lr=5e-4, sample_steps=300,
                 step_lr=1e-5, sample_batch=2048, num_csp=300, candidates=20, num_generate=512, judge_steps=800,
                 guidance_scale=2.0, limit=None)  # fmt: skip
    if args.quick:
        sizes |= dict(width=32, depth=2, num_freqs=8, batch_size=32, sample_steps=10, step_lr=0.0,
                      num_csp=6, candidates=2, num_generate=12, judge_steps=10, limit=60)  # fmt: skip
        args.perov_minutes = args.carbon_minutes = 0.5
        args.steps_per_second = 1.0
        args.processes = 1
    for k, v in sizes.items():
        setattr(args, k, v)
    out = args.out
    t_start = time.perf_counter()
    metrics: dict[str, float] = {}

    perov = load(args.data / "perov_5_val.csv", out / "cache" / "perov.json", args.limit)
    p_train, p_held = random_split(perov, 0.2, seed=0)
    p_cfg = train_config(args, out / "perov_train", args.perov_minutes, "gen", ("heat_ref",))
    p_pipe = pipeline_for(out / "perov_train", p_cfg, p_train)

    def perov_stage() -> dict[str, float]:
        m = csp_stage(p_pipe, p_train, p_held, args, "perov", dedupe=False)
        device = p_pipe.device
        samples = generate(p_pipe, args.num_generate, steps=args.sample_steps, step_lr=args.step_lr,
                           batch=args.sample_batch, generator=make_generator(2, device), progress=False)  # fmt: skip
        gm = M.generation_metrics(
            samples, p_held, p_train, M.COV_CUTOFFS["perov_5"], processes=args.processes
        )
        write_cifs(out / "perov_gen", samples[:32], [f"sample_{i:03d}" for i in range(min(32, len(samples)))])
        structure_grid(out / "perov_gen.png", samples[:16])
        return m | {f"perov_{k}": v for k, v in gm.items()}

    metrics |= stage(out, "perov", perov_stage)
    metrics |= stage(out, "guidance", lambda: guidance_stage(p_pipe, p_train, p_held, args))

    carbon = load(args.data / "carbon_24_val.csv", out / "cache" / "carbon.json", args.limit)
    c_train, c_held = random_split(carbon, 0.2, seed=0)
    c_cfg = train_config(args, out / "carbon_train", args.carbon_minutes, "csp")
    c_pipe = pipeline_for(out / "carbon_train", c_cfg, c_train)
    metrics |= stage(out, "carbon", lambda: csp_stage(c_pipe, c_train, c_held, args, "carbon", dedupe=True))

    metrics["num_perov_train"], metrics["num_perov_held"] = float(len(p_train)), float(len(p_held))
    metrics["num_carbon_train"], metrics["num_carbon_held"] = float(len(c_train)), float(len(c_held))
    wall = time.perf_counter() - t_start
    for name, value in metrics.items():
        target = TARGETS.get(name)
        print(f"{name:48s} {value:12.4f}" + (f"   target {target[0]} {target[1]}" if target else ""))
    print(f"{'wall_s (this call)':48s} {wall:12.1f}")
    settings = {k: v for k, v in vars(args).items() if k not in ("data", "out")}
    path = write_result({"settings": {k: str(v) if isinstance(v, Path) else v for k, v in settings.items()},
                         "metrics": metrics, "targets": {k: list(v) for k, v in TARGETS.items()}, "wall_s": wall},
                        script="materials_full", variant="quick" if args.quick else None,
                        device="cuda" if args.device != "cpu" and torch.cuda.is_available() else "cpu",
                        packages=("diff-materials",))  # fmt: skip
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
