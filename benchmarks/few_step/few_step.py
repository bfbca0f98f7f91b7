"""Few-step generation on diff-image: every diffcore.distill method against its teacher (issue #6).

Two data sets, each a teacher distilled by every method of ``diffcore.distill`` through the diffcore Trainer:

- **digits**: a class-conditional DiT on the sklearn digits (rectified-flow path, velocity prediction, trained
  with ``diff_image.pipeline.train`` or loaded with ``--digits-teacher DIR``), sampled without guidance;
- **shapes** (``--shapes``, :mod:`few_step_shapes`): the text-to-image MMDiT with its CLIP text encoder
  trained from scratch, sampled with classifier-free guidance (scale 6). Its students distil the GUIDED
  teacher (guided distillation, Meng et al. 2023), so they sample without CFG (one forward per step).

Methods: progressive distillation (Salimans & Ho 2022, 16 teacher DDIM steps -> 8, 4, 2, 1); consistency
distillation (Song et al. 2023, teacher Heun step); improved consistency training (Song & Dhariwal 2023) from
scratch; LCM (Luo et al. 2023) with guidance-scale conditioning (the backbone's ``guidance_embed`` input ``w``,
Sec. 4.2) and skipping steps, sampled at ``w = 1`` and at the teacher's guidance scale; 2-rectified flow
(Liu et al. 2023) on teacher couplings and its one-step distillation; DMD (Yin et al. 2024); on digits also
LCM-LoRA on a LoRA-fine-tuned teacher (the concept: colour-inverted digits).

Every model is sampled through ``diffcore.sample`` (teacher at 50 / 20 / 10 steps; students at 1 / 2 / 4 steps
with their own sampler) and scored with diff-image's metrics: Frechet distance in an evaluation classifier's
feature space, class accuracy (digits) or one- / two-object caption adherence (shapes), sampling wall time.

    uv run python benchmarks/few_step/few_step.py --quick                            # CPU, tiny, both data sets
    uv run python benchmarks/few_step/few_step.py --device cuda                      # digits (one H100 call)
    uv run python benchmarks/few_step/few_step.py --skip-digits --shapes-teacher DIR # shapes only, a saved teacher

Writes ``benchmarks/results/few_step-<device>.json`` (``--out``; ``--quick``: ``few_step-quick-cpu.json``)
with one document per data set (a data set not rerun keeps its previous document) and prints the tables.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

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
    add_lcm_lora,
    couplings_loader,
    distill_progressively,
    dmd_optimizer,
    generate_couplings,
    one_step_distillation,
    straightness,
)
from diffcore.nn.lora import add_lora, find_lora_targets, set_adapters
from diffcore.paths.denoiser import Denoiser, DenoiserBase
from diffcore.pretrained import WEIGHTS_NAME, PretrainedModel, atomic_save_safetensors
from diffcore.training import TrainConfig, Trainer, saves_itself
from safetensors.torch import load_file
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: the shared helpers
from results_io import result_path, write_result

SCHEDULE = "rectified-flow"
TEACHER_STEPS = (50, 20, 10)
STUDENT_STEPS = (1, 2, 4)
NUM_CLASSES = 10
TRAIN_SEED = [0]
"""The students' training seed (initialisation of from-scratch students, data order, objective draws); the
seeds runner (``few_step_seeds.py``) sets ``TRAIN_SEED[0]``. The evaluation noise does not depend on it."""


@dataclass
class Settings:
    """Sizes of one data set's run. ``full`` fits one H100 call; ``quick`` runs in a couple of CPU minutes.

    ``*_steps`` are optimizer steps; ``student_seconds`` (when set) caps each student's training time
    (``TrainConfig.max_seconds``), so a run's length is bounded whatever the device's speed.
    ``lcm_guidance``: LCM's training range of ``w``; ``guidance_grid``: scales tried for the teacher's best ``w``.
    ``ict_distance``/``ict_lr``/``ict_warmup``: iCT's distance, learning rate and warmup steps (squared L2: at
    the digits' 64 dimensions pseudo-Huber's small ``c`` makes the loss an unsquared norm whose minimiser is a
    median, see :class:`diffcore.distill.ConsistencyTraining`; on CPU, 800 steps, FD 30.9 -> 16.6 at 1 step
    with lr 2e-3 and 100 warmup steps, against 41.3 for the paper's recipe).
    """

    teacher_steps: int = 3000
    width: int = 128
    depth: int = 4
    batch: int = 128
    lr: float = 1e-4
    scratch_lr: float = 1e-3
    ict_distance: str = "l2"
    ict_lr: float = 2e-3
    ict_warmup: int = 100
    pd_round_steps: int = 250
    cd_steps: int = 1000
    ict_steps: int = 2000
    ect_steps: int = 2000
    lcm_steps: int = 1000
    reflow_pairs: int = 8192
    reflow_steps: int = 1000
    one_step_steps: int = 400
    dmd_steps: int = 800
    concept_steps: int = 300
    lcm_lora_steps: int = 800
    num_eval: int = 2000
    lcm_guidance: tuple[float, float] = (1.0, 3.0)
    guidance_grid: tuple[float, ...] = (1.5, 2.0, 3.0)
    guidance_max: float = 8.0
    student_seconds: float | None = None
    mixed_precision: str = "no"
    device: str = "cuda"

    @classmethod
    def quick(cls) -> Settings:
        return cls(teacher_steps=100, width=32, depth=2, batch=64, pd_round_steps=15, cd_steps=30,
                   ict_steps=30, ect_steps=30, lcm_steps=30, reflow_pairs=256, reflow_steps=30, one_step_steps=15,
                   dmd_steps=20, concept_steps=40, lcm_lora_steps=30, num_eval=200, device="cpu")  # fmt: skip

    def scaled(self, factor: float) -> Settings:
        """Every ``*_steps`` count multiplied by ``factor`` (at least 1)."""
        if factor <= 0:
            raise ValueError(f"factor: expected a positive step scale, got {factor}")
        return replace(self, **{f.name: max(1, round(getattr(self, f.name) * factor))
                                for f in fields(self) if f.name.endswith("_steps")})  # fmt: skip


@dataclass
class Row:
    """One table row, per number of steps: Frechet distance, sampling seconds and the data set's own scores
    (``accuracy``: digits class accuracy; ``adherence_one_object`` / ``adherence_two_object``: shapes)."""

    frechet: dict[str, float] = field(default_factory=dict)
    accuracy: dict[str, float] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    train_seconds: float = 0.0
    extra: dict[str, float] | None = None
    adherence_one_object: dict[str, float] = field(default_factory=dict)
    adherence_two_object: dict[str, float] = field(default_factory=dict)

    def record(self, steps: int, scores: dict[str, float], seconds: float) -> None:
        """Store ``scores`` (keys: Row field names) and ``seconds`` for ``steps``."""
        for key, value in scores.items():
            getattr(self, key)[str(steps)] = value
        self.seconds[str(steps)] = seconds

    def merge(self, other: Row) -> None:
        """Add ``other``'s per-step cells to this row."""
        for f in fields(self):
            mine = getattr(self, f.name)
            if isinstance(mine, dict) and f.name != "extra":
                mine.update(getattr(other, f.name))


Scorer = Callable[[Tensor, dict[str, Tensor]], dict[str, float]]
"""``scorer(images (N, C, H, W) in [-1, 1], cond) -> {"frechet": ..., <Row score field>: ...}``."""


@dataclass
class Task:
    """One data set's side of the benchmark: what is sampled and how it is scored.

    Args:
        name: ``"digits"`` or ``"shapes"``.
        sample_shape: ``(C, H, W)`` of the diffused tensor.
        eval_cond: network keyword arguments of the ``N`` evaluation samples (batch-first tensors).
        uncond: the null condition (batch 1) for classifier-free guidance.
        scorer: scores samples drawn for ``eval_cond``.
        random_cond: ``random_cond(n, generator)``: conditions of ``n`` training-like samples (couplings).
        floor: the Frechet distance between two real sets (the floor of the measure).
        score_names: the Row score fields this task fills, for the table.
    """

    name: str
    sample_shape: tuple[int, ...]
    eval_cond: dict[str, Tensor]
    uncond: dict[str, Tensor]
    scorer: Scorer
    random_cond: Callable[[int, torch.Generator], dict[str, Tensor]]
    floor: float
    score_names: tuple[str, ...]

    @property
    def num_eval(self) -> int:
        return next(iter(self.eval_cond.values())).shape[0]


# ---------------------------------------------------------------------------------------------- sampling / eval


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _slice(cond: dict[str, Tensor], n: int) -> dict[str, Tensor]:
    return {k: v[:n] for k, v in cond.items()}


@torch.no_grad()
def draw(
    den: DenoiserBase,
    sampler: str,
    steps: int,
    cond: dict[str, Tensor],
    shape: tuple[int, ...],
    seed: int = 0,
    **options: Any,
) -> tuple[Tensor, float]:
    """``(images (N, *shape) in [-1, 1], seconds)``: ``steps``-step samples of ``sampler`` for ``cond``."""
    first = next(iter(cond.values()))
    device = first.device
    gen = torch.Generator(device=device).manual_seed(seed)
    noise = torch.randn((first.shape[0], *shape), generator=gen, device=device)
    _sync(device)
    start = time.perf_counter()
    x = diffcore.sample(den, noise, sampler, steps, cond=cond, generator=gen, **options)
    _sync(device)
    return x.clamp(-1.0, 1.0), time.perf_counter() - start


def evaluate(
    den: DenoiserBase,
    sampler: str,
    steps: tuple[int, ...],
    task: Task,
    w: float | None = None,
    **options: Any,
) -> Row:
    """Score ``den`` sampled with ``sampler`` at each number of ``steps`` on ``task``'s evaluation set.
    ``w``: the guidance scale given to a w-conditioned student (``cond["w"]``)."""
    cond = dict(task.eval_cond)
    if w is not None:
        first = next(iter(cond.values()))
        cond["w"] = torch.full((first.shape[0],), float(w), device=first.device)
    row = Row()
    for k in steps:
        draw(den, sampler, k, _slice(cond, 8), task.sample_shape, **options)  # warm-up before timing
        images, seconds = draw(den, sampler, k, cond, task.sample_shape, **options)
        row.record(k, task.scorer(images, task.eval_cond), seconds)
    return row


# ---------------------------------------------------------------------------------------------- models


def fresh_copy(model: nn.Module) -> nn.Module:
    """A trainable deep copy (students start from the teacher's weights); a frozen text encoder stays frozen."""
    out = copy.deepcopy(model).train().requires_grad_(True)
    if getattr(out, "text_encoder", None) is not None and not getattr(out, "train_text_encoder", True):
        out.text_encoder.requires_grad_(False)
    return out


def _backbone_swap(model: nn.Module, make: Callable[[PretrainedModel], nn.Module]) -> nn.Module:
    """``make(backbone)`` for a backbone, or a trainable copy of a wrapper (``.backbone``, e.g. a
    text-conditioned model) holding ``make(wrapper.backbone)``; ``make`` builds a new (trainable) module."""
    if isinstance(model, PretrainedModel):
        return make(model)
    inner = getattr(model, "backbone", None)
    if not isinstance(inner, PretrainedModel):
        raise TypeError(
            f"model: expected a PretrainedModel or a wrapper with one as .backbone, got {type(model)}"
        )
    out = copy.copy(model)
    out._modules = dict(model._modules)
    out._modules["backbone"] = make(inner)
    return fresh_copy(out)


def reinitialised(model: nn.Module) -> nn.Module:
    """A fresh, randomly initialised network of ``model``'s configuration (a wrapper keeps its other parts)."""
    device = next(model.parameters()).device

    def make(net: PretrainedModel) -> nn.Module:
        torch.manual_seed(TRAIN_SEED[0])
        return type(net)(copy.deepcopy(net.config)).to(device)

    return _backbone_swap(model, make)


def with_guidance_input(model: nn.Module, guidance_max: float) -> nn.Module:
    """A copy of ``model`` whose backbone takes the guidance scale ``w`` (``guidance_embed``, LCM Sec. 4.2);
    the new embedding's output starts at zero, so the copy starts as ``model`` at every ``w``."""
    device = next(model.parameters()).device

    def make(net: PretrainedModel) -> nn.Module:
        if not hasattr(net.config, "guidance_embed"):
            raise TypeError(f"model: {type(net).__name__} has no guidance_embed option")
        student = type(net)(replace(net.config, guidance_embed=True, guidance_max=guidance_max)).to(device)
        missing, unexpected = student.load_state_dict(net.state_dict(), strict=False)
        if unexpected or any(not k.startswith("w_embedder.") for k in missing):
            raise RuntimeError(f"guidance student: unexpected state mismatch {missing}, {unexpected}")
        return student

    return _backbone_swap(model, make)


def save_model(model: nn.Module, directory: Path) -> Path:
    """``save_pretrained`` (a backbone, or a wrapper that saves its parts, e.g. diff-image's
    ``TextConditionedModel``); any other module's whole state as ``model.safetensors``."""
    if saves_itself(model):
        return model.save_pretrained(directory)
    directory.mkdir(parents=True, exist_ok=True)
    atomic_save_safetensors(model.state_dict(), directory / WEIGHTS_NAME, metadata={"format": "pt"})
    return directory


def load_model(template: nn.Module, directory: Path) -> nn.Module:
    """The model saved in ``directory`` (by the Trainer or :func:`save_model`), in eval mode on the template's
    device: ``from_pretrained`` of the template's class where it has one, else ``template``'s structure with
    the saved weights."""
    device = next(template.parameters()).device
    if saves_itself(template):  # saved by save_pretrained (Trainer and save_model alike)
        return type(template).from_pretrained(directory, device=device).eval()
    out = copy.deepcopy(template)
    out.load_state_dict(load_file(str(directory / WEIGHTS_NAME), device=str(device)))
    return out.eval()


# ---------------------------------------------------------------------------------------------- training


def train_config(
    out: Path, name: str, steps: int, settings: Settings, lr: float | None = None, warmup_steps: int = 0
) -> TrainConfig:
    """A quiet TrainConfig for one student (no EMA: the distillation targets are the raw weights)."""
    return TrainConfig(
        steps=steps, lr=lr or settings.lr, warmup_steps=min(warmup_steps, steps // 2), ema_decay=None,
        checkpoint_every=None, tensorboard=False,
        progress_bar=False, output_dir=str(out / name), log_every=max(steps // 4, 1), max_grad_norm=1.0,
        device="cpu" if settings.device == "cpu" else "auto", seed=TRAIN_SEED[0],
        max_seconds=settings.student_seconds,
        mixed_precision=settings.mixed_precision,
    )  # fmt: skip


def _fit(model: nn.Module, objective: Callable, loader: DataLoader, config: TrainConfig, **kw: Any) -> float:
    start = time.perf_counter()
    Trainer(model, objective, loader, config, **kw).fit()
    return time.perf_counter() - start


# ---------------------------------------------------------------------------------------------- methods


@dataclass
class Context:
    """What every method needs.

    ``teacher``: the denoiser the students distil (the GUIDED teacher when the teacher samples with CFG);
    ``conditional``: the plain conditional teacher (LCM applies guidance itself, at its drawn ``w``);
    ``teacher_net``: the network students are copied from; ``teacher_guidance``: the teacher's sampling scale.
    """

    teacher_net: nn.Module
    teacher: DenoiserBase
    conditional: Denoiser
    teacher_guidance: float
    loader: DataLoader
    task: Task
    settings: Settings
    out: Path
    straightness: dict[str, Any] | None = None

    @property
    def device(self) -> torch.device:
        return next(self.teacher_net.parameters()).device


def progressive(ctx: Context) -> Row:
    """Four rounds from 16 teacher DDIM steps; the 4-, 2- and 1-step students sampled with DDIM. Each round
    gets half of ``settings.student_seconds`` when that is set."""
    s = ctx.settings
    student = fresh_copy(ctx.teacher_net)
    start = time.perf_counter()
    config = train_config(ctx.out, "progressive", s.pd_round_steps, s)
    if s.student_seconds is not None:
        config = replace(config, max_seconds=s.student_seconds / 2)
    rounds = distill_progressively(
        student, ctx.teacher, ctx.loader, config, teacher_steps=16, rounds=4, prediction="velocity"
    )
    row = Row(train_seconds=time.perf_counter() - start)
    for r in rounds:
        if r.student_steps in STUDENT_STEPS:
            net = load_model(ctx.teacher_net, r.model_dir)
            row.merge(evaluate(Denoiser(net, SCHEDULE, "velocity"), "ddim", (r.student_steps,), ctx.task))
    return row


def _consistency(
    ctx: Context,
    name: str,
    objective,
    net: nn.Module,
    steps: int,
    sampler: str,
    lr: float | None = None,
    guidances: tuple[float | None, ...] = (None,),
    warmup_steps: int = 0,
) -> list[Row]:
    config = train_config(ctx.out, name, steps, ctx.settings, lr, warmup_steps)
    train_s = _fit(net, objective, ctx.loader, config, callbacks=[ConsistencyCallback(objective)])
    saved = load_model(net, Path(config.output_dir) / "model")
    den = objective.parameterization.denoiser(saved)
    rows = []
    for w in guidances:
        row = evaluate(den, sampler, STUDENT_STEPS, ctx.task, w=w, t_start=objective.t_max)
        row.train_seconds = train_s
        rows.append(row)
    return rows


def consistency_distillation(ctx: Context) -> Row:
    param = ConsistencyParameterization(SCHEDULE, "velocity")
    obj = ConsistencyDistillation(param, teacher=ctx.teacher, num_points=18, solver="heun")
    return _consistency(ctx, "cd", obj, fresh_copy(ctx.teacher_net), ctx.settings.cd_steps, "consistency")[0]


def consistency_training(ctx: Context) -> Row:
    """iCT from scratch (no teacher): a fresh network of the teacher's configuration (a text-conditioned
    teacher's trained text encoder is kept, frozen)."""
    param = ConsistencyParameterization(SCHEDULE, "x0")
    settings = ctx.settings
    obj = ConsistencyTraining(param, distance=settings.ict_distance)  # curriculum length: the Trainer run's
    net = reinitialised(ctx.teacher_net)
    return _consistency(
        ctx,
        "ict",
        obj,
        net,
        settings.ict_steps,
        "consistency",
        settings.ict_lr,
        warmup_steps=settings.ict_warmup,
    )[0]


def ect(ctx: Context) -> Row:
    """ECT (Geng et al. 2024) from scratch: a fresh network of the teacher's configuration trained on the data
    alone, its first half diffusion training, then three gap-halving stages (continuous time)."""
    settings = ctx.settings
    param = ConsistencyParameterization(SCHEDULE, "x0")
    obj = EasyConsistencyTraining(param, distance=settings.ict_distance)
    net = reinitialised(ctx.teacher_net)
    return _consistency(
        ctx,
        "ect",
        obj,
        net,
        settings.ect_steps,
        "consistency",
        settings.ict_lr,
        warmup_steps=settings.ict_warmup,
    )[0]


def lcm(ctx: Context, guidances: tuple[float, ...]) -> list[Row]:
    """LCM with guidance-scale conditioning (Luo et al. 2023, Sec. 4.2): the student's backbone gets the
    ``w`` input, ``w ~ U(settings.lcm_guidance)`` guides the conditional teacher's DDIM step on a 50-point
    discretisation with skipping step 5; one row per sampling scale in ``guidances``."""
    s = ctx.settings
    param = ConsistencyParameterization(SCHEDULE, "velocity")
    obj = LatentConsistencyDistillation(
        param, teacher=ctx.conditional, uncond=ctx.task.uncond, guidance_range=s.lcm_guidance, guidance_key="w",
        num_points=50, skip=5, solver="ddim",
    )  # fmt: skip
    student = with_guidance_input(ctx.teacher_net, s.guidance_max)
    return _consistency(ctx, "lcm", obj, student, s.lcm_steps, "lcm", guidances=guidances)


def couplings(ctx: Context, den: DenoiserBase, n: int, seed: int) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
    """``(x0, noise, cond)``: ``n`` end points of ``den``'s ODE (Heun, 32 steps) from fresh noise."""
    gen = torch.Generator(device=ctx.device).manual_seed(seed)
    z = torch.randn((n, *ctx.task.sample_shape), generator=gen, device=ctx.device)
    cond = ctx.task.random_cond(n, gen)
    # bf16 where the students train in bf16 (shapes on a GPU): the couplings are the bulk of reflow's cost
    fast = ctx.device.type == "cuda" and ctx.settings.mixed_precision == "bf16"
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=fast):
        x0 = generate_couplings(den, z, "heun", 32, cond=cond, batch_size=1024)
    return x0.float(), z, cond


def reflow(ctx: Context) -> tuple[Row, Row, dict[str, Any]]:
    """2-rectified flow on teacher couplings (Euler), its one-step distillation, and the straightness."""
    s = ctx.settings
    start = time.perf_counter()
    x0, z, cond = couplings(ctx, ctx.teacher, s.reflow_pairs, seed=11)
    rf2 = fresh_copy(ctx.teacher_net)
    train_s = _fit(rf2, CoupledFlowMatching(SCHEDULE), couplings_loader(x0, z, s.batch, cond),
                   train_config(ctx.out, "reflow", s.reflow_steps, s))  # fmt: skip
    rf2_den = Denoiser(rf2.eval(), SCHEDULE, "velocity")
    row2 = evaluate(rf2_den, "euler", STUDENT_STEPS, ctx.task)
    row2.train_seconds = train_s
    x1, z1, cond1 = couplings(ctx, rf2_den, s.reflow_pairs, seed=12)
    one = fresh_copy(rf2)
    train_s = _fit(one, one_step_distillation(SCHEDULE), couplings_loader(x1, z1, s.batch, cond1),
                   train_config(ctx.out, "reflow-distill", s.one_step_steps, s))  # fmt: skip
    row1 = evaluate(Denoiser(one.eval(), SCHEDULE, "velocity"), "euler", STUDENT_STEPS, ctx.task)
    row1.train_seconds = train_s + row2.train_seconds
    probe = _slice(ctx.task.eval_cond, 500)
    n = next(iter(probe.values())).shape[0]
    noise = torch.randn((n, *ctx.task.sample_shape), generator=torch.Generator(device=ctx.device).manual_seed(3),
                        device=ctx.device)  # fmt: skip
    lines = {
        "teacher (1-rectified flow)": asdict(straightness(ctx.teacher, noise, 32, probe)),
        "2-rectified flow": asdict(straightness(rf2_den, noise, 32, probe)),
        "seconds_with_couplings": time.perf_counter() - start,
    }
    return row2, row1, {"straightness": lines, "pairs": (x0, z, cond)}


def dmd(ctx: Context, pairs: tuple[Tensor, Tensor, dict[str, Tensor]]) -> Row:
    """DMD: generator and fake score both start from the teacher; regression on the teacher's couplings."""
    s = ctx.settings
    x0, z, cond = pairs
    model = DMDModel(fresh_copy(ctx.teacher_net), fresh_copy(ctx.teacher_net))
    obj = DistributionMatchingDistillation(ctx.teacher, "velocity", "velocity")
    config = train_config(ctx.out, "dmd", s.dmd_steps, s)
    train_s = _fit(model, obj, couplings_loader(x0, z, s.batch, cond), config,
                   optimizer=dmd_optimizer(model, s.lr))  # fmt: skip
    directory = save_model(model.generator, Path(config.output_dir) / "generator")
    saved = load_model(ctx.teacher_net, directory)
    row = evaluate(obj.generator_denoiser(saved), "consistency", STUDENT_STEPS, ctx.task)
    row.train_seconds = train_s
    return row


def dmd2(ctx: Context, pairs: tuple[Tensor, Tensor, dict[str, Tensor]]) -> Row:
    """DMD2: generator and fake score from the teacher, backward simulation for 1 / 2 / 4 steps, two time scales
    through the fake network's 5x learning rate; regression on the couplings kept at t = 1 (no GAN)."""
    s = ctx.settings
    x0, z, cond = pairs
    model = DMDModel(fresh_copy(ctx.teacher_net), fresh_copy(ctx.teacher_net))
    obj = DistributionMatchingDistillation(ctx.teacher, "velocity", "velocity", student_steps=STUDENT_STEPS)
    return _generator_row(ctx, "dmd2", model, obj, couplings_loader(x0, z, s.batch, cond), s.dmd_steps)


def emd(ctx: Context, pairs: tuple[Tensor, Tensor, dict[str, Tensor]]) -> Row:
    """EM distillation: generator and fake score from the teacher, 4 Langevin steps on eps per update."""
    s = ctx.settings
    x0, z, cond = pairs
    model = DMDModel(fresh_copy(ctx.teacher_net), fresh_copy(ctx.teacher_net))
    obj = EMDistillation(ctx.teacher, "velocity", "velocity", langevin_steps=4)
    return _generator_row(ctx, "emd", model, obj, couplings_loader(x0, z, s.batch, cond), s.dmd_steps)


def _generator_row(ctx: Context, name: str, model: DMDModel, obj, loader: DataLoader, steps: int) -> Row:
    config = train_config(ctx.out, name, steps, ctx.settings)
    train_s = _fit(model, obj, loader, config, optimizer=dmd_optimizer(model, ctx.settings.lr))
    directory = save_model(model.generator, Path(config.output_dir) / "generator")
    saved = load_model(ctx.teacher_net, directory)
    row = evaluate(obj.generator_denoiser(saved), "consistency", STUDENT_STEPS, ctx.task)
    row.train_seconds = train_s
    return row


def best_guidance(ctx: Context, sampler: str, steps: int) -> tuple[float, dict[str, float]]:
    """The teacher's guidance scale of lowest Frechet distance among ``1`` and ``settings.guidance_grid``
    (``steps`` steps of ``sampler``, noise seed 7, not the table's), and the distance at each scale."""
    from diffcore.guidance.wrappers import ClassifierFreeGuidance

    fds: dict[str, float] = {}
    for w in (1.0, *ctx.settings.guidance_grid):
        den = ctx.conditional if w == 1.0 else ClassifierFreeGuidance(ctx.conditional, w, ctx.task.uncond)
        images, _ = draw(den, sampler, steps, ctx.task.eval_cond, ctx.task.sample_shape, seed=7)
        fds[f"{w:g}"] = ctx.task.scorer(images, ctx.task.eval_cond)["frechet"]
    best = min(fds, key=fds.get)
    return float(best), fds


# ---------------------------------------------------------------------------------------------- digits


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

    def __call__(self, images: Tensor, cond: dict[str, Tensor]) -> dict[str, float]:
        from diff_image.metrics import classifier_accuracy, extract_features, frechet_distance

        images = images.cpu().float()
        fd = frechet_distance(extract_features(self.clf, images), self.test)
        return {"frechet": fd, "accuracy": classifier_accuracy(self.clf, images, cond["y"].cpu())}


def train_digits_teacher(out: Path, settings: Settings):
    """The digits teacher: ``diff_image.pipeline.train`` of a class-conditional DiT on the rectified-flow path."""
    from diff_image.config import ImageDataConfig, ImageModelConfig, ImageTrainConfig
    from diff_image.pipeline import train

    steps = settings.teacher_steps
    cfg = ImageTrainConfig(
        model=ImageModelConfig(backbone="dit", conditioning="class", width=settings.width, depth=settings.depth,
                               heads=4, patch_size=2),
        data=ImageDataConfig(dataset="digits", image_size=8), objective="rectified_flow", cond_dropout=0.1,
        batch_size=128,
        train=replace(ImageTrainConfig().train, steps=steps, lr=2e-3, warmup_steps=min(100, steps - 1),
                      ema_decay=0.995, output_dir=str(out / "teacher"), seed=0,
                      device="cpu" if torch.device(settings.device).type == "cpu" else "auto"),
    )  # fmt: skip
    return train(cfg)


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
    s, task = ctx.settings, ctx.task
    targets = find_lora_targets(ctx.teacher_net)
    tuned = add_lora(copy.deepcopy(ctx.teacher_net), rank=8, target_modules=targets, adapter_name="concept")
    from diffcore.training import objectives

    concept_loader = digits_loader(_Inverted.apply(images), labels, s.batch)
    train_s = _fit(tuned, objectives.flow_matching(), concept_loader,
                   train_config(ctx.out, "concept-lora", s.concept_steps, s, lr=1e-3))  # fmt: skip
    base = add_lcm_lora(copy.deepcopy(ctx.teacher_net), rank=16, target_modules=targets)
    param = ConsistencyParameterization(SCHEDULE, "velocity")
    obj = LatentConsistencyDistillation(param, teacher=ctx.conditional, guidance_range=(1.0, 1.0),
                                        guidance_key=None, num_points=50, skip=5)  # fmt: skip
    train_s += _fit(base, obj, ctx.loader, train_config(ctx.out, "lcm-lora", s.lcm_lora_steps, s, lr=1e-3),
                    callbacks=[ConsistencyCallback(obj)])  # fmt: skip
    # Both adapters on one network: the concept adapter's weights copied next to the LCM adapter.
    combined = base
    add_lora(combined, rank=8, target_modules=targets, adapter_name="concept")
    concept_state = {k: v for k, v in tuned.state_dict().items() if ".concept." in k}
    combined.load_state_dict(concept_state, strict=False)
    set_adapters(combined, ["lcm", "concept"])
    combined.eval()
    row = evaluate(param.denoiser(combined), "lcm", STUDENT_STEPS, task, t_start=obj.t_max)
    row.train_seconds = train_s
    cond, shape = task.eval_cond, task.sample_shape
    four, _ = draw(param.denoiser(combined), "lcm", 4, cond, shape, t_start=obj.t_max)
    teacher50, _ = draw(Denoiser(tuned.eval(), SCHEDULE, "velocity"), "dpmpp_2m", 50, cond, shape)
    base4, _ = draw(param.denoiser(_only(base, "lcm")), "lcm", 4, cond, shape, t_start=obj.t_max)
    row.extra = {
        "concept_rate_tuned_teacher_50": float(_Inverted.present(teacher50).float().mean()),
        "concept_rate_lcm_lora_plus_concept_4": float(_Inverted.present(four).float().mean()),
        "concept_rate_lcm_lora_alone_4": float(_Inverted.present(base4).float().mean()),
        # accuracy of the 4-step concept samples read back through the inversion
        "concept_class_accuracy_4": task.scorer(_Inverted.apply(four), cond)["accuracy"],
    }
    return row


def _only(model: nn.Module, name: str) -> nn.Module:
    set_adapters(model, [name])
    return model


def digits_context(settings: Settings, out: Path, teacher_dir: str | None) -> tuple[Context, float]:
    """The digits teacher (trained, or loaded from ``teacher_dir``), its data and evaluation task."""
    from diff_image.data import DigitsDataset
    from diff_image.pipeline import ImagePipeline

    device = torch.device(settings.device)
    torch.manual_seed(0)
    start = time.perf_counter()
    pipe = (
        ImagePipeline.from_pretrained(teacher_dir, device=device)
        if teacher_dir
        else train_digits_teacher(out, settings)
    )
    if pipe.schedule != SCHEDULE or pipe.prediction != "velocity" or pipe.num_classes != NUM_CLASSES:
        raise ValueError(
            f"digits teacher: expected a rectified-flow velocity model of 10 classes, got {pipe.schedule}, "
            f"{pipe.prediction}, {pipe.num_classes} classes"
        )
    teacher_s = time.perf_counter() - start
    net = pipe.model.to(device).eval().requires_grad_(False)
    train = DigitsDataset("train", 8)
    images, labels = train.images.to(device), train.labels.to(device)
    scorer = DigitsScorer()

    def random_cond(n: int, gen: torch.Generator) -> dict[str, Tensor]:
        return {"y": torch.randint(0, NUM_CLASSES, (n,), generator=gen, device=device)}

    task = Task(
        "digits", (1, 8, 8), {"y": torch.arange(settings.num_eval, device=device) % NUM_CLASSES},
        {"y": torch.tensor([NUM_CLASSES], device=device)}, scorer, random_cond, scorer.floor, ("accuracy",),
    )  # fmt: skip
    den = Denoiser(net, SCHEDULE, "velocity")
    ctx = Context(net, den, den, 1.0, digits_loader(images, labels, settings.batch), task, settings, out)
    return ctx, teacher_s


def run_digits(settings: Settings, out: Path, teacher_dir: str | None) -> dict[str, Any]:
    """Every digits row; the teacher samples without guidance, LCM at ``w = 1`` and the teacher's best ``w``."""
    start = time.perf_counter()
    ctx, teacher_s = digits_context(settings, out, teacher_dir)
    log(f"digits teacher ready ({teacher_s:.0f} s)")
    rows: dict[str, Row] = LoggedRows()
    rows["teacher (dpmpp_2m)"] = evaluate(ctx.teacher, "dpmpp_2m", TEACHER_STEPS, ctx.task)
    rows["teacher (dpmpp_2m)"].train_seconds = teacher_s
    rows["teacher (euler)"] = evaluate(ctx.teacher, "euler", STUDENT_STEPS, ctx.task)
    w_best, w_fds = best_guidance(ctx, "dpmpp_2m", 20)
    log(f"digits teacher's best guidance scale {w_best:g} (FD by scale {w_fds})")
    method_rows(ctx, rows, start, lcm_scales=(1.0, w_best))
    train = ctx.loader.dataset.tensors
    rows["LCM-LoRA + concept LoRA (lcm)"] = lcm_lora_concept(ctx, *train)
    log(f"lcm_lora_concept done ({time.perf_counter() - start:.0f} s)")
    doc = summarise("digits", rows, ctx, time.perf_counter() - start)
    doc["teacher_guidance"] = {"best": w_best, "frechet_by_scale_20_steps": w_fds, "rows_sampled_at": 1.0}
    return doc


# ---------------------------------------------------------------------------------------------- shared run


def method_rows(ctx: Context, rows: dict[str, Row], start: float, lcm_scales: tuple[float, ...]) -> None:
    """The student rows common to every data set, added to ``rows`` (each logged as it is measured)."""

    def done(name: str) -> None:
        log(f"{ctx.task.name}: {name} done ({time.perf_counter() - start:.0f} s)")

    rows["progressive distillation (ddim)"] = progressive(ctx)
    done("progressive")
    rows["consistency distillation (consistency)"] = consistency_distillation(ctx)
    done("consistency distillation")
    rows["consistency training, iCT (consistency)"] = consistency_training(ctx)
    done("iCT")
    rows["consistency training, ECT (consistency)"] = ect(ctx)
    done("ECT")
    lo, hi = ctx.settings.lcm_guidance
    scales = tuple(dict.fromkeys(lcm_scales))
    for w, row in zip(scales, lcm(ctx, scales)):
        rows[f"LCM, w-conditioned on [{lo:g}, {hi:g}], sampled at w={w:g} (lcm)"] = row
    done("LCM")
    rf2, rf1, extra = reflow(ctx)
    rows["2-rectified flow (euler)"] = rf2
    rows["2-rectified flow + 1-step distillation (euler)"] = rf1
    done("reflow")
    rows["DMD (consistency)"] = dmd(ctx, extra["pairs"])
    done("DMD")
    rows["DMD2, backward simulation (consistency)"] = dmd2(ctx, extra["pairs"])
    done("DMD2")
    rows["EMD, 4 Langevin steps (consistency)"] = emd(ctx, extra["pairs"])
    done("EMD")
    ctx.straightness = extra["straightness"]


def log(message: str) -> None:
    print(f"[few_step] {message}", flush=True)


class LoggedRows(dict):
    """The table's rows; each row is printed as it is added, so a run cut short still shows what it measured."""

    def __setitem__(self, name: str, row: Row) -> None:
        super().__setitem__(name, row)
        cells = "; ".join(
            f"{k} steps FD {v:.3f} " + " ".join(f"{s} {d[k]:.3f}" for s, d in _scores(row).items() if k in d)
            for k, v in row.frechet.items()
        )
        log(f"row {name}: {cells}")


def _scores(row: Row) -> dict[str, dict[str, float]]:
    names = ("accuracy", "adherence_one_object", "adherence_two_object")
    return {n: getattr(row, n) for n in names if getattr(row, n)}


def summarise(dataset: str, rows: dict[str, Row], ctx: Context, wall: float) -> dict[str, Any]:
    """One data set's JSON document: rows, the Frechet floor, straightness, and the two targets checked."""
    teacher_name = next(k for k in rows if k.startswith("teacher"))
    teacher50 = rows[teacher_name].frechet["50"]
    students = {k: r for k, r in rows.items() if not k.startswith("teacher") and "concept" not in k}

    def best(steps: str) -> dict[str, Any]:
        name = min(students, key=lambda k: students[k].frechet.get(steps, float("inf")))
        fd = students[name].frechet[steps]
        bound = 1.25 if steps == "4" else 2.0
        return {"method": name, "frechet": fd, "ratio": fd / teacher50, "bound": bound,
                "met": fd <= bound * teacher50}  # fmt: skip

    return {
        "dataset": dataset,
        "rows": {k: asdict(r) for k, r in rows.items()},
        "frechet_train_test_floor": ctx.task.floor,
        "straightness": ctx.straightness,
        "targets": {"teacher_50_frechet": teacher50, "best_4_step": best("4"), "best_1_step": best("1")},
        "settings": asdict(ctx.settings),
        "wall_seconds": wall,
        "device": torch.cuda.get_device_name() if ctx.settings.device.startswith("cuda") else "cpu",
    }


def table(result: dict[str, Any]) -> str:
    """A markdown table of one data set's document (Frechet distance / scores / sampling seconds)."""
    cols = [str(k) for k in TEACHER_STEPS + STUDENT_STEPS[::-1]]
    first = next(iter(result["rows"].values()))
    names = [n for n in ("accuracy", "adherence_one_object", "adherence_two_object") if first.get(n)]
    short = {"accuracy": "acc", "adherence_one_object": "adh1", "adherence_two_object": "adh2"}
    head = " / ".join(["FD"] + [short[n] for n in names] + ["s"])
    lines = ["| method (sampler) | " + " | ".join(f"{c} steps: {head}" for c in cols) + " | train s |",
             "| --- |" + " --- |" * (len(cols) + 1)]  # fmt: skip
    for name, r in result["rows"].items():
        cells = [
            " / ".join(
                [f"{r['frechet'][c]:.3f}"] + [f"{r[n][c]:.3f}" for n in names] + [f"{r['seconds'][c]:.2f}"]
            )
            if c in r["frechet"]
            else "-"
            for c in cols
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {r['train_seconds']:.0f} |")
    return "\n".join(lines)


def _previous(path: Path) -> dict[str, Any]:
    """The documents already in ``path`` by data set (an older single-data-set file counts as digits)."""
    if not path.is_file():
        return {}
    old = json.loads(path.read_text())
    if "dataset" in old:
        return {old["dataset"]: old}
    return {k: v for k, v in old.items() if isinstance(v, dict) and "rows" in v}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="tiny CPU run of digits and shapes (checks the script)"
    )
    parser.add_argument("--device", default=None, help="cuda or cpu (default: cuda if available)")
    parser.add_argument("--digits-teacher", default=None, help="a saved digits ImagePipeline to distil")
    parser.add_argument("--skip-digits", action="store_true", help="run only the shapes part")
    parser.add_argument("--shapes", action="store_true", help="also run the shapes part (implied by --quick)")
    parser.add_argument("--shapes-teacher", default=None, help="a saved shapes ImagePipeline to distil")
    parser.add_argument(
        "--shapes-teacher-only", action="store_true",
        help="train the shapes teacher into WORKDIR/full/shapes/teacher and stop (then distil it with --shapes-teacher)",
    )  # fmt: skip
    parser.add_argument(
        "--shapes-teacher-seconds",
        type=float,
        default=None,
        help="training budget of the shapes teacher trained in the run (default 285 s on a GPU, 0 = a fixed step count in --quick)",
    )
    parser.add_argument(
        "--out",
        default=None,
        help="JSON path (default benchmarks/results/few_step-<device>.json; --quick: few_step-quick-cpu.json)",
    )
    parser.add_argument(
        "--shapes-guidance", type=float, default=None,
        help="CFG scale of the shapes teacher (default 6, diff-image's choice on validation captions)",
    )  # fmt: skip
    parser.add_argument("--workdir", default=None, help="where models are saved (default: a new temp folder)")
    parser.add_argument(
        "--step-scale",
        type=float,
        default=1.0,
        help="multiply every digits training step count (teacher and students) by this factor",
    )
    parser.add_argument("--shapes-step-scale", type=float, default=1.0,
                        help="multiply every shapes student's step count and time budget by this factor")  # fmt: skip
    args = parser.parse_args()
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if args.quick:
        # The quick models are tiny: intra-op threads gain nothing, and on a shared CPU OpenMP's spinning
        # workers made the run ~10x slower (measured: 571 s with the default 2 threads, 1 thread below).
        torch.set_num_threads(1)
    if device.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    out_path = Path(args.out or result_path("few_step", "quick" if args.quick else None, device))
    if args.quick and "quick" not in out_path.name:
        parser.error(f"--out: quick numbers go to a file named *quick*, not {out_path.name}")
    if args.shapes_teacher_only and (args.shapes_teacher or not args.skip_digits):
        parser.error(
            "--shapes-teacher-only: trains a new teacher alone; pass --skip-digits and no --shapes-teacher"
        )
    shapes = args.quick or args.shapes or args.shapes_teacher is not None or args.skip_digits
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="few_step_")) / ("quick" if args.quick else "full")
    docs = _previous(out_path)
    start = time.perf_counter()
    if not args.skip_digits:
        settings = replace(Settings.quick() if args.quick else Settings(), device=device)
        if args.step_scale != 1.0:
            settings = settings.scaled(args.step_scale)
        docs["digits"] = run_digits(settings, workdir / "digits", args.digits_teacher)
        docs["digits"]["quick"] = args.quick
        _write(out_path, docs, args.quick, device)
    if shapes:
        sys.modules.setdefault("few_step", sys.modules[__name__])  # one copy of this module's classes
        from few_step_shapes import ShapesSettings, run_shapes

        ss = replace(ShapesSettings.quick() if args.quick else ShapesSettings(), device=device)
        if args.shapes_teacher_seconds is not None:
            ss = replace(ss, teacher_seconds=args.shapes_teacher_seconds)
        if args.shapes_guidance is not None:
            if args.shapes_guidance < 1:
                parser.error(f"--shapes-guidance: expected a CFG scale >= 1, got {args.shapes_guidance}")
            lo = ss.lcm_guidance[0]
            ss = replace(ss, teacher_guidance=args.shapes_guidance,
                         lcm_guidance=(lo, max(args.shapes_guidance, lo)),
                         guidance_max=max(ss.guidance_max, args.shapes_guidance))  # fmt: skip
        if args.shapes_step_scale != 1.0:
            ss = ss.scaled(args.shapes_step_scale)
        if args.shapes_teacher_only:
            from few_step_shapes import train_teacher

            _, metrics = train_teacher(ss, workdir / "shapes" / "teacher")
            print(json.dumps(metrics, indent=2))
            print(f"teacher saved in {workdir / 'shapes' / 'teacher' / 'shapes_run' / 'pipeline'}")
            return
        docs["shapes"] = run_shapes(ss, workdir / "shapes", args.shapes_teacher)
        docs["shapes"]["quick"] = args.quick
        _write(out_path, docs, args.quick, device)
    for name, doc in docs.items():
        print(f"\n{name}:\n" + table(doc))
        print(json.dumps(doc["targets"], indent=2))
    print(f"total {time.perf_counter() - start:.0f} s; wrote {out_path}")


def _write(path: Path, docs: dict[str, Any], quick: bool, device: str) -> None:
    variant = "quick" if quick else None
    write_result(docs, script="few_step", variant=variant, device=device, packages=("diff-image",), path=path)


if __name__ == "__main__":
    main()
