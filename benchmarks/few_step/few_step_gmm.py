"""Few-step generation on an analytic 2-D Gaussian mixture: every diffcore.distill method vs the exact teacher.

The teacher is exact (``GaussianMixture.denoiser``, rectified-flow path), so the only errors are the
students' and the solvers'. For each method the student is a small MLP trained through the diffcore
Trainer; the table gives the sliced Wasserstein distance (``analytic.sliced_wasserstein``) of 1, 2 and 4
step samples to fresh target samples, next to the teacher's Euler at the same steps and at 50 steps, and
the trajectory straightness before and after reflow. Results go to
``benchmarks/results/few_step_gmm-cpu.json`` (the quick run writes nothing).

    uv run python benchmarks/few_step/few_step_gmm.py            # full (a few minutes on a CPU)
    uv run python benchmarks/few_step/few_step_gmm.py --quick    # tiny, checks that it runs
    uv run python benchmarks/few_step/few_step_gmm.py --seeds 0 1 2 --methods ect dmd2 emd --scale 0.33
        # per-seed cells, mean +- standard error, "not worse with more steps"; resumable:
        # few_step_gmm-seeds-cpu.json (+ its store few_step_gmm-seeds-cells-cpu.json)
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from dataclasses import replace
from pathlib import Path

import diffcore
import torch
from diffcore.distill import (
    ConsistencyCallback,
    ConsistencyDistillation,
    ConsistencyParameterization,
    ConsistencyTraining,
    CoupledFlowMatching,
    DistributionMatchingDistillation,
    DMDModel,
    EasyConsistencyTraining,
    EMDistillation,
    LatentConsistencyDistillation,
    MLPDenoiser,
    MLPDenoiserConfig,
    add_lcm_lora,
    couplings_loader,
    distill_progressively,
    dmd_optimizer,
    generate_couplings,
    one_step_distillation,
    straightness,
    student_times,
)
from diffcore.paths.analytic import GaussianMixture, sliced_wasserstein
from diffcore.paths.denoiser import Denoiser
from diffcore.training import TrainConfig, Trainer, objectives
from torch.utils.data import DataLoader, TensorDataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: the shared helpers
sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/few_step/: seeds
from results_io import result_path, write_result
from seeds import SeedStore, cells_path, mean_se, not_worse_with_steps

SCHEDULE = "rectified-flow"
STEPS = (1, 2, 4)
MEANS = torch.tensor([[1.5, 1.5], [-1.5, 1.5], [1.5, -1.5], [-1.5, -1.5]])


def mixture() -> GaussianMixture:
    return GaussianMixture(torch.full((4,), 0.25), MEANS, torch.full((4, 2), 0.05))


class ClassConditionalTeacher:
    """Exact denoisers of a mixture's components: label ``k`` is component ``k``, label ``K`` the whole mixture."""

    def __init__(self, gmm: GaussianMixture) -> None:
        self.parts = [
            GaussianMixture.gaussian(gmm.means[k], gmm.variances[k]).network(SCHEDULE, "velocity")
            for k in range(len(gmm.weights))
        ] + [gmm.network(SCHEDULE, "velocity")]

    def __call__(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        out = torch.zeros_like(x)
        for k, fn in enumerate(self.parts):
            mask = y == k
            if bool(mask.any()):
                out[mask] = fn(x[mask], t[mask])
        return out


TRAIN_SEED = [0]
"""The training seed of the current run: ``run`` sets it, ``config`` passes it to every ``TrainConfig`` so a
seed changes the data order and the objectives' noise as well as the initialisation."""


def config(out: Path, name: str, steps: int, lr: float = 2e-3) -> TrainConfig:
    return TrainConfig(
        steps=steps, lr=lr, ema_decay=None, checkpoint_every=None, tensorboard=False, progress_bar=False,
        output_dir=str(out / name), log_every=max(steps // 4, 1), max_grad_norm=1.0, seed=TRAIN_SEED[0],
    )  # fmt: skip


def data_loader(x: torch.Tensor, batch: int, y: torch.Tensor | None = None) -> DataLoader:
    if y is None:
        return DataLoader(TensorDataset(x), batch_size=batch, shuffle=True, drop_last=True, collate_fn=_stack)
    return DataLoader(
        TensorDataset(x, y), batch_size=batch, shuffle=True, drop_last=True, collate_fn=_stack_xy
    )


def _stack(items):
    return torch.stack([i[0] for i in items])


def _stack_xy(items):
    return {"x": torch.stack([i[0] for i in items]), "y": torch.stack([i[1] for i in items])}


def mlp(width: int, **kw) -> MLPDenoiser:
    return MLPDenoiser(MLPDenoiserConfig(width=width, depth=3, **kw))


@torch.no_grad()
def evaluate(
    den, sampler: str, ref, noise, t_start: float = 1.0, steps: tuple[int, ...] = STEPS, **options
) -> dict[str, float]:
    out = {}
    for k in steps:
        x = diffcore.sample(
            den, noise, sampler, k, t_start=t_start, generator=torch.Generator().manual_seed(7), **options
        )
        out[str(k)] = sliced_wasserstein(x.double(), ref)
    return out


def run(quick: bool, out: Path, scale: float = 1.0, seed: int = 0, methods: set[str] | None = None) -> dict:
    """Every method (or those in ``methods``) trained from training seed ``seed``; the data, reference and
    evaluation noise are the same for every seed."""
    want = lambda name: methods is None or name in methods  # noqa: E731
    out = out / f"seed{seed}"
    torch.manual_seed(seed)
    TRAIN_SEED[0] = seed
    scale = 0.01 if quick else scale
    n = lambda steps: max(int(steps * scale), 4)  # noqa: E731
    width = 16 if quick else 128
    n_eval = 500 if quick else 4000
    gmm = mixture()
    teacher = gmm.denoiser(SCHEDULE, "velocity")
    g = torch.Generator().manual_seed(1)
    data = gmm.sample(8192, g).float()
    ref = gmm.sample(n_eval, torch.Generator().manual_seed(2))
    noise = torch.randn(n_eval, 2, generator=torch.Generator().manual_seed(3))
    loader = data_loader(data, 256)
    rows: dict[str, dict] = {}
    seconds: dict[str, float] = {}

    rows["teacher (euler)"] = evaluate(teacher, "euler", ref, noise)
    rows["teacher (euler)"]["50"] = sliced_wasserstein(
        diffcore.sample(teacher, noise, "euler", 50).double(), ref
    )

    # A trained flow-matching network: the initialisation of progressive distillation and the LCM-LoRA base.
    start = time.perf_counter()
    base = mlp(width)
    Trainer(base, objectives.flow_matching(), loader, config(out, "base", n(3000))).fit()
    base_den = Denoiser(copy.deepcopy(base).eval().requires_grad_(False), SCHEDULE, "velocity")
    rows["base flow net (euler)"] = evaluate(base_den, "euler", ref, noise)
    seconds["base"] = time.perf_counter() - start

    # Progressive distillation: exact teacher at 16 DDIM steps -> students of 8, 4, 2, 1 steps.
    if want("progressive"):
        _progressive(base, teacher, loader, out, n, noise, ref, rows, seconds)
    _rest(
        want, quick, base, base_den, teacher, gmm, g, loader, out, n, width, n_eval, noise, ref, rows, seconds
    )
    return _finish(rows, seconds, quick, scale)


def _progressive(base, teacher, loader, out, n, noise, ref, rows, seconds) -> None:
    start = time.perf_counter()
    student = copy.deepcopy(base).requires_grad_(True)
    rounds = distill_progressively(
        student,
        teacher,
        loader,
        config(out, "progressive", n(800)),
        teacher_steps=16,
        rounds=4,
        prediction="velocity",
    )
    pd = {}
    for r in rounds:
        if r.student_steps in STEPS:
            net = MLPDenoiser.from_pretrained(r.model_dir).eval()
            with torch.no_grad():
                x = diffcore.sample(Denoiser(net, SCHEDULE, "velocity"), noise, "ddim", r.student_steps)
            pd[str(r.student_steps)] = sliced_wasserstein(x.double(), ref)
    rows["progressive distillation (ddim)"] = pd
    seconds["progressive"] = time.perf_counter() - start


def _rest(
    want, quick, base, base_den, teacher, gmm, g, loader, out, n, width, n_eval, noise, ref, rows, seconds
):
    """Every method after progressive distillation (each when ``want(key)``)."""
    # Consistency distillation, improved consistency training and ECT (continuous time).
    for name, make in (
        ("consistency distillation", lambda p: ConsistencyDistillation(p, teacher=teacher, num_points=18)),
        # iCT with the squared L2 distance: in 2-D the paper's pseudo-Huber (c = 0.00054 sqrt(d)) is the
        # unsquared norm, whose CT minimiser is a median of the one-sample targets, not the ODE's mean.
        ("improved consistency training", lambda p: ConsistencyTraining(p, distance="l2")),
        ("improved consistency training, pseudo-Huber", lambda p: ConsistencyTraining(p)),
        ("ECT, continuous-time consistency training", lambda p: EasyConsistencyTraining(p)),
    ):
        key = {"consistency distillation": "cd", "improved consistency training": "ict"}.get(name)
        key = key or ("ict-huber" if "pseudo-Huber" in name else "ect")
        if not want(key):
            continue
        start = time.perf_counter()
        param = ConsistencyParameterization(SCHEDULE, "x0")
        obj = make(param)
        net = mlp(width)
        steps = n(4000) if "training" in name else n(3000)
        Trainer(
            net, obj, loader, config(out, name.replace(" ", "-"), steps), callbacks=[ConsistencyCallback(obj)]
        ).fit()
        rows[name + " (consistency)"] = evaluate(
            param.denoiser(net.eval()), "consistency", ref, noise, obj.t_max
        )
        seconds[name] = time.perf_counter() - start

    # LCM: class-conditional exact teacher with CFG, student with a guidance-scale input.
    if want("lcm"):
        _lcm(gmm, g, out, n, width, n_eval, noise, ref, rows, seconds)
    if want("lcm-lora"):
        _lcm_lora(base, base_den, loader, out, n, noise, ref, rows, seconds)
    if want("reflow") or want("dmd") or want("dmd2") or want("emd"):
        _reflow_dmd_emd(want, base, teacher, g, out, n, width, noise, ref, rows, seconds)


def _lcm(gmm, g, out, n, width, n_eval, noise, ref, rows, seconds) -> None:
    start = time.perf_counter()
    cond_teacher = Denoiser(ClassConditionalTeacher(gmm), SCHEDULE, "velocity")
    labels = torch.randint(0, 4, (8192,), generator=g)
    cond_data = (
        gmm.means[labels]
        + gmm.variances[labels].sqrt() * torch.randn(8192, 2, generator=g, dtype=torch.float64)
    ).float()
    param = ConsistencyParameterization(SCHEDULE, "x0")
    lcm_obj = LatentConsistencyDistillation(
        param, teacher=cond_teacher, uncond={"y": torch.tensor(4)}, guidance_range=(1.0, 3.0), num_points=25
    )
    lcm_net = mlp(width, num_classes=4, guidance_embedding=True)
    Trainer(
        lcm_net,
        lcm_obj,
        data_loader(cond_data, 256, labels),
        config(out, "lcm", n(3000)),
        callbacks=[ConsistencyCallback(lcm_obj)],
    ).fit()
    y_eval = torch.randint(0, 4, (n_eval,), generator=torch.Generator().manual_seed(4))
    den = param.denoiser(lcm_net.eval())
    # LCM samples on its training discretisation (the scheduler's inference timesteps); the uniform grid beside it
    rows["LCM, w=1 (lcm, trained grid)"] = _on_trained_grid(
        den, lcm_obj, ref, noise, guidance_scale=1.0, cond={"y": y_eval}
    )
    rows["LCM, w=1 (lcm, uniform grid)"] = evaluate(
        den, "lcm", ref, noise, lcm_obj.t_max, guidance_scale=1.0, cond={"y": y_eval}
    )
    seconds["lcm"] = time.perf_counter() - start


def _lcm_lora(base, base_den, loader, out, n, noise, ref, rows, seconds) -> None:
    # LCM-LoRA: the consistency objective trained only in a LoRA adapter of the base flow network.
    start = time.perf_counter()
    lora_net = add_lcm_lora(copy.deepcopy(base), rank=16)
    # LCM's boundary scalings: the student starts as the base's own denoiser (see ConsistencyParameterization)
    param = ConsistencyParameterization(SCHEDULE, "velocity", timestep_scaling=10.0)
    lora_obj = LatentConsistencyDistillation(
        param, teacher=base_den, guidance_range=(1.0, 1.0), guidance_key=None, num_points=25
    )
    Trainer(
        lora_net,
        lora_obj,
        loader,
        config(out, "lcm-lora", n(3000)),
        callbacks=[ConsistencyCallback(lora_obj)],
    ).fit()
    den = param.denoiser(lora_net.eval())
    rows["LCM-LoRA on base (lcm, trained grid)"] = _on_trained_grid(den, lora_obj, ref, noise)
    rows["LCM-LoRA on base (lcm, uniform grid)"] = evaluate(den, "lcm", ref, noise, lora_obj.t_max)
    seconds["lcm-lora"] = time.perf_counter() - start


def _on_trained_grid(den, obj, ref, noise, **options) -> dict[str, float]:
    """Sliced W2 at 1 / 2 / 4 ``lcm`` steps on ``obj.sampling_grid`` (the times the student was trained at)."""
    return {
        k: v
        for steps in STEPS
        for k, v in evaluate(
            den, "lcm", ref, noise, steps=(steps,), grid=obj.sampling_grid(steps), **options
        ).items()
    }


def _reflow_dmd_emd(want, base, teacher, g, out, n, width, noise, ref, rows, seconds) -> None:
    # Reflow: couplings of the exact (1-rectified) flow, 2-rectified flow, then one-step distillation.
    start = time.perf_counter()
    z = torch.randn(8192, 2, generator=g)
    x_pairs = generate_couplings(teacher, z.double(), "heun", 32).float()
    if want("reflow"):
        rf2 = mlp(width)
        Trainer(
            rf2, CoupledFlowMatching(), couplings_loader(x_pairs, z, 256), config(out, "reflow", n(3000))
        ).fit()
        rf2_den = Denoiser(rf2.eval(), SCHEDULE, "velocity")
        rows["2-rectified flow (euler)"] = evaluate(rf2_den, "euler", ref, noise)
        z2 = torch.randn(8192, 2, generator=g)
        x2 = generate_couplings(rf2_den, z2, "heun", 32)
        distilled = copy.deepcopy(rf2).train()
        Trainer(
            distilled,
            one_step_distillation(),
            couplings_loader(x2, z2, 256),
            config(out, "reflow-distill", n(1500)),
        ).fit()
        # One-step by construction: distilled on (z, x) pairs at t = 1 only, never trained at t < 1.
        rows["2-rectified flow + distill (one-step)"] = evaluate(
            Denoiser(distilled.eval(), SCHEDULE, "velocity"), "euler", ref, noise, steps=(1,)
        )
        probe = noise[:500].double()
        before, after = straightness(teacher, probe, 32), straightness(rf2_den, probe.float(), 32)
        STRAIGHTNESS.update({"exact 1-rectified flow": before.__dict__, "2-rectified flow": after.__dict__})
        seconds["reflow"] = time.perf_counter() - start

    # DMD: one-step generator, fake score, regression on teacher ODE pairs.
    if want("dmd"):
        start = time.perf_counter()
        dmd_model = DMDModel(mlp(width), mlp(width))
        dmd_obj = DistributionMatchingDistillation(teacher)
        Trainer(
            dmd_model,
            dmd_obj,
            couplings_loader(x_pairs, z, 256),
            config(out, "dmd", n(3000), lr=1e-3),
            optimizer=dmd_optimizer(dmd_model, 1e-3),
        ).fit()
        # One-step by construction (trained at t = 1 only): multi-step chains would call it at untrained times.
        rows["DMD (one-step)"] = evaluate(
            dmd_obj.generator_denoiser(dmd_model.generator.eval()), "consistency", ref, noise, steps=(1,)
        )
        seconds["dmd"] = time.perf_counter() - start

    # DMD2 and EMD: generator and fake score start from the trained flow network (as DMD2 and EMD start from
    # the teacher). Two time scales through the fake network's 5x learning rate (dmd_optimizer); 5 fake updates
    # per generator update (generator_every=5) did worse in 1000-step runs (not committed).
    # DMD2 trains the 1-, 2- and 4-step chains by backward simulation on the "halving" grid (1, 1/2, 1/4, 1/8)
    # and samples on the same grid; its fake score is told the generator's sampling time (label y), so each
    # time's outputs are matched to the data on their own (see docs/few_step.md).
    if want("dmd2"):
        start = time.perf_counter()
        obj = DistributionMatchingDistillation(
            teacher, "velocity", "velocity", student_steps=(1, 2, 4), student_grid_name="halving",
            student_time_key="y",
        )  # fmt: skip
        model = DMDModel(copy.deepcopy(base).train(), per_time_fake(base, width, obj))
        # The generator is sampled with EMA weights (decay 0.99) beside its last iterate: the two-player updates
        # leave the last iterate noisy, and the noise grew with the steps of the chain (docs/few_step.md).
        trainer = Trainer(
            model,
            obj,
            couplings_loader(x_pairs, z, 256),
            replace(config(out, "dmd2", n(3000), lr=1e-3), ema_decay=0.99, ema_warmup_steps=0),
            optimizer=dmd_optimizer(model, 1e-3),
        )
        trainer.fit()
        name = "DMD2, backward simulation 1/2/4 steps, halving grid"
        for label, generator in (("", model.generator), (", EMA generator", trainer.ema_model.generator)):
            den = obj.generator_denoiser(generator.eval())
            rows[f"{name}{label} (consistency)"] = evaluate(den, "consistency", ref, noise, grid="halving")
        seconds["dmd2"] = time.perf_counter() - start
    # EMD is a one-step generator by construction (g(z) at t = 1): evaluated at 1 step only.
    if want("emd"):
        start = time.perf_counter()
        model = DMDModel(copy.deepcopy(base).train(), copy.deepcopy(base).train())
        obj = EMDistillation(teacher, "velocity", "velocity", langevin_steps=4)
        Trainer(
            model,
            obj,
            couplings_loader(x_pairs, z, 256),
            config(out, "emd", n(3000), lr=1e-3),
            optimizer=dmd_optimizer(model, 1e-3),
        ).fit()
        rows["EMD, 4 Langevin steps (one-step)"] = evaluate(
            obj.generator_denoiser(model.generator.eval()), "consistency", ref, noise, steps=(1,)
        )
        seconds["emd"] = time.perf_counter() - start


def per_time_fake(base: MLPDenoiser, width: int, obj: DistributionMatchingDistillation) -> MLPDenoiser:
    """The fake score for ``student_time_key="y"``: the flow network's weights plus a zero label embedding
    (one label per sampling time), so it starts as the flow network at every time."""
    times = student_times(obj.schedule, obj.student_steps, obj.student_grid_name)
    fake = mlp(width, num_classes=len(times))
    missing, unexpected = fake.load_state_dict(base.state_dict(), strict=False)
    assert missing == ["label_embed.weight"] and not unexpected, (missing, unexpected)
    torch.nn.init.zeros_(fake.label_embed.weight)
    return fake.train()


STRAIGHTNESS: dict[str, dict] = {}
METHODS = ("progressive", "cd", "ict", "ict-huber", "ect", "lcm", "lcm-lora", "reflow", "dmd", "dmd2", "emd")


def _finish(rows, seconds, quick, scale, *_unused) -> dict:
    return {
        "sliced_wasserstein": rows,
        "straightness": dict(STRAIGHTNESS),
        "train_seconds": seconds,
        "quick": quick,
        "train_steps_scale": scale,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny run (checks the script)")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every training length by this")
    parser.add_argument(
        "--out", default=None, help="JSON path (default benchmarks/results/few_step_gmm-cpu.json)"
    )
    parser.add_argument("--workdir", default="runs/few_step_gmm")
    parser.add_argument(
        "--seeds", type=int, nargs="+", default=None,
        help="training seeds: each method per seed, then mean and standard error per cell and whether the error "
             "does not increase from 1 to 2 to 4 steps (within 2 SE); resumes from --out's per-seed store",
    )  # fmt: skip
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=None, help="only these methods")
    args = parser.parse_args()
    torch.set_num_threads(max(torch.get_num_threads(), 1))
    work = Path(args.workdir) / ("quick" if args.quick else "full")
    methods = set(args.methods) if args.methods else None
    if args.seeds is not None:
        run_seeds(args, work, methods)
        return
    result = run(args.quick, work, args.scale, methods=methods)
    print(
        f"{'method (sampler)':58s} " + " ".join(f"{k + ' step':>9s}" for k in ("1", "2", "4")) + "  50 step"
    )
    for name, row in result["sliced_wasserstein"].items():
        cells = " ".join(f"{row[k]:9.4f}" if k in row else f"{'-':>9s}" for k in ("1", "2", "4"))
        print(f"{name:58s} {cells}" + (f"  {row['50']:.4f}" if "50" in row else ""))
    for name, s in result["straightness"].items():
        print(
            f"straightness {name:30s} S={s['value']:.4f} relative={s['relative']:.4f} 1-step MSE={s['one_step_error']:.4f}"
        )
    if not args.quick:
        print("wrote", write_result(result, script="few_step_gmm", device="cpu", path=args.out))


def run_seeds(args, work: Path, methods: set[str] | None) -> None:
    """Each seed of ``args.seeds`` not yet in the store (``<out>.seeds.json``), then the summary to ``--out``."""
    variant = "seeds-quick" if args.quick else "seeds"
    out = Path(args.out) if args.out else result_path("few_step_gmm", variant, "cpu")
    store = SeedStore(cells_path(out))
    tag = ",".join(sorted(methods)) if methods else "all"
    for seed in args.seeds:
        if store.has(tag, seed):
            print(f"seed {seed}: already measured ({store.path})")
            continue
        fresh = work / time.strftime("%Y%m%d-%H%M%S")  # a stopped call's folders are not reused
        rows = run(args.quick, fresh, args.scale, seed=seed, methods=methods)["sliced_wasserstein"]
        values = {f"{row}/{k}": v for row, cells in rows.items() for k, v in cells.items()}
        store.put(tag, seed, values)
    by_row: dict[str, dict[str, list[float]]] = {}
    for cell in store.doc["cells"].values():
        for name, v in cell["values"].items():
            row, k = name.rsplit("/", 1)
            by_row.setdefault(row, {}).setdefault(k, []).append(v)
    rows = {row: {k: mean_se(v) for k, v in cells.items()} for row, cells in by_row.items()}
    steps = ("1", "2", "4")
    checked = {
        row: not_worse_with_steps(cells, steps)
        for row, cells in rows.items()
        if all(k in cells for k in steps)
    }
    students = {row: ok for row, ok in checked.items() if not row.startswith(("teacher", "base flow"))}
    result = {
        "sliced_wasserstein": rows,
        "not_worse_with_more_steps": checked,
        "every_student_not_worse_with_more_steps": all(students.values()),
        "seeds": sorted({int(k.rsplit("/", 1)[1]) for k in store.doc["cells"]}),
        "quick": args.quick,
        "train_steps_scale": args.scale,
    }
    print(f"{'method (sampler)':100s} " + " ".join(f"{k + ' step':>16s}" for k in steps) + "  not worse")
    for row, cells in rows.items():
        text = " ".join(
            f"{cells[k]['mean']:8.4f}+-{cells[k]['se']:.4f}" if k in cells else f"{'-':>16s}" for k in steps
        )
        print(f"{row:100s} {text}  {checked.get(row, '-')}")
    print("wrote", write_result(result, script="few_step_gmm", variant=variant, device="cpu", path=out))


if __name__ == "__main__":
    main()
