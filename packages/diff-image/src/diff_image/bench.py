"""The diff-image benchmark behind ``diffuse bench image`` and ``benchmarks/image/image_full.py``.

* quick (CPU, minutes): a class-conditional DiT on the 8x8 sklearn digits, CFG samples scored by the
  independent evaluation classifier (accuracy), Frechet distance in its feature space vs the train-vs-test floor.
* full (GPU): the same digits model trained longer, and the ``shapes`` text-to-image MMDiT (a small CLIP text
  encoder trained from scratch) scored by caption adherence on one- and two-object captions; then a LoRA
  concept test: the shapes model never saw the colour ``red``; an adapter trained on 8 images of red objects
  should make red appear in at least half of the samples where the base shows it in none.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from diffcore.modality import BenchResult

from diff_image.config import ImageDataConfig, ImageModelConfig, ImageTrainConfig

if TYPE_CHECKING:  # the rest is imported when a benchmark runs, so that ``diffuse --help`` stays light
    from diffcore.training import TrainConfig

    from diff_image.pipeline.evaluation import ShapesAdherenceProbe

__all__ = ["BenchSettings", "bench", "digits_benchmark", "lora_benchmark", "shapes_benchmark"]


@dataclass
class BenchSettings:
    """Sizes of the benchmark runs (``quick``: two CPU cores, a few minutes).

    ``shapes_train_budget_s > 0`` times a short calibration run of the shapes model and trains for as many steps
    as fit in that many seconds, at most ``shapes_steps``.
    """

    digits_steps: int = 1200
    digits_width: int = 64
    digits_depth: int = 4
    digits_samples: int = 500
    shapes_steps: int = 6000
    shapes_width: int = 256
    shapes_depth: int = 6
    shapes_patch: int = 2
    shapes_batch: int = 256
    shapes_lr: float = 6e-4
    shapes_warmup: int = 300
    shapes_ema: float = 0.999
    shapes_length: int = 200_000
    shapes_image_size: int = 32
    shapes_eval: int = 200
    shapes_sampler: str = "euler"
    shapes_sample_steps: int = 40
    shapes_guidances: tuple[float, ...] = (2.0, 3.0, 4.0, 6.0)
    shapes_probe_every: int = 0
    shapes_train_budget_s: float = 0.0
    lora_steps: int = 400
    device: str = "auto"

    @classmethod
    def quick(cls) -> BenchSettings:
        """The quick CPU benchmark's sizes (the field defaults, on the CPU)."""
        return cls(device="cpu")

    @classmethod
    def full(cls) -> BenchSettings:
        """The full (GPU) benchmark's sizes."""
        return cls(
            digits_steps=8000, digits_width=192, digits_depth=6, digits_samples=2000,
            shapes_steps=12_000, shapes_train_budget_s=300.0,
        )  # fmt: skip


def _optimisation(steps: int, warmup_steps: int, output_dir: Path, **settings: Any) -> TrainConfig:
    """The image run's default optimisation (:class:`~diff_image.config.ImageTrainConfig`'s ``train``) for
    ``steps`` steps: warmup cut to ``steps - 1`` and one log record per ``steps // 10`` steps (at most 100), so
    short runs stay valid and leave a log to time; ``settings`` replace further fields."""
    return replace(
        ImageTrainConfig().train, steps=steps, warmup_steps=min(warmup_steps, steps - 1),
        log_every=max(1, min(100, steps // 10)), output_dir=str(output_dir), **settings,
    )  # fmt: skip


def digits_benchmark(out_dir: Path, settings: BenchSettings) -> tuple[dict[str, float], list[str]]:
    """Train the class-conditional digits DiT, sample with CFG and evaluate; returns (metrics, files)."""
    from diff_image.io import save_grid, save_metrics_json
    from diff_image.pipeline import evaluate_digits, train

    cfg = ImageTrainConfig(
        model=ImageModelConfig(backbone="dit", conditioning="class", width=settings.digits_width,
                               depth=settings.digits_depth, heads=4, patch_size=2),
        data=ImageDataConfig(dataset="digits", image_size=8), objective="v", schedule="vp-cosine",
        cond_dropout=0.1, batch_size=128,
        train=_optimisation(settings.digits_steps, 100, out_dir / "digits_run", lr=2e-3, ema_decay=0.995,
                            device=settings.device, seed=0),
    )  # fmt: skip
    start = time.perf_counter()
    pipe = train(cfg)
    train_s = time.perf_counter() - start
    start = time.perf_counter()
    metrics, samples, _ = evaluate_digits(pipe, settings.digits_samples, "dpmpp_2m", 20, guidance=2.0)
    metrics.update(train_seconds=train_s, eval_seconds=time.perf_counter() - start)
    # Guidance trades diversity for accuracy: the Frechet distance is also measured without guidance (w = 1).
    unguided, _, _ = evaluate_digits(pipe, settings.digits_samples, "dpmpp_2m", 20, guidance=1.0, seed=1)
    metrics.update({f"w1_{k}": v for k, v in unguided.items() if k != "num_samples"})
    metrics["frechet_ratio_best"] = min(metrics["frechet_ratio"], metrics["w1_frechet_ratio"])
    save_grid(samples[:100], out_dir / "digits_grid.png", nrow=10)
    save_metrics_json(metrics, out_dir / "digits_metrics.json")
    return {f"digits_{k}": v for k, v in metrics.items()}, ["digits_grid.png", "digits_metrics.json"]


def _shapes_config(settings: BenchSettings, out: Path, holdout: tuple[str, ...]) -> ImageTrainConfig:
    gpu = settings.device != "cpu"
    return ImageTrainConfig(
        model=ImageModelConfig(backbone="mmdit", conditioning="text", width=settings.shapes_width,
                               depth=settings.shapes_depth, heads=max(1, settings.shapes_width // 64),
                               patch_size=settings.shapes_patch, text_width=128, text_layers=2, text_heads=4,
                               text_max_length=32),
        data=ImageDataConfig(dataset="shapes", image_size=settings.shapes_image_size,
                             shapes_length=settings.shapes_length, holdout=holdout, cache=True),
        objective="rectified_flow", cond_dropout=0.1, batch_size=settings.shapes_batch,
        train=_optimisation(settings.shapes_steps, settings.shapes_warmup, out, lr=settings.shapes_lr,
                            ema_decay=settings.shapes_ema, mixed_precision="bf16" if gpu else "no",
                            device=settings.device, seed=0),
    )  # fmt: skip


def measure_shapes_step_seconds(
    settings: BenchSettings, out: Path, holdout: tuple[str, ...] = ("red",), steps: int = 40
) -> float:
    """Seconds per training step of the shapes model as ``settings`` builds it, from a ``steps``-step run whose
    last log windows exclude start-up (kernel selection, allocator warm-up)."""
    from diffcore.training import steady_samples_per_sec
    from diffcore.training.log_writers import LOG_FILE

    from diff_image.pipeline import train

    if steps < 20:
        raise ValueError(f"steps: expected >= 20 for a steady-state window, got {steps}")
    trial = replace(
        settings, shapes_steps=steps, shapes_warmup=1, shapes_probe_every=0,
        shapes_length=min(settings.shapes_length, 8 * settings.shapes_batch),
    )  # fmt: skip
    run = out / "shapes_step_timing"
    if (run / LOG_FILE).exists():
        (run / LOG_FILE).unlink()
    train(_shapes_config(trial, run, holdout), save=False)
    return settings.shapes_batch / steady_samples_per_sec(run, after_step=steps // 2)


def _probe(settings: BenchSettings, out: Path, holdout: tuple[str, ...]) -> ShapesAdherenceProbe | None:
    from diff_image.pipeline import ShapesAdherenceProbe

    every = settings.shapes_probe_every
    if every <= 0:
        return None
    size = settings.shapes_image_size
    return ShapesAdherenceProbe(
        range(every, settings.shapes_steps, every), "rectified-flow", "velocity", (3, size, size),
        num_per_kind=max(1, settings.shapes_eval // 2), sampler=settings.shapes_sampler,
        steps=settings.shapes_sample_steps, guidance=max(settings.shapes_guidances), holdout=holdout,
        log_path=out / "shapes_probe.jsonl",
    )  # fmt: skip


def _pick_guidance(
    pipe: Any, settings: BenchSettings, holdout: tuple[str, ...]
) -> tuple[float, dict[str, float]]:
    """The CFG scale of best mean adherence on validation captions (caption seed 20 000, never the test's)."""
    from diff_image.pipeline import evaluate_shapes

    scores: dict[str, float] = {}
    best, best_score = settings.shapes_guidances[0], -1.0
    for w in settings.shapes_guidances:
        m, _, _ = evaluate_shapes(
            pipe, max(1, settings.shapes_eval // 2), settings.shapes_sampler, settings.shapes_sample_steps,
            guidance=w, seed=2, holdout=holdout, caption_seed=20_000,
        )  # fmt: skip
        score = 0.5 * (m["adherence_one_object"] + m["adherence_two_object"])
        scores[f"val_w{w:g}_one_object"] = m["adherence_one_object"]
        scores[f"val_w{w:g}_two_object"] = m["adherence_two_object"]
        if score > best_score:
            best, best_score = w, score
    return best, scores


def shapes_benchmark(
    out_dir: Path, settings: BenchSettings, holdout: tuple[str, ...] = ("red",)
) -> tuple[Any, dict[str, float], list[str]]:
    """Train the shapes text-to-image MMDiT (never seeing ``holdout``) and score caption adherence.

    The CFG scale is chosen among ``settings.shapes_guidances`` on validation captions, then adherence is
    measured on the (disjointly seeded) test captions. The trained pipeline is saved with ``save_pretrained`` in
    ``out_dir/shapes_run/pipeline`` (load it with ``ImagePipeline.from_pretrained``).
    """
    from diffcore.io import write_text

    from diff_image.io import save_grid, save_metrics_json
    from diff_image.pipeline import evaluate_shapes, train

    timing: dict[str, float] = {}
    if settings.shapes_train_budget_s > 0:
        start = time.perf_counter()
        step_s = measure_shapes_step_seconds(settings, out_dir, holdout)
        fit = max(1, int(settings.shapes_train_budget_s / step_s))
        settings = replace(settings, shapes_steps=min(settings.shapes_steps, fit))
        timing = {"calibration_step_seconds": step_s, "calibration_seconds": time.perf_counter() - start}
    start = time.perf_counter()
    probe = _probe(settings, out_dir, holdout)
    pipe = train(
        _shapes_config(settings, out_dir / "shapes_run", holdout), callbacks=[probe] if probe else []
    )
    train_s = time.perf_counter() - start
    start = time.perf_counter()
    guidance, scores = _pick_guidance(pipe, settings, holdout)
    metrics, samples, captions = evaluate_shapes(
        pipe, settings.shapes_eval, settings.shapes_sampler, settings.shapes_sample_steps, guidance=guidance,
        holdout=holdout,
    )  # fmt: skip
    metrics.update(scores)
    metrics.update(train_seconds=train_s, eval_seconds=time.perf_counter() - start, guidance=guidance)
    metrics.update(timing, train_steps=settings.shapes_steps)
    metrics["train_steps_per_second"] = settings.shapes_steps / train_s
    for record in probe.history if probe else []:
        step = int(record["step"])
        metrics[f"probe_step{step}_one_object"] = record["adherence_one_object"]
        metrics[f"probe_step{step}_two_object"] = record["adherence_two_object"]
        metrics[f"probe_step{step}_colours_found_one_object"] = record["colours_found_one_object"]
    save_grid(samples[:64], out_dir / "shapes_grid.png", nrow=8)
    write_text(out_dir / "shapes_captions.txt", "\n".join(captions[:64]) + "\n")
    save_metrics_json(metrics, out_dir / "shapes_metrics.json")
    return (
        pipe,
        {f"shapes_{k}": v for k, v in metrics.items()},
        ["shapes_grid.png", "shapes_captions.txt", "shapes_metrics.json"],
    )


def lora_benchmark(
    pipe: Any, out_dir: Path, settings: BenchSettings, concept: str = "red"
) -> tuple[dict[str, float], list[str]]:
    """LoRA on 8 images of ``concept`` (absent from the base's training); concept rate before and after."""
    import torch
    from diffcore.rng import make_generator

    from diff_image.config import ImageLoraConfig
    from diff_image.io import save_grid, save_metrics_json
    from diff_image.lora import concept_images, concept_rate, finetune_lora

    images, captions = concept_images(concept, 8, image_size=pipe.image_shape[-1])
    prompts = [f"a {concept} {s}" for s in ("circle", "square", "triangle", "diamond")]
    sample = {"sampler": "euler", "steps": 30, "guidance": 4.0, "prompt": prompts}
    before = pipe.sample(64, **sample, generator=make_generator(0, pipe.device))
    cfg = ImageLoraConfig(concept=concept, num_images=8, rank=8, alpha=8, steps=settings.lora_steps, lr=1e-3,
                          batch_size=8, prompt="", device=settings.device)  # fmt: skip
    finetune_lora(pipe, images, cfg, out_dir / "lora", captions=captions)
    after = pipe.sample(64, **sample, generator=make_generator(0, pipe.device))
    save_grid(torch.cat([before[:32], after[:32]]).cpu(), out_dir / "lora_grid.png", nrow=8)
    size = (out_dir / "lora" / "adapter" / "adapter_model.safetensors").stat().st_size
    metrics = {"concept_rate_base": concept_rate(before.cpu(), concept), "concept_rate_lora": concept_rate(after.cpu(), concept),
               "adapter_bytes": float(size)}  # fmt: skip
    save_metrics_json(metrics, out_dir / "lora_metrics.json")
    return {f"lora_{k}": v for k, v in metrics.items()}, ["lora_grid.png", "lora_metrics.json"]


def bench(out_dir: Path, quick: bool) -> BenchResult:
    """``diffuse bench image``: quick = the CPU digits run; full = digits (long) + shapes + LoRA on a GPU."""
    from diff_image.io import save_metrics_json

    start = time.perf_counter()
    settings = BenchSettings.quick() if quick else BenchSettings.full()
    out_dir.mkdir(parents=True, exist_ok=True)
    metrics, files = digits_benchmark(out_dir, settings)
    summary = (
        f"digits CFG class accuracy {metrics['digits_class_accuracy']:.3f}, Frechet {metrics['digits_frechet']:.2f} "
        f"(train-vs-test floor {metrics['digits_frechet_train_test']:.2f})"
    )
    if not quick:
        pipe, m, f = shapes_benchmark(out_dir, settings)
        metrics.update(m)
        files += f
        m, f = lora_benchmark(pipe, out_dir, settings)
        metrics.update(m)
        files += f
        summary += (
            f"; shapes adherence one-object {metrics['shapes_adherence_one_object']:.3f}, "
            f"two-object {metrics['shapes_adherence_two_object']:.3f}; LoRA concept rate "
            f"{metrics['lora_concept_rate_base']:.2f} -> {metrics['lora_concept_rate_lora']:.2f}"
        )
    save_metrics_json(metrics, out_dir / "metrics.json")
    files.append("metrics.json")
    return BenchResult(
        modality="image", status="ok", summary=summary, seconds=time.perf_counter() - start,
        metrics={k: float(v) for k, v in metrics.items()}, files=files,
    )  # fmt: skip
