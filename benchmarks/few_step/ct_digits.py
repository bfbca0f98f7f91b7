"""Consistency training on digits over seeds, resumable in short device calls (issue #34's first target).

Rows (each a student of the digits teacher's DiT configuration, trained on the digits alone, capped at
``--student-seconds``): ``ect`` (ECT, continuous-time consistency training from a random initialisation, its first
half diffusion training), ``ict`` (the iCT recipe as in ``few_step.py``: squared L2, lr 2e-3, warmup) and
``ect-tune`` (ECT's tuning of the teacher's own weights, ``pretrain_fraction = 0``: uses the trained teacher,
so it is not "from scratch"). Each is sampled with the ``consistency`` sampler at 1 / 2 / 4 steps and scored by
Frechet distance in the digits classifier's features and class accuracy (2,000 samples), against the teacher's
50-step ``dpmpp_2m`` FD. Every (method, seed) cell is written to ``<out>.cells.json`` as soon as it is measured;
a call skips the cells already there and stops starting new ones when ``--budget-seconds`` would be passed, so
a run of many cells is a sequence of short calls. The summary (mean and standard error over seeds, the ratios
to the teacher and the targets: 1-step FD <= 2x, 2-step <= 1.5x) goes to ``--out``.

    uv run python benchmarks/few_step/ct_digits.py --quick                # CPU, tiny; checks the script
    python benchmarks/few_step/ct_digits.py --device cuda --workdir $OUT/w --out $OUT/ct_digits-h100.json
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: the shared helpers
sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/few_step/
from diffcore.distill import (
    ConsistencyCallback,
    ConsistencyParameterization,
    ConsistencyTraining,
    EasyConsistencyTraining,
)
from few_step import (
    SCHEDULE,
    STUDENT_STEPS,
    Settings,
    _fit,
    digits_context,
    evaluate,
    fresh_copy,
    load_model,
    reinitialised,
    train_config,
)
from results_io import result_path, write_result
from seeds import SeedStore

METHODS = ("ect", "ict", "ect-tune")
NAMES = {
    "ect": "ECT from scratch (consistency)",
    "ict": "iCT from scratch, squared L2 (consistency)",
    "ect-tune": "ECT tuning the teacher's weights (consistency)",
}


def student(ctx, method: str, seed: int, settings: Settings, steps: int) -> dict[str, float]:
    """Train one student and return ``{"frechet/<k>", "accuracy/<k>", "train_seconds/0"}``."""
    torch.manual_seed(seed)
    if method == "ect-tune":
        param = ConsistencyParameterization(SCHEDULE, "velocity")
        obj = EasyConsistencyTraining(param, pretrain_fraction=0.0)
        net, lr, warmup = fresh_copy(ctx.teacher_net), 2e-4, 0
    else:
        param = ConsistencyParameterization(SCHEDULE, "x0")
        obj = EasyConsistencyTraining(param) if method == "ect" else ConsistencyTraining(param, distance="l2")
        net, lr, warmup = reinitialised(ctx.teacher_net), settings.ict_lr, settings.ict_warmup
        torch.manual_seed(seed)
        for p in net.parameters():  # reinitialised() seeds with 0: draw this seed's initialisation
            if p.ndim > 1:
                torch.nn.init.xavier_uniform_(p)
    config = replace(train_config(ctx.out, f"{method}-seed{seed}", steps, settings, lr, warmup), seed=seed)
    seconds = _fit(net, obj, ctx.loader, config, callbacks=[ConsistencyCallback(obj)])
    saved = load_model(net, Path(config.output_dir) / "model")
    row = evaluate(
        obj.parameterization.denoiser(saved), "consistency", STUDENT_STEPS, ctx.task, t_start=obj.t_max
    )
    values = {f"frechet/{k}": v for k, v in row.frechet.items()}
    values.update({f"accuracy/{k}": v for k, v in row.accuracy.items()})
    values["train_seconds/0"] = seconds
    return values


def summarise(store: SeedStore) -> dict:
    """Mean and standard error per method and steps, ratios to the teacher's 50-step FD, the targets."""
    summary = store.summary()
    teacher = summary.get("teacher", {}).get("frechet", {}).get("50", {}).get("mean")
    rows = {}
    for method, metrics in summary.items():
        if method == "teacher":
            continue
        fd = metrics["frechet"]
        rows[NAMES.get(method, method)] = {
            "frechet": fd,
            "accuracy": metrics.get("accuracy", {}),
            "train_seconds": metrics.get("train_seconds", {}).get("0"),
            "ratio_to_teacher_50": {k: v["mean"] / teacher for k, v in fd.items()} if teacher else None,
        }
    targets = {}
    if teacher:
        for method in ("ect", "ict"):
            fd = summary.get(method, {}).get("frechet", {})
            if "1" in fd and "2" in fd:
                targets[NAMES[method]] = {
                    "one_step_within_2x": fd["1"]["mean"] <= 2 * teacher,
                    "two_step_within_1.5x": fd["2"]["mean"] <= 1.5 * teacher,
                }
    return {"teacher_50_frechet": summary.get("teacher", {}).get("frechet", {}).get("50"), "rows": rows,
            "targets_from_scratch": targets}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="CPU, tiny teacher and students (checks the script)"
    )
    parser.add_argument("--device", default=None, help="cuda or cpu (default: cuda if available)")
    parser.add_argument(
        "--teacher", default=None, help="a saved digits ImagePipeline (default: <workdir>/teacher)"
    )
    parser.add_argument("--workdir", default="runs/ct_digits", help="teacher and students are kept here")
    parser.add_argument(
        "--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds (default 0 1 2)"
    )
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--student-seconds", type=float, default=60.0, help="training cap of each student")
    parser.add_argument(
        "--student-steps", type=int, default=20000, help="optimizer steps of each student (cap)"
    )
    parser.add_argument(
        "--budget-seconds", type=float, default=330.0,
        help="start no new cell once this much of the call is spent plus one student's cap (resume later)",
    )  # fmt: skip
    parser.add_argument(
        "--out", default=None, help="summary JSON (default benchmarks/results/ct_digits-<dev>.json)"
    )
    args = parser.parse_args()
    start = time.perf_counter()
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    settings = Settings.quick() if args.quick else Settings(device=device)
    settings = replace(settings, student_seconds=None if args.quick else args.student_seconds)
    steps = 40 if args.quick else args.student_steps
    if args.quick:
        torch.set_num_threads(1)
    work = Path(args.workdir) / ("quick" if args.quick else "full")
    saved_teacher = (
        work / "teacher" / "pipeline"
    )  # where diff_image.pipeline.train saves it: a later call reuses it
    teacher_dir = args.teacher or (str(saved_teacher) if saved_teacher.is_dir() else None)
    ctx, teacher_s = digits_context(settings, work, teacher_dir)
    out = (
        Path(args.out)
        if args.out
        else result_path("ct_digits", "quick" if args.quick else None, "cpu" if device == "cpu" else device)
    )
    store = SeedStore(out.with_suffix(".cells.json"))
    if not store.has("teacher", 0):
        row = evaluate(ctx.teacher, "dpmpp_2m", (50,), ctx.task)
        store.put("teacher", 0, {"frechet/50": row.frechet["50"], "accuracy/50": row.accuracy["50"]},
                  train_seconds=teacher_s)  # fmt: skip
    cap = args.student_seconds + 30.0
    for seed in args.seeds:
        for method in args.methods:
            if store.has(method, seed):
                continue
            if not args.quick and time.perf_counter() - start + cap > args.budget_seconds:
                print(f"budget reached: rerun the same command to go on ({store.path})")
                break
            store.put(method, seed, student(ctx, method, seed, settings, steps))
            print(f"{method} seed {seed}: {store.doc['cells'][f'{method}/{seed}']['values']}", flush=True)
    result = summarise(store)
    result.update(quick=args.quick, student_seconds=settings.student_seconds, seeds=args.seeds)
    print(f"teacher 50-step FD: {result['teacher_50_frechet']}")
    for name, row in result["rows"].items():
        cells = "  ".join(
            f"{k}: {v['mean']:.3f} +- {v['se']:.3f} (n={v['n']})" for k, v in sorted(row["frechet"].items())
        )
        print(f"{name:50s} {cells}")
    print("wrote", write_result(result, script="ct_digits", device=device, path=out))


if __name__ == "__main__":
    main()
