"""The diff-3d benchmark behind ``diffuse bench 3d`` and ``benchmarks/3d/splat_bench.py`` / ``splat_full.py``.

* quick (CPU, <= 5 minutes on two cores): fits a few primitives to 3DGS with the CPU renderer (``diff_3d.fit``
  through the procedural set's code) and records their render PSNR on the fitting views (target >= 25 dB), then trains a tiny class-conditional DiffGS latent model on Gaussians
  sampled on the primitives' surfaces (no fitting: the fitted set costs minutes), time-budgeted; writes PLY files,
  a render grid and a turntable; records COV / MMD-CD / 1-NNA and the render classifier's class adherence.
* full (one H100, under 9 minutes in all: 170 s autoencoder, 150 s denoiser): the procedural set (primitives fitted to 3DGS, cached),
  a larger DiffGS model; targets class adherence >= 0.9, COV >= 0.5, 1-NNA <= 0.65. Checkpoints through the Trainer,
  so a cut run resumes (``--resume`` / ``diffuse bench --resume``).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from diffcore.modality import BenchContext, BenchResult

__all__ = ["TARGETS_FULL", "TARGETS_QUICK", "BenchSettings", "bench", "run_benchmark"]


@dataclass
class BenchSettings:
    """Sizes of one benchmark run; ``*_seconds`` bound each stage's wall time (``steps`` are the most it runs)."""

    representation: str = "l3dg"
    dataset: str = "primitives"
    num_objects: int = 48
    budget: int = 512
    latent_tokens: int = 8
    latent_dim: int = 16
    field_width: int = 64
    queries: int = 512
    width: int = 96
    depth: int = 3
    heads: int = 4
    grid_size: int = 16
    conv_channels: int = 16
    latent_channels: int = 8
    batch_size: int = 8
    autoencoder_steps: int = 2000
    autoencoder_seconds: float = 100.0
    autoencoder_lr: float = 2e-3
    steps: int = 3000
    train_seconds: float = 60.0
    lr: float = 1e-3
    ema_decay: float = 0.99
    samples: int = 24
    reference: int = 24
    points: int = 256
    sample_steps: int = 16
    guidance: float = 2.0
    classifier_steps: int = 120
    image_size: int = 32
    views: int = 3
    fit_objects: int = 2
    fit_steps: int = 60
    fit_size: int = 32
    write_samples: int = 4
    patch_size: int = 1
    fit_budget_seconds: float = 0.0
    device: str = "cpu"

    @classmethod
    def quick(cls) -> BenchSettings:
        """The quick CPU benchmark's sizes (the field defaults)."""
        return cls()

    @classmethod
    def full(cls) -> BenchSettings:
        """The full (GPU) benchmark's sizes."""
        return cls(
            representation="l3dg", dataset="procedural", num_objects=240, budget=1024, latent_tokens=16, latent_dim=32,
            field_width=256, queries=4096, width=384, depth=8, heads=6, grid_size=32, conv_channels=32,
            latent_channels=8, patch_size=2, batch_size=32, autoencoder_steps=20_000, autoencoder_seconds=150.0,
            autoencoder_lr=1e-3, steps=40_000, train_seconds=150.0, lr=3e-4, ema_decay=0.999, samples=120,
            reference=120, points=512, sample_steps=40, guidance=3.0, classifier_steps=600, image_size=64, views=4,
            fit_objects=2, fit_steps=300, fit_size=64, fit_budget_seconds=90.0, write_samples=12, device="auto",
        )  # fmt: skip


TARGETS_QUICK = {"fit_psnr": (">=", 25.0)}
TARGETS_FULL = {
    "fit_psnr": (">=", 25.0),
    "class_adherence": (">=", 0.9),
    "cov": (">=", 0.5),
    "one_nna": ("<=", 0.65),
}


def train_config(settings: BenchSettings, run: Path, resume: bool) -> Any:
    """The :class:`~diff_3d.config.SplatTrainConfig` of ``settings``."""
    from diffcore.training import TrainConfig

    from diff_3d.config import SplatModelConfig, SplatTrainConfig

    s = settings
    return SplatTrainConfig(
        model=SplatModelConfig(
            representation=s.representation, latent_tokens=s.latent_tokens, latent_dim=s.latent_dim,
            field_width=s.field_width, queries=s.queries, width=s.width, depth=s.depth, heads=s.heads,
            grid_size=s.grid_size, conv_channels=s.conv_channels, latent_channels=s.latent_channels,
            patch_size=s.patch_size,
        ),
        dataset=s.dataset, num_objects=s.num_objects, budget=s.budget, batch_size=s.batch_size, conditioning="class",
        autoencoder_steps=s.autoencoder_steps, autoencoder_seconds=s.autoencoder_seconds, autoencoder_lr=s.autoencoder_lr,
        train=TrainConfig(
            output_dir=str(run), steps=s.steps, lr=s.lr, warmup_steps=min(50, s.steps // 10), ema_decay=s.ema_decay,
            max_seconds=s.train_seconds, log_every=50, checkpoint_every=500, device=s.device, seed=0,
            resume="auto" if resume else None, progress_bar=False, tensorboard=False,
        ),
    )  # fmt: skip


def fit_psnr(settings: BenchSettings) -> dict[str, float]:
    """Fit ``fit_objects`` procedural primitives to 3DGS (:func:`diff_3d.data.procedural.procedural_set`, no cache:
    true renders by sphere tracing, ``fit_steps`` steps at ``fit_size`` pixels); the mean render PSNR of the fits on
    their fitting views."""
    from diffcore.device import resolve_device

    from diff_3d.config import FitSettings, ProceduralSettings
    from diff_3d.data.procedural import procedural_set

    start = time.perf_counter()
    s = ProceduralSettings(
        num_gaussians=settings.budget, resolution=settings.fit_size, fit=FitSettings(steps=settings.fit_steps)
    )
    objects = procedural_set(settings.fit_objects, seed=7, settings=s, cache_dir=False,
                             device=resolve_device(settings.device), progress=False)  # fmt: skip
    return {
        "fit_psnr": sum(o.psnr for o in objects) / len(objects),
        "fit_seconds": time.perf_counter() - start,
    }


def _guard_fitting(settings: BenchSettings, metrics: dict[str, float]) -> BenchSettings:
    """The procedural set is fitted once (300 steps at 64 pixels per object) and cached; where it is not cached
    yet and fitting it would take more than ``fit_budget_seconds`` (extrapolated from the fitting check's seconds
    per object-step-pixel), train on ``primitives`` instead and record ``dataset_fallback = 1``."""
    from dataclasses import replace

    from diff_3d.config import ProceduralSettings
    from diff_3d.data.procedural import is_cached

    if settings.dataset != "procedural" or settings.fit_budget_seconds <= 0:
        return settings
    procedural = ProceduralSettings(num_gaussians=settings.budget)
    if is_cached(settings.num_objects, 0, procedural):
        metrics["dataset_fallback"] = 0.0
        return settings
    per_unit = metrics["fit_seconds"] / (settings.fit_objects * settings.fit_steps * settings.fit_size**2)
    estimate = per_unit * settings.num_objects * procedural.fit.steps * procedural.resolution**2
    metrics["procedural_fit_estimate_seconds"] = estimate
    if estimate <= settings.fit_budget_seconds:
        metrics["dataset_fallback"] = 0.0
        return settings
    print(f"fitting the procedural set would take ~{estimate:.0f} s (> {settings.fit_budget_seconds:.0f} s): "
          "training on primitives sampled on the surfaces instead")  # fmt: skip
    metrics["dataset_fallback"] = 1.0
    return replace(settings, dataset="primitives")


def run_benchmark(
    out_dir: Path, settings: BenchSettings, resume: bool = False
) -> tuple[dict[str, float], list[str]]:
    """Fit, train, sample and evaluate as ``settings`` say; returns ``(metrics, files written under out_dir)``."""
    from diffcore.io import write_json
    from diffcore.rng import make_generator

    from diff_3d.config import SplatEvaluateConfig
    from diff_3d.pipeline import evaluate, train
    from diff_3d.pipeline.sampling import write_samples

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    metrics: dict[str, float] = fit_psnr(settings)
    settings = _guard_fitting(settings, metrics)
    start = time.perf_counter()
    pipe = train(train_config(settings, out_dir / "run", resume))
    metrics["train_seconds"] = time.perf_counter() - start
    metrics["autoencoder_steps"] = float(_steps_trained(out_dir / "run" / "autoencoder"))
    metrics["train_steps"] = float(_steps_trained(out_dir / "run"))
    start = time.perf_counter()
    metrics.update(
        evaluate(
            pipe,
            SplatEvaluateConfig(
                num_samples=settings.samples, num_reference=settings.reference, points=settings.points,
                guidance=settings.guidance, steps=settings.sample_steps, classifier_steps=settings.classifier_steps,
                image_size=settings.image_size, views=settings.views, device=settings.device,
            ),
        )
    )  # fmt: skip
    metrics["eval_seconds"] = time.perf_counter() - start
    gen = make_generator(0, pipe.device)
    k = settings.write_samples
    objects = pipe.generate(k, classes=list(range(k)), guidance=settings.guidance, steps=settings.sample_steps,
                            generator=gen)  # fmt: skip
    written = write_samples(
        objects[:k], out_dir / "samples", image_size=96, turntable=True, device=pipe.device
    )
    turntables = [p for p in written if p.suffix == ".gif"][:1]
    write_json(metrics, out_dir / "metrics.json")
    files = ["samples/grid.png", "samples/sample_000.ply", *(str(p.relative_to(out_dir)) for p in turntables)]
    return metrics, [*files, "metrics.json"]


def _steps_trained(run: Path) -> int:
    log = run / "log.jsonl"
    if not log.is_file():
        return 0
    steps = [json.loads(line).get("step", 0) for line in log.read_text().splitlines() if line.strip()]
    return int(max(steps, default=0))


def bench(out_dir: Path, quick: bool, context: BenchContext = BenchContext()) -> BenchResult:
    """``diffuse bench 3d [--quick]``: :func:`run_benchmark` with :meth:`BenchSettings.quick` or :meth:`BenchSettings.full`."""
    settings = BenchSettings.quick() if quick else BenchSettings.full()
    metrics, files = run_benchmark(Path(out_dir), settings, resume=context.resume)
    return BenchResult(
        modality="3d",
        status="ok",
        summary=(
            f"Class-conditional {settings.representation} latent diffusion on {settings.num_objects} {settings.dataset} "
            f"objects of {settings.budget} Gaussians: autoencoder {int(metrics['autoencoder_steps'])} steps, denoiser "
            f"{int(metrics['train_steps'])} steps in {metrics['train_seconds']:.0f} s."
        ),
        metrics=metrics,
        targets=TARGETS_QUICK if quick else TARGETS_FULL,
        files=files,
    )
