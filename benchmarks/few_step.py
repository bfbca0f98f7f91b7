"""Few-step generation on diff-image: every diffcore.distill method against its teacher (issue #6).

A class-conditional DiT teacher on the sklearn digits (rectified-flow path, velocity prediction, trained
with ``diff_image.pipeline.train``, or loaded with ``--digits-teacher DIR``) is distilled by every method of
``diffcore.distill``, each through the diffcore Trainer and saved with ``save_pretrained``:

- progressive distillation (Salimans & Ho 2022), 16 teacher DDIM steps -> 8, 4, 2, 1;
- consistency distillation (Song et al. 2023) with the teacher's Heun step;
- improved consistency training (Song & Dhariwal 2023) from scratch;
- LCM (Luo et al. 2023) with a fixed guidance scale and skipping steps;
- 2-rectified flow (Liu et al. 2023) on teacher couplings, and its one-step distillation;
- DMD (Yin et al. 2024) with a fake-score network and the regression term;
- LCM-LoRA on a LoRA-fine-tuned teacher (the concept: colour-inverted digits).

Every model is sampled through ``diffcore.sample`` (teacher: ``dpmpp_2m`` at 50 / 20 / 10 steps; students at
1 / 2 / 4 steps with their own sampler) and scored with diff-image's metrics: Frechet distance in the
evaluation classifier's feature space against the test split, class accuracy, and sampling wall time.
The shapes text-to-image model (caption adherence) is not part of this script yet.

    uv run python benchmarks/few_step.py --quick                  # CPU, tiny (checks the script)
    uv run python benchmarks/few_step.py --device cuda            # the full digits run (one H100 call)

Writes ``benchmarks/few_step.json`` (``--out``) and prints the table.
"""

from __future__ import annotations

import argparse
import copy
import json
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import diffcore
import torch
from diffcore.denoiser import Denoiser, DenoiserBase
from diffcore.distill import (
    ConsistencyCallback,
    ConsistencyDistillation,
    ConsistencyParameterization,
    ConsistencyTraining,
    CoupledFlowMatching,
    DistributionMatchingDistillation,
    DMDModel,
    LatentConsistencyDistillation,
    add_lcm_lora,
    couplings_loader,
    distill_progressively,
    dmd_optimizer,
    generate_couplings,
    one_step_distillation,
    straightness,
)
from diffcore.nn.lora import add_lora, find_lora_targets, set_adapters
from diffcore.train import TrainConfig, Trainer
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

SCHEDULE = "rectified-flow"
TEACHER_STEPS = (50, 20, 10)
STUDENT_STEPS = (1, 2, 4)
NUM_CLASSES = 10


@dataclass
class Settings:
    """Sizes of one run. ``full`` fits one H100 call; ``quick`` runs in a couple of CPU minutes."""

    teacher_steps: int = 3000
    width: int = 128
    depth: int = 4
    batch: int = 128
    lr: float = 1e-4
    scratch_lr: float = 1e-3
    pd_round_steps: int = 250
    cd_steps: int = 1000
    ict_steps: int = 2000
    lcm_steps: int = 1000
    reflow_pairs: int = 8192
    reflow_steps: int = 1000
    one_step_steps: int = 400
    dmd_steps: int = 800
    concept_steps: int = 300
    lcm_lora_steps: int = 800
    num_eval: int = 2000
    device: str = "cuda"

    @classmethod
    def quick(cls) -> Settings:
        return cls(teacher_steps=100, width=32, depth=2, batch=64, pd_round_steps=15, cd_steps=30,
                   ict_steps=30, lcm_steps=30, reflow_pairs=256, reflow_steps=30, one_step_steps=15,
                   dmd_steps=20, concept_steps=40, lcm_lora_steps=30, num_eval=200, device="cpu")  # fmt: skip


@dataclass
class Row:
    """One table row: Frechet distance, class accuracy and sampling seconds per number of steps."""

    frechet: dict[str, float]
    accuracy: dict[str, float]
    seconds: dict[str, float]
    train_seconds: float = 0.0
    extra: dict[str, float] | None = None


# ---------------------------------------------------------------------------------------------- data / eval


def _stack(items: list[tuple[Tensor, ...]]) -> dict[str, Tensor]:
    return {"x": torch.stack([i[0] for i in items]), "y": torch.stack([i[1] for i in items])}


def digits_loader(images: Tensor, labels: Tensor, batch: int) -> DataLoader:
    """Shuffled ``{"x": (B, 1, 8, 8), "y": (B,)}`` batches of the digits train split."""
    return DataLoader(
        TensorDataset(images, labels), batch_size=batch, shuffle=True, drop_last=True, collate_fn=_stack
    )


class DigitsScorer:
    """Frechet distance (classifier features, vs the test split) and class accuracy of digit samples."""

    def __init__(self) -> None:
        from diff_image.data import DigitsDataset
        from diff_image.metrics import digits_classifier, extract_features, frechet_distance

        self.clf = digits_classifier(size=8)
        self.test = extract_features(self.clf, DigitsDataset("test", 8).images)
        train = extract_features(self.clf, DigitsDataset("train", 8).images)
        self.floor = frechet_distance(train, self.test)

    def __call__(self, images: Tensor, labels: Tensor) -> tuple[float, float]:
        from diff_image.metrics import classifier_accuracy, extract_features, frechet_distance

        images = images.cpu().float()
        fd = frechet_distance(extract_features(self.clf, images), self.test)
        return fd, classifier_accuracy(self.clf, images, labels.cpu())


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def draw(
    den: DenoiserBase, sampler: str, steps: int, labels: Tensor, seed: int = 0, **options: Any
) -> tuple[Tensor, float]:
    """``(images (N, 1, 8, 8) in [-1, 1], seconds)``: ``steps``-step samples of ``sampler`` for ``labels``."""
    device = labels.device
    gen = torch.Generator(device=device).manual_seed(seed)
    noise = torch.randn((labels.shape[0], 1, 8, 8), generator=gen, device=device)
    _sync(device)
    start = time.perf_counter()
    x = diffcore.sample(den, noise, sampler, steps, cond={"y": labels}, generator=gen, **options)
    _sync(device)
    return x.clamp(-1.0, 1.0), time.perf_counter() - start


def evaluate(
    den: DenoiserBase,
    sampler: str,
    steps: tuple[int, ...],
    labels: Tensor,
    scorer: DigitsScorer,
    **options: Any,
) -> Row:
    """Score ``den`` sampled with ``sampler`` at each number of ``steps``."""
    row = Row({}, {}, {})
    for k in steps:
        draw(den, sampler, k, labels[:8], **options)  # warm-up (kernels, caches) before timing
        images, seconds = draw(den, sampler, k, labels, **options)
        row.frechet[str(k)], row.accuracy[str(k)] = scorer(images, labels)
        row.seconds[str(k)] = seconds
    return row


# ---------------------------------------------------------------------------------------------- training


def train_config(
    out: Path, name: str, steps: int, settings: Settings, lr: float | None = None
) -> TrainConfig:
    """A quiet TrainConfig for one student (no EMA: the distillation targets are the raw weights)."""
    return TrainConfig(
        steps=steps, lr=lr or settings.lr, ema_decay=None, checkpoint_every=None, tensorboard=False,
        progress_bar=False, output_dir=str(out / name), log_every=max(steps // 4, 1), max_grad_norm=1.0,
        cpu=settings.device == "cpu", seed=0,
    )  # fmt: skip


def train_teacher(out: Path, settings: Settings):
    """The digits teacher: ``diff_image.pipeline.train`` of a class-conditional DiT on the rectified-flow path."""
    from diff_image.config import ImageModelConfig, TrainImageConfig
    from diff_image.pipeline import train

    cfg = TrainImageConfig(
        model=ImageModelConfig(backbone="dit", conditioning="class", width=settings.width, depth=settings.depth,
                               heads=4, patch_size=2),
        dataset="digits", image_size=8, objective="rectified_flow", cond_dropout=0.1,
        steps=settings.teacher_steps, batch_size=128, lr=2e-3, warmup_steps=100, ema_decay=0.995,
        output_dir=str(out / "teacher"), device=settings.device, seed=0,
    )  # fmt: skip
    return train(cfg)


def fresh_copy(model: nn.Module) -> nn.Module:
    """A trainable deep copy (students start from the teacher's weights)."""
    return copy.deepcopy(model).train().requires_grad_(True)


def _fit(model: nn.Module, objective: Callable, loader: DataLoader, config: TrainConfig, **kw: Any) -> float:
    start = time.perf_counter()
    Trainer(model, objective, loader, config, **kw).fit()
    return time.perf_counter() - start


# ---------------------------------------------------------------------------------------------- methods


@dataclass
class Context:
    """What every method needs: the teacher, the data, the evaluation labels and the scorer."""

    teacher_net: nn.Module
    teacher: Denoiser
    loader: DataLoader
    labels: Tensor
    scorer: DigitsScorer
    settings: Settings
    out: Path

    @property
    def device(self) -> torch.device:
        return self.labels.device


def progressive(ctx: Context) -> Row:
    """Four rounds from 16 teacher DDIM steps; the 4-, 2- and 1-step students sampled with DDIM."""
    student = fresh_copy(ctx.teacher_net)
    start = time.perf_counter()
    rounds = distill_progressively(
        student, ctx.teacher, ctx.loader, train_config(ctx.out, "progressive", ctx.settings.pd_round_steps,
                                                       ctx.settings),
        teacher_steps=16, rounds=4, prediction="velocity",
    )  # fmt: skip
    train_s = time.perf_counter() - start
    row = Row({}, {}, {}, train_s)
    cls = type(ctx.teacher_net)
    for r in rounds:
        if r.student_steps in STUDENT_STEPS:
            net = cls.from_pretrained(r.model_dir).to(ctx.device).eval()
            one = evaluate(
                Denoiser(net, SCHEDULE, "velocity"), "ddim", (r.student_steps,), ctx.labels, ctx.scorer
            )
            (
                row.frechet.update(one.frechet),
                row.accuracy.update(one.accuracy),
                row.seconds.update(one.seconds),
            )
    return row


def _consistency(
    ctx: Context, name: str, objective, net: nn.Module, steps: int, sampler: str, lr: float | None = None
) -> Row:
    config = train_config(ctx.out, name, steps, ctx.settings, lr)
    train_s = _fit(net, objective, ctx.loader, config, callbacks=[ConsistencyCallback(objective)])
    saved = type(net).from_pretrained(Path(config.output_dir) / "model").to(ctx.device).eval()
    den = objective.parameterization.denoiser(saved)
    row = evaluate(den, sampler, STUDENT_STEPS, ctx.labels, ctx.scorer, t_start=objective.t_max)
    row.train_seconds = train_s
    return row


def consistency_distillation(ctx: Context) -> Row:
    param = ConsistencyParameterization(SCHEDULE, "velocity")
    obj = ConsistencyDistillation(param, teacher=ctx.teacher, num_points=18, solver="heun")
    return _consistency(ctx, "cd", obj, fresh_copy(ctx.teacher_net), ctx.settings.cd_steps, "consistency")


def consistency_training(ctx: Context) -> Row:
    """iCT from scratch (no teacher): a fresh network of the teacher's configuration."""
    param = ConsistencyParameterization(SCHEDULE, "x0")
    obj = ConsistencyTraining(param, total_steps=ctx.settings.ict_steps)
    torch.manual_seed(0)
    net = type(ctx.teacher_net)(copy.deepcopy(ctx.teacher_net.config)).to(ctx.device)
    return _consistency(ctx, "ict", obj, net, ctx.settings.ict_steps, "consistency", ctx.settings.scratch_lr)


def lcm(ctx: Context, guidance: float = 1.0) -> Row:
    """LCM's guided consistency distillation at a fixed guidance scale (the DiT takes no ``w`` input),
    DDIM teacher steps on a 50-point discretisation with skipping step 5."""
    param = ConsistencyParameterization(SCHEDULE, "velocity")
    obj = LatentConsistencyDistillation(
        param, teacher=ctx.teacher, uncond={"y": torch.tensor(NUM_CLASSES)}, guidance_range=(guidance, guidance),
        guidance_key=None, num_points=50, skip=5, solver="ddim",
    )  # fmt: skip
    return _consistency(ctx, "lcm", obj, fresh_copy(ctx.teacher_net), ctx.settings.lcm_steps, "lcm")


def couplings(ctx: Context, den: DenoiserBase, n: int, seed: int) -> tuple[Tensor, Tensor, Tensor]:
    """``(x0, noise, labels)``: ``n`` end points of ``den``'s ODE (Heun, 32 steps) from fresh noise."""
    gen = torch.Generator(device=ctx.device).manual_seed(seed)
    z = torch.randn((n, 1, 8, 8), generator=gen, device=ctx.device)
    y = torch.randint(0, NUM_CLASSES, (n,), generator=gen, device=ctx.device)
    x0 = generate_couplings(den, z, "heun", 32, cond={"y": y}, batch_size=2048)
    return x0, z, y


def reflow(ctx: Context) -> tuple[Row, Row, dict[str, Any]]:
    """2-rectified flow on teacher couplings (Euler), its one-step distillation, and the straightness."""
    s = ctx.settings
    x0, z, y = couplings(ctx, ctx.teacher, s.reflow_pairs, seed=11)
    rf2 = fresh_copy(ctx.teacher_net)
    train_s = _fit(rf2, CoupledFlowMatching(SCHEDULE), couplings_loader(x0, z, s.batch, {"y": y}),
                   train_config(ctx.out, "reflow", s.reflow_steps, s))  # fmt: skip
    rf2_den = Denoiser(rf2.eval(), SCHEDULE, "velocity")
    row2 = evaluate(rf2_den, "euler", STUDENT_STEPS, ctx.labels, ctx.scorer)
    row2.train_seconds = train_s
    x1, z1, y1 = couplings(ctx, rf2_den, s.reflow_pairs, seed=12)
    one = fresh_copy(rf2)
    train_s = _fit(one, one_step_distillation(SCHEDULE), couplings_loader(x1, z1, s.batch, {"y": y1}),
                   train_config(ctx.out, "reflow-distill", s.one_step_steps, s))  # fmt: skip
    row1 = evaluate(
        Denoiser(one.eval(), SCHEDULE, "velocity"), "euler", STUDENT_STEPS, ctx.labels, ctx.scorer
    )
    row1.train_seconds = train_s + row2.train_seconds
    probe = ctx.labels[:500]
    noise = torch.randn((probe.shape[0], 1, 8, 8), generator=torch.Generator(device=ctx.device).manual_seed(3),
                        device=ctx.device)  # fmt: skip
    lines = {
        "teacher (1-rectified flow)": asdict(straightness(ctx.teacher, noise, 32, {"y": probe})),
        "2-rectified flow": asdict(straightness(rf2_den, noise, 32, {"y": probe})),
    }
    return row2, row1, {"straightness": lines, "pairs": (x0, z, y)}


def dmd(ctx: Context, pairs: tuple[Tensor, Tensor, Tensor]) -> Row:
    """DMD: generator and fake score both start from the teacher; regression on the teacher's couplings."""
    s = ctx.settings
    x0, z, y = pairs
    model = DMDModel(fresh_copy(ctx.teacher_net), fresh_copy(ctx.teacher_net))
    obj = DistributionMatchingDistillation(ctx.teacher, "velocity", "velocity")
    config = train_config(ctx.out, "dmd", s.dmd_steps, s)
    train_s = _fit(model, obj, couplings_loader(x0, z, s.batch, {"y": y}), config,
                   optimizer=dmd_optimizer(model, s.lr))  # fmt: skip
    model.generator.save_pretrained(Path(config.output_dir) / "generator")
    saved = type(ctx.teacher_net).from_pretrained(Path(config.output_dir) / "generator").to(ctx.device).eval()
    row = evaluate(obj.generator_denoiser(saved), "consistency", STUDENT_STEPS, ctx.labels, ctx.scorer)
    row.train_seconds = train_s
    return row


# ---------------------------------------------------------------------------------------------- LCM-LoRA concept


class _Inverted:
    """The concept of the LCM-LoRA test: colour-inverted digits (white background, dark strokes)."""

    @staticmethod
    def apply(images: Tensor) -> Tensor:
        return -images

    @staticmethod
    def present(images: Tensor) -> Tensor:
        """Per image: the mean pixel is above 0 (the digits' background is -1, so plain digits sit far below)."""
        return images.reshape(images.shape[0], -1).mean(1) > 0


def lcm_lora_concept(ctx: Context, images: Tensor, labels: Tensor) -> Row:
    """LoRA-fine-tune the teacher on inverted digits ("concept"), train an LCM-LoRA on the BASE teacher, apply
    both adapters and sample at 1 / 2 / 4 steps. ``extra``: the concept rate (fraction of samples with the
    concept) of the fine-tuned teacher at 50 steps and of base + both adapters at 4 steps."""
    s = ctx.settings
    targets = find_lora_targets(ctx.teacher_net)
    tuned = add_lora(copy.deepcopy(ctx.teacher_net), rank=8, target_modules=targets, adapter_name="concept")
    from diffcore import objectives

    concept_loader = digits_loader(_Inverted.apply(images), labels, s.batch)
    train_s = _fit(tuned, objectives.flow_matching(), concept_loader,
                   train_config(ctx.out, "concept-lora", s.concept_steps, s, lr=1e-3))  # fmt: skip
    base = add_lcm_lora(copy.deepcopy(ctx.teacher_net), rank=16, target_modules=targets)
    param = ConsistencyParameterization(SCHEDULE, "velocity")
    obj = LatentConsistencyDistillation(param, teacher=ctx.teacher, guidance_range=(1.0, 1.0), guidance_key=None,
                                        num_points=50, skip=5)  # fmt: skip
    train_s += _fit(base, obj, ctx.loader, train_config(ctx.out, "lcm-lora", s.lcm_lora_steps, s, lr=1e-3),
                    callbacks=[ConsistencyCallback(obj)])  # fmt: skip
    # Both adapters on one network: the concept adapter's weights copied next to the LCM adapter.
    combined = base
    add_lora(combined, rank=8, target_modules=targets, adapter_name="concept")
    concept_state = {k: v for k, v in tuned.state_dict().items() if ".concept." in k}
    combined.load_state_dict(concept_state, strict=False)
    set_adapters(combined, ["lcm", "concept"])
    combined.eval()
    row = evaluate(param.denoiser(combined), "lcm", STUDENT_STEPS, ctx.labels, ctx.scorer, t_start=obj.t_max)
    row.train_seconds = train_s
    four, _ = draw(param.denoiser(combined), "lcm", 4, ctx.labels, t_start=obj.t_max)
    teacher50, _ = draw(Denoiser(tuned.eval(), SCHEDULE, "velocity"), "dpmpp_2m", 50, ctx.labels)
    base4, _ = draw(param.denoiser(_only(base, "lcm")), "lcm", 4, ctx.labels, t_start=obj.t_max)
    row.extra = {
        "concept_rate_tuned_teacher_50": float(_Inverted.present(teacher50).float().mean()),
        "concept_rate_lcm_lora_plus_concept_4": float(_Inverted.present(four).float().mean()),
        "concept_rate_lcm_lora_alone_4": float(_Inverted.present(base4).float().mean()),
        # accuracy of the 4-step concept samples read back through the inversion
        "concept_class_accuracy_4": ctx.scorer(_Inverted.apply(four), ctx.labels)[1],
    }
    return row


def _only(model: nn.Module, name: str) -> nn.Module:
    set_adapters(model, [name])
    return model


# ---------------------------------------------------------------------------------------------- run


def log(message: str) -> None:
    print(f"[few_step] {message}", flush=True)


def run(settings: Settings, out: Path, teacher_dir: str | None) -> dict[str, Any]:
    from diff_image.data import DigitsDataset
    from diff_image.pipeline import ImagePipeline

    device = torch.device(settings.device)
    torch.manual_seed(0)
    start = time.perf_counter()
    if teacher_dir:
        pipe = ImagePipeline.from_pretrained(teacher_dir, device=device)
    else:
        pipe = train_teacher(out, settings)
    if pipe.schedule != SCHEDULE or pipe.prediction != "velocity" or pipe.num_classes != NUM_CLASSES:
        raise ValueError(
            f"digits teacher: expected a rectified-flow velocity model of 10 classes, got {pipe.schedule}, "
            f"{pipe.prediction}, {pipe.num_classes} classes"
        )
    teacher_s = time.perf_counter() - start
    net = pipe.model.to(device).eval().requires_grad_(False)
    train = DigitsDataset("train", 8)
    images, labels = train.images.to(device), train.labels.to(device)
    ctx = Context(net, Denoiser(net, SCHEDULE, "velocity"), digits_loader(images, labels, settings.batch),
                  torch.arange(settings.num_eval, device=device) % NUM_CLASSES, DigitsScorer(), settings, out)  # fmt: skip
    log(f"teacher ready ({teacher_s:.0f} s)")
    rows: dict[str, Row] = LoggedRows()
    rows["teacher (dpmpp_2m)"] = evaluate(ctx.teacher, "dpmpp_2m", TEACHER_STEPS, ctx.labels, ctx.scorer)
    rows["teacher (dpmpp_2m)"].train_seconds = teacher_s
    rows["teacher (euler)"] = evaluate(ctx.teacher, "euler", STUDENT_STEPS, ctx.labels, ctx.scorer)
    rows["progressive distillation (ddim)"] = progressive(ctx)
    log(f"progressive done ({time.perf_counter() - start:.0f} s)")
    rows["consistency distillation (consistency)"] = consistency_distillation(ctx)
    log(f"consistency_distillation done ({time.perf_counter() - start:.0f} s)")
    rows["consistency training, iCT (consistency)"] = consistency_training(ctx)
    log(f"consistency_training done ({time.perf_counter() - start:.0f} s)")
    rows["LCM, w=1 (lcm)"] = lcm(ctx)
    log(f"lcm done ({time.perf_counter() - start:.0f} s)")
    rf2, rf1, extra = reflow(ctx)
    log(f"reflow done ({time.perf_counter() - start:.0f} s)")
    rows["2-rectified flow (euler)"] = rf2
    rows["2-rectified flow + 1-step distillation (euler)"] = rf1
    rows["DMD (consistency)"] = dmd(ctx, extra["pairs"])
    log(f"dmd done ({time.perf_counter() - start:.0f} s)")
    rows["LCM-LoRA + concept LoRA (lcm)"] = lcm_lora_concept(ctx, images, labels)
    log(f"lcm_lora_concept done ({time.perf_counter() - start:.0f} s)")
    return summarise(rows, extra["straightness"], ctx.scorer.floor, settings, time.perf_counter() - start)


class LoggedRows(dict):
    """The table's rows; each row is printed as it is added, so a run cut short still shows what it measured."""

    def __setitem__(self, name: str, row: Row) -> None:
        super().__setitem__(name, row)
        cells = ", ".join(f"{k} steps FD {v:.3f} acc {row.accuracy[k]:.3f}" for k, v in row.frechet.items())
        log(f"row {name}: {cells}")


def summarise(
    rows: dict[str, Row], straight: dict[str, Any], floor: float, settings: Settings, wall: float
) -> dict[str, Any]:
    """The JSON document: rows, the train-vs-test floor, and the two targets checked."""
    teacher50 = rows["teacher (dpmpp_2m)"].frechet["50"]
    students = {k: r for k, r in rows.items() if not k.startswith("teacher")}

    def best(steps: str) -> tuple[str, float]:
        name = min(students, key=lambda k: students[k].frechet.get(steps, float("inf")))
        return name, students[name].frechet[steps]

    (b4, fd4), (b1, fd1) = best("4"), best("1")
    return {
        "dataset": "digits",
        "rows": {k: asdict(r) for k, r in rows.items()},
        "frechet_train_test_floor": floor,
        "straightness": straight,
        "targets": {
            "teacher_50_frechet": teacher50,
            "best_4_step": {
                "method": b4,
                "frechet": fd4,
                "ratio": fd4 / teacher50,
                "met": fd4 <= 1.25 * teacher50,
            },
            "best_1_step": {
                "method": b1,
                "frechet": fd1,
                "ratio": fd1 / teacher50,
                "met": fd1 <= 2.0 * teacher50,
            },
        },
        "settings": asdict(settings),
        "wall_seconds": wall,
        "device": torch.cuda.get_device_name() if settings.device.startswith("cuda") else "cpu",
    }


def table(result: dict[str, Any]) -> str:
    """A markdown table of the result (Frechet distance / class accuracy / sampling seconds)."""
    cols = [str(k) for k in TEACHER_STEPS + STUDENT_STEPS[::-1]]
    lines = ["| method (sampler) | " + " | ".join(f"{c} steps: FD / acc / s" for c in cols) + " | train s |",
             "| --- |" + " --- |" * (len(cols) + 1)]  # fmt: skip
    for name, r in result["rows"].items():
        cells = [
            f"{r['frechet'][c]:.3f} / {r['accuracy'][c]:.3f} / {r['seconds'][c]:.2f}"
            if c in r["frechet"]
            else "-"
            for c in cols
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {r['train_seconds']:.0f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny CPU run (checks the script)")
    parser.add_argument("--device", default=None, help="cuda or cpu (default: cuda if available)")
    parser.add_argument("--digits-teacher", default=None, help="a saved digits ImagePipeline to distil")
    parser.add_argument("--out", default="benchmarks/few_step.json")
    parser.add_argument("--workdir", default=None, help="where models are saved (default: a new temp folder)")
    parser.add_argument("--step-scale", type=float, default=1.0,
                        help="multiply every training step count (teacher and students) by this factor")  # fmt: skip
    args = parser.parse_args()
    settings = Settings.quick() if args.quick else Settings()
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    settings = replace(settings, device=device)
    if args.step_scale != 1.0:
        if args.step_scale <= 0:
            parser.error(f"--step-scale: expected a positive factor, got {args.step_scale}")
        scaled = {f.name: max(1, round(getattr(settings, f.name) * args.step_scale))
                  for f in fields(settings) if f.name.endswith("_steps")}  # fmt: skip
        settings = replace(settings, **scaled)
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="few_step_"))
    result = run(settings, workdir / ("quick" if args.quick else "full"), args.digits_teacher)
    result["quick"] = args.quick
    print(table(result))
    print(json.dumps(result["targets"], indent=2))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print("wrote", args.out)


if __name__ == "__main__":
    main()
