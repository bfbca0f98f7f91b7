"""Few-step students over training seeds, resumable in short device calls: Frechet distance and (shapes)
caption adherence as mean and standard error (issue #34).

One teacher (trained, or loaded with ``--teacher``); for each seed of ``--seeds`` and each method of
``--methods`` the student is trained by the same function as in ``few_step.py`` with the training seed set
(initialisation of from-scratch students, data order, objective draws; the evaluation noise and captions are
fixed), sampled at 1 / 2 / 4 steps and scored: digits FD and class accuracy, shapes FD and one- / two-object
caption adherence. Every (method, seed) cell is written to ``the cells file (``-cells-`` in the name)`` as soon as it is measured; a call
skips cells already there and starts no new one when ``--budget-seconds`` would be passed, so a long run is a
sequence of calls of the same command. The summary (``--out``): per row, metric and step count the mean,
standard error (sample std / sqrt(n)) and n; whether the FD does not increase from 1 to 2 to 4 steps (within 2
combined standard errors); and the issue's targets.

    uv run python benchmarks/few_step/few_step_seeds.py --quick                      # CPU, tiny: digits
    uv run python benchmarks/few_step/few_step_seeds.py --quick --dataset shapes     # CPU, tiny: shapes
    python benchmarks/few_step/few_step_seeds.py --device cuda --methods ect --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: the shared helpers
sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/few_step/
import few_step as fs
from diffcore.distill import ConsistencyParameterization, EasyConsistencyTraining
from results_io import result_path, write_result
from seeds import SeedStore, cells_path, not_worse_with_steps

sys.modules.setdefault("few_step", fs)  # few_step_shapes imports the same module object
METHODS = ("progressive", "cd", "ict", "ect", "ect-tune", "lcm", "reflow", "dmd", "dmd2", "emd")
SCORES = ("frechet", "accuracy", "adherence_one_object", "adherence_two_object")


def ect_tune(ctx: fs.Context) -> fs.Row:
    """ECT's tuning (Geng et al. 2024): the teacher's own weights, ``pretrain_fraction = 0`` (not from scratch)."""
    param = ConsistencyParameterization(fs.SCHEDULE, "velocity")
    obj = EasyConsistencyTraining(param, distance=ctx.settings.ict_distance, pretrain_fraction=0.0)
    net = fs.fresh_copy(ctx.teacher_net)
    return fs._consistency(ctx, "ect-tune", obj, net, ctx.settings.ect_steps, "consistency")[0]


def method_rows(ctx: fs.Context, method: str, pairs: Any) -> dict[str, fs.Row]:
    """The rows of one method (reflow gives two, LCM one per sampling scale)."""
    if method == "progressive":
        return {"progressive distillation (ddim)": fs.progressive(ctx)}
    if method == "cd":
        return {"consistency distillation (consistency)": fs.consistency_distillation(ctx)}
    if method == "ict":
        return {"consistency training, iCT (consistency)": fs.consistency_training(ctx)}
    if method == "ect":
        return {"consistency training, ECT (consistency)": fs.ect(ctx)}
    if method == "ect-tune":
        return {"ECT tuning the teacher's weights (consistency)": ect_tune(ctx)}
    if method == "lcm":
        scales = tuple(dict.fromkeys((1.0, ctx.teacher_guidance)))
        lo, hi = ctx.settings.lcm_guidance
        rows = fs.lcm(ctx, scales)
        return {
            f"LCM, w-conditioned on [{lo:g}, {hi:g}], sampled at w={w:g} (lcm)": r
            for w, r in zip(scales, rows)
        }
    if method == "reflow":
        rf2, rf1, _ = fs.reflow(ctx)
        return {"2-rectified flow (euler)": rf2, "2-rectified flow + 1-step distillation (euler)": rf1}
    if method == "dmd":
        return {"DMD (consistency)": fs.dmd(ctx, pairs())}
    if method == "dmd2":
        return {"DMD2, backward simulation (consistency)": fs.dmd2(ctx, pairs())}
    if method == "emd":
        return {"EMD, 4 Langevin steps (consistency)": fs.emd(ctx, pairs())}
    raise ValueError(f"method: expected one of {METHODS}, got {method!r}")


def values(rows: dict[str, fs.Row]) -> dict[str, float]:
    """``"<row>|<score>/<steps>" -> number`` for every score a row holds, and its training seconds."""
    out = {}
    for name, row in rows.items():
        for score in SCORES:
            for k, v in getattr(row, score).items():
                out[f"{name}|{score}/{k}"] = v
        out[f"{name}|train_seconds/0"] = row.train_seconds
    return out


def summarise(store: SeedStore, dataset: str) -> dict[str, Any]:
    """Rows ``{row: {score: {steps: mean_se}}}``, the 1 -> 2 -> 4 check on FD, and the issue's targets."""
    by_method = store.summary()
    rows: dict[str, dict[str, Any]] = {}
    for metrics in by_method.values():
        for key, cells in metrics.items():
            row, score = key.split("|")
            rows.setdefault(row, {})[score] = cells
    teacher_rows = [r for r in rows if r.startswith("teacher")]
    teacher50 = rows[teacher_rows[0]]["frechet"]["50"]["mean"] if teacher_rows else None
    steps = ("1", "2", "4")
    checks = {
        row: not_worse_with_steps(s["frechet"], steps)
        for row, s in rows.items()
        if not row.startswith("teacher") and all(k in s.get("frechet", {}) for k in steps)
    }
    targets: dict[str, Any] = {"teacher_50_frechet": teacher50}
    students = {r: s for r, s in rows.items() if not r.startswith("teacher")}
    if dataset == "digits" and teacher50:
        for row, s in students.items():
            if "ECT" in row or "iCT" in row:
                fd = s["frechet"]
                targets[row] = {
                    "one_step_ratio": fd["1"]["mean"] / teacher50, "one_step_within_2x": fd["1"]["mean"] <= 2 * teacher50,
                    "two_step_ratio": fd["2"]["mean"] / teacher50,
                    "two_step_within_1.5x": fd["2"]["mean"] <= 1.5 * teacher50,
                }  # fmt: skip
    if dataset == "shapes" and students:
        for k, need in (("4", (0.90, 0.70)), ("1", (0.80, 0.55))):
            have = {r: s for r, s in students.items() if k in s.get("adherence_one_object", {})}
            if not have:
                continue
            best = max(
                have,
                key=lambda r: (
                    have[r]["adherence_one_object"][k]["mean"] + have[r]["adherence_two_object"][k]["mean"]
                ),
            )
            one, two = (
                have[best]["adherence_one_object"][k]["mean"],
                have[best]["adherence_two_object"][k]["mean"],
            )
            targets[f"best_{k}_step_adherence"] = {"row": best, "one_object": one, "two_object": two,
                                                   "need": need, "met": one >= need[0] and two >= need[1]}  # fmt: skip
    return {"dataset": dataset, "rows": rows, "fd_not_worse_with_more_steps": checks, "targets": targets}


def context(args, device: str, work: Path) -> tuple[fs.Context, float]:
    """The teacher's context (digits or shapes), trained once into ``work`` or loaded from ``--teacher``."""
    if args.dataset == "digits":
        settings = fs.Settings.quick() if args.quick else fs.Settings(device=device)
        settings = replace(settings, student_seconds=None if args.quick else args.student_seconds)
        if args.step_scale != 1.0:
            settings = replace(settings.scaled(args.step_scale), teacher_steps=settings.teacher_steps)
        saved = (
            work / "teacher" / "pipeline"
        )  # where diff_image.pipeline.train saves it: a later call reuses it
        teacher = args.teacher or (str(saved) if saved.is_dir() else None)
        return fs.digits_context(settings, work, teacher)
    from few_step_shapes import ShapesSettings, shapes_context

    ss = replace(ShapesSettings.quick() if args.quick else ShapesSettings(), device=device)
    if args.step_scale != 1.0:
        ss = ss.scaled(args.step_scale)  # students only
    if not args.quick:
        ss = replace(ss, student_seconds=args.student_seconds)
    saved = work / "teacher" / "shapes_run" / "pipeline"
    teacher = args.teacher or (str(saved) if saved.is_dir() else None)
    ctx, info = shapes_context(ss, work, teacher)
    return ctx, info["seconds"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="CPU, tiny teacher and students (checks the script)"
    )
    parser.add_argument("--dataset", choices=("digits", "shapes"), default="digits")
    parser.add_argument("--device", default=None, help="cuda or cpu (default: cuda if available)")
    parser.add_argument(
        "--teacher", default=None, help="a saved ImagePipeline to distil (default: <workdir>)"
    )
    parser.add_argument(
        "--workdir", default="runs/few_step_seeds", help="the teacher and the students go here"
    )
    parser.add_argument(
        "--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds (default 0 1 2)"
    )
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=["ect", "ict"])
    parser.add_argument("--student-seconds", type=float, default=60.0, help="training cap of each student")
    parser.add_argument(
        "--step-scale", type=float, default=1.0,
        help="every student's step count x this (few_step.py's counts; the time cap still applies)",
    )  # fmt: skip
    parser.add_argument(
        "--budget-seconds", type=float, default=330.0,
        help="start no new cell once the call has spent this minus one cell's estimate (then run it again)",
    )  # fmt: skip
    parser.add_argument(
        "--out", default=None, help="summary JSON (default benchmarks/results/few_step_seeds-...)"
    )
    args = parser.parse_args()
    start = time.perf_counter()
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if args.quick:
        torch.set_num_threads(1)
    if device.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = True
    variant = args.dataset + ("-quick" if args.quick else "")
    out = Path(args.out) if args.out else result_path("few_step_seeds", variant, device)
    store = SeedStore(cells_path(out))
    work = Path(args.workdir) / variant
    ctx, teacher_s = context(args, device, work)
    if not store.has("teacher", 0):
        name, sampler = (
            ("teacher (dpmpp_2m)", "dpmpp_2m") if args.dataset == "digits" else ("teacher (euler)", "euler")
        )
        row = fs.evaluate(ctx.teacher, sampler, (50,), ctx.task)
        row.train_seconds = teacher_s
        store.put("teacher", 0, values({name: row}))
    cache: dict[str, Any] = {}

    def pairs():
        if "pairs" not in cache:
            cache["pairs"] = fs.couplings(ctx, ctx.teacher, ctx.settings.reflow_pairs, seed=11)
        return cache["pairs"]

    spent: list[float] = []
    for seed in args.seeds:
        for method in args.methods:
            if store.has(method, seed):
                continue
            estimate = max(spent) if spent else args.student_seconds + 30.0
            if not args.quick and time.perf_counter() - start + estimate > args.budget_seconds:
                print(f"budget reached: run the same command again to go on ({store.path})", flush=True)
                break
            fs.TRAIN_SEED[0] = seed
            ctx.out = work / "students" / f"{method}-seed{seed}-{time.strftime('%Y%m%d-%H%M%S')}"
            cell_start = time.perf_counter()
            store.put(method, seed, values(method_rows(ctx, method, pairs)))
            spent.append(time.perf_counter() - cell_start)
            print(f"{method} seed {seed} done ({spent[-1]:.0f} s)", flush=True)
        else:
            continue
        break
    result = summarise(store, args.dataset)
    result.update(quick=args.quick, student_seconds=None if args.quick else args.student_seconds)
    for row, scores in result["rows"].items():
        cells = "; ".join(
            f"{k}: "
            + " / ".join(
                f"{scores[s][k]['mean']:.3f}+-{scores[s][k]['se']:.3f}"
                for s in SCORES
                if k in scores.get(s, {})
            )
            for k in sorted(scores.get("frechet", {}), key=int)
        )
        n = next(iter(scores["frechet"].values()))["n"]
        print(f"{row:60s} (n={n}) {cells}")
    print("targets:", result["targets"])
    print("wrote", write_result(result, script="few_step_seeds", variant=variant, device=device, path=out))


if __name__ == "__main__":
    main()
