"""The shapes part of ``benchmarks/few_step/few_step.py``: few-step students of diff-image's text-to-image teacher.

The teacher is diff-image's shapes model (an MMDiT with a CLIP text encoder trained from scratch, rectified
flow, velocity prediction, never shown the colour red), trained here by ``diff_image.bench.shapes_benchmark``
within ``ShapesSettings.teacher_seconds`` or loaded with ``ImagePipeline.from_pretrained``. It samples with
classifier-free guidance at scale 6 (the scale ``diff_image.bench`` chose on validation captions). Every
student except LCM distils the GUIDED teacher (guided distillation, Meng et al. 2023, "On Distillation of
Guided Diffusion Models"): its target is ``x0_u + 6 (x0_c - x0_u)``, so it samples with one forward per step and
no CFG. LCM distils the conditional teacher under a guidance scale drawn per sample and takes that scale as an
input (Luo et al. 2023, Sec. 4.2); it is sampled at ``w = 1`` and at the teacher's ``w``.

Scores (diff-image's own, offline), on ``num_per_kind`` one-object and as many two-object captions of the
evaluation seed (10 000, as ``evaluate_shapes``; red excluded):

- Frechet distance in the penultimate features of ``diff_image.metrics.shapes_classifier`` against the very
  scenes the evaluation captions were drawn from (the floor: a second set of real scenes, seed 30 000);
- caption adherence (``caption_adherence``, read from the pixels), one-object and two-object separately;
- sampling wall time of the whole evaluation set.

Run through ``benchmarks/few_step/few_step.py --shapes`` (or ``--quick``); this module has no command line of its own.
"""

from __future__ import annotations

import json
import multiprocessing as mp
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import torch
from diffcore.guidance.wrappers import ClassifierFreeGuidance
from few_step import (
    STUDENT_STEPS,
    TEACHER_STEPS,
    Context,
    LoggedRows,
    Row,
    Settings,
    Task,
    evaluate,
    log,
    method_rows,
    summarise,
)
from torch import Tensor

EVAL_CAPTION_SEED = 10_000  # evaluate_shapes' caption seed: never a training seed
FLOOR_SEED = 30_000


@dataclass
class ShapesSettings(Settings):
    """Sizes of the shapes run; the inherited student fields mean what they mean for digits.

    ``teacher_seconds > 0``: the teacher trains for as many steps as a timed calibration says fit (at most
    ``teacher_steps``); 0 trains exactly ``teacher_steps``. ``student_seconds`` caps every student's training
    (each progressive-distillation round gets half of it). ``data_length`` training scenes serve the students.
    """

    teacher_steps: int = 12_000
    teacher_seconds: float = 285.0
    width: int = 256
    depth: int = 6
    patch: int = 2
    teacher_batch: int = 256
    teacher_length: int = 60_000
    image_size: int = 32
    holdout: tuple[str, ...] = ("red",)
    teacher_guidance: float = 6.0
    teacher_sampler: str = "euler"
    data_length: int = 20_000
    num_per_kind: int = 200
    classifier_train: int = 3000
    classifier_epochs: int = 15
    adherence_workers: int = 8
    batch: int = 128
    pd_round_steps: int = 400
    cd_steps: int = 1500
    ict_steps: int = 1500
    ect_steps: int = 1500
    lcm_steps: int = 1500
    reflow_pairs: int = 2048
    reflow_steps: int = 1500
    one_step_steps: int = 1500
    dmd_steps: int = 1500
    lcm_guidance: tuple[float, float] = (1.0, 6.0)
    ict_distance: str = "pseudo-huber"  # the paper's, for 32x32x3 images (Song & Dhariwal 2023)
    ict_lr: float = 1e-3
    ict_warmup: int = 0
    student_seconds: float | None = 18.0
    mixed_precision: str = "bf16"

    @classmethod
    def quick(cls) -> ShapesSettings:
        return cls(teacher_steps=30, teacher_seconds=0.0, width=64, depth=1, patch=4, teacher_batch=16,
                   teacher_length=256, data_length=256, num_per_kind=12, classifier_train=400,
                   classifier_epochs=2, adherence_workers=0, batch=16, pd_round_steps=4, cd_steps=6, ict_steps=6, ect_steps=6, lcm_steps=6,
                   reflow_pairs=32, reflow_steps=6, one_step_steps=4, dmd_steps=4, student_seconds=None,
                   mixed_precision="no", device="cpu")  # fmt: skip

    def scaled(self, factor: float) -> ShapesSettings:
        """Every student's step count and ``student_seconds`` multiplied by ``factor`` (the teacher unchanged)."""
        if factor <= 0:
            raise ValueError(f"factor: expected a positive step scale, got {factor}")
        steps = {f.name: max(1, round(getattr(self, f.name) * factor))
                 for f in fields(self) if f.name.endswith("_steps") and f.name != "teacher_steps"}  # fmt: skip
        seconds = self.student_seconds * factor if self.student_seconds is not None else None
        return replace(self, student_seconds=seconds, **steps)


def train_teacher(settings: ShapesSettings, out: Path) -> tuple[Any, dict[str, float]]:
    """diff-image's shapes benchmark model (``diff_image.bench.shapes_benchmark``) at the CFG scale
    ``settings.teacher_guidance``; returns the pipeline and the benchmark's own metrics (40 Euler steps)."""
    from diff_image.bench import BenchSettings, shapes_benchmark

    bench = BenchSettings(
        shapes_steps=settings.teacher_steps, shapes_width=settings.width, shapes_depth=settings.depth,
        shapes_patch=settings.patch, shapes_batch=settings.teacher_batch, shapes_length=settings.teacher_length,
        shapes_image_size=settings.image_size, shapes_eval=settings.num_per_kind,
        shapes_guidances=(settings.teacher_guidance,), shapes_train_budget_s=settings.teacher_seconds,
        shapes_warmup=min(300, max(1, settings.teacher_steps // 10)), device=settings.device,
    )  # fmt: skip
    pipe, metrics, _ = shapes_benchmark(out, bench, holdout=settings.holdout)
    return pipe, metrics


def _scenes(num: int, objects: int, seed: int, settings: ShapesSettings) -> tuple[Tensor, list[str]]:
    """Images ``(num, 3, H, W)`` in [-1, 1] and captions of ``num`` scenes with exactly ``objects`` objects
    (``diff_image.pipeline.shapes_eval_dataset``, so the captions of ``shapes_eval_captions`` for that seed)."""
    from diff_image.pipeline import shapes_eval_dataset

    data = shapes_eval_dataset(num, objects, settings.image_size, seed, settings.holdout)
    samples = [data.sample(i) for i in range(num)]
    return torch.stack([s.to_tensor() for s in samples]), [s.caption for s in samples]


def _eval_set(settings: ShapesSettings, seed: int) -> tuple[Tensor, list[str]]:
    one, cap1 = _scenes(settings.num_per_kind, 1, seed, settings)
    two, cap2 = _scenes(settings.num_per_kind, 2, seed, settings)
    return torch.cat([one, two]), cap1 + cap2


class ShapesScorer:
    """Frechet distance in the shapes classifier's features (vs the scenes of the evaluation captions) and
    one- / two-object caption adherence of samples drawn for those captions.

    Adherence is ``diff_image.metrics.caption_adherence``; with ``adherence_workers > 1`` the images are
    checked in that many processes (one pool for the whole run).
    """

    def __init__(self, settings: ShapesSettings) -> None:
        from diff_image.data import ShapesConfig
        from diff_image.metrics import (
            ClassifierTraining,
            extract_features,
            frechet_distance,
            shapes_classifier,
        )

        self.clf = shapes_classifier(
            ShapesConfig(image_size=settings.image_size), num_train=settings.classifier_train,
            training=ClassifierTraining(epochs=settings.classifier_epochs), device=settings.device,
        ).cpu()  # fmt: skip
        real, self.captions = _eval_set(settings, EVAL_CAPTION_SEED)
        self.real = extract_features(self.clf, real)
        other, _ = _eval_set(settings, FLOOR_SEED)
        self.floor = frechet_distance(extract_features(self.clf, other), self.real)
        workers = settings.adherence_workers
        self.pool = (
            ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) if workers > 1 else None
        )  # "spawn": safe after CUDA is initialised here; the workers only run numpy / scipy

    def adherence(self, images: Tensor) -> tuple[float, float]:
        """One-object and two-object pass rates of ``images`` ``(N, 3, H, W)`` for the evaluation captions."""
        from diff_image.metrics import caption_adherence

        report = caption_adherence(images, self.captions, executor=self.pool)
        return report.one_object, report.multi_object

    def __call__(self, images: Tensor, cond: dict[str, Tensor]) -> dict[str, float]:
        from diff_image.metrics import extract_features, frechet_distance

        images = images.cpu().float()
        if images.shape[0] != len(self.captions):
            raise ValueError(
                f"images: expected {len(self.captions)} samples (one per caption), got {images.shape[0]}"
            )
        one, two = self.adherence(images)
        return {
            "frechet": frechet_distance(extract_features(self.clf, images), self.real),
            "adherence_one_object": one,
            "adherence_two_object": two,
        }


def _tokenize(pipe: Any, captions: list[str], device: torch.device, chunk: int = 4096) -> Tensor:
    return torch.cat([pipe.text_encoder.tokenize(captions[i : i + chunk], device=device)
                      for i in range(0, len(captions), chunk)])  # fmt: skip


def shapes_context(
    settings: ShapesSettings, out: Path, teacher_dir: str | None
) -> tuple[Context, dict[str, Any]]:
    """The shapes teacher (trained within ``settings.teacher_seconds``, or loaded), its training scenes as
    student data, and the evaluation task. Returns the context and what is known about the teacher."""
    import time

    from diff_image.data import ShapesConfig
    from diff_image.data.shapes_render import render_shapes
    from diff_image.pipeline import ImagePipeline
    from diff_image.pipeline.datasets import DeviceBatches, device_batch_loader

    device = torch.device(settings.device)
    start = time.perf_counter()
    info: dict[str, Any] = {"guidance": settings.teacher_guidance, "sampler": settings.teacher_sampler}
    if teacher_dir:
        pipe = ImagePipeline.from_pretrained(teacher_dir, device=device)
        info["loaded_from"] = teacher_dir
        # A teacher trained by train_teacher (``--shapes-teacher-only``) has its benchmark metrics two levels up.
        metrics_file = Path(teacher_dir).resolve().parents[1] / "shapes_metrics.json"
        if metrics_file.is_file():
            info["bench_metrics"] = json.loads(metrics_file.read_text())
    else:
        pipe, metrics = train_teacher(settings, out / "teacher")
        info["bench_metrics"] = metrics
    if pipe.text_encoder is None or pipe.schedule != "rectified-flow" or pipe.prediction != "velocity":
        raise ValueError(
            f"shapes teacher: expected a text-conditioned rectified-flow velocity pipeline, got {pipe.schedule}, "
            f"{pipe.prediction}, text encoder {pipe.text_encoder is not None}"
        )
    info["seconds"] = time.perf_counter() - start
    net = pipe.network.to(device).eval().requires_grad_(False)
    conditional = pipe.denoiser(net)
    uncond = {"input_ids": pipe.text_encoder.tokenize([""], device=device)}
    teacher = ClassifierFreeGuidance(conditional, settings.teacher_guidance, uncond)
    scenes = render_shapes(settings.data_length, seed=0, split="train",
                           config=ShapesConfig(image_size=settings.image_size, holdout=settings.holdout))  # fmt: skip
    ids = _tokenize(pipe, scenes.captions, device)
    loader = device_batch_loader(DeviceBatches(scenes.images, ids, device), settings.batch)
    scorer = ShapesScorer(settings)

    def random_cond(n: int, gen: torch.Generator) -> dict[str, Tensor]:
        return {"input_ids": ids[torch.randint(0, ids.shape[0], (n,), generator=gen, device=device)]}

    task = Task(
        "shapes", tuple(pipe.sample_shape), {"input_ids": _tokenize(pipe, scorer.captions, device)}, uncond,
        scorer, random_cond, scorer.floor, ("adherence_one_object", "adherence_two_object"),
    )  # fmt: skip
    ctx = Context(net, teacher, conditional, settings.teacher_guidance, loader, task, settings, out)
    return ctx, info


def run_shapes(settings: ShapesSettings, out: Path, teacher_dir: str | None) -> dict[str, Any]:
    """Every shapes row: the guided teacher at 50 / 20 / 10 steps (and 4 / 2 / 1 for reference), then every
    student at 1 / 2 / 4 steps without CFG (LCM at ``w = 1`` and at the teacher's scale)."""
    import time

    start = time.perf_counter()
    ctx, info = shapes_context(settings, out, teacher_dir)
    log(
        f"shapes teacher ready ({info['seconds']:.0f} s); data and scorer ready ({time.perf_counter() - start:.0f} s)"
    )
    rows: dict[str, Row] = LoggedRows()
    w, sampler = settings.teacher_guidance, settings.teacher_sampler
    name = f"teacher ({sampler}, CFG {w:g})"
    rows[name] = evaluate(ctx.teacher, sampler, TEACHER_STEPS, ctx.task)
    # A loaded teacher's row shows its recorded training time (when known), not the seconds it took to load.
    rows[name].train_seconds = info.get("bench_metrics", {}).get("shapes_train_seconds", info["seconds"])
    rows[f"teacher at few steps ({sampler}, CFG {w:g})"] = evaluate(
        ctx.teacher, sampler, STUDENT_STEPS, ctx.task
    )
    method_rows(ctx, rows, start, lcm_scales=(1.0, w))
    doc = summarise("shapes", rows, ctx, time.perf_counter() - start)
    doc["teacher"] = info
    doc["guided_distillation"] = (
        f"every student but LCM distils the teacher guided at w = {w:g} (Meng et al. 2023) and samples without "
        "CFG; LCM takes w as an input (trained on the range in settings.lcm_guidance)"
    )
    return doc
