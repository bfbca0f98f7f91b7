"""The diff-video benchmark behind ``diffuse bench video`` and ``benchmarks/video/video_full.py``.

* quick (CPU, <= 5 minutes on two cores): a tiny pixel-space text-to-video DiT on one-object moving-shapes clips
  (8 frames of 16x16, captions with 4 directions and 3 colours), up to 1000 steps of batch 16 at time shift 3
  (stopped early at a 240 s wall-time guard on a slower machine: ``train_steps`` in the result says how many
  ran); samples of
  held-out captions written as MP4, GIF and a PNG grid; motion-direction adherence (target >= 0.6, chance 0.25),
  colour adherence, object persistence, image-to-video first-frame PSNR, validation loss.
* full (one GPU, 270 s of training, ~6 minutes in all): 16 frames of 32x32 with 8-direction captions, 6 colours and 4 shapes;
  adds the FVD-local and per-frame Frechet distances against their train-vs-test floor and a 4x sliding-window
  extension. It checkpoints through the Trainer, so ``diffuse bench --resume`` continues a cut run.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from diffcore.modality import BenchContext, BenchResult

__all__ = ["BenchSettings", "bench", "run_benchmark"]


@dataclass
class BenchSettings:
    """Sizes of one benchmark run.

    ``train_seconds`` bounds the training wall time (``TrainConfig.max_seconds``; ``steps`` is the most it runs);
    ``time_shift`` is the rectified-flow time shift of training and sampling (0: the token-count rule of
    :func:`diff_video.pipeline.training.time_shift`).
    """

    frames: int = 8
    size: int = 16
    directions: int = 4
    colours: tuple[str, ...] = ("red", "green", "blue")
    shapes: tuple[str, ...] = ("square",)
    object_size: float = 0.3
    width: int = 64
    depth: int = 4
    heads: int = 4
    patch: tuple[int, int, int] = (1, 4, 4)
    attention: str = "factorised"
    batch_size: int = 16
    lr: float = 2e-3
    steps: int = 1000
    train_seconds: float = 240.0
    ema_decay: float = 0.98
    time_shift: float = 3.0
    samples: int = 32
    sample_steps: int = 12
    guidance: float = 3.0
    feature_steps: int = 0
    extend_factor: int = 1
    mixed_precision: str = "no"
    compile: bool = False
    num_workers: int = 0
    device: str = "cpu"

    @classmethod
    def quick(cls) -> BenchSettings:
        """The quick CPU benchmark's sizes (the field defaults)."""
        return cls()

    @classmethod
    def full(cls) -> BenchSettings:
        """The full (GPU) benchmark's sizes."""
        return cls(
            frames=16, size=32, directions=8, colours=("red", "green", "blue", "yellow", "magenta", "cyan"),
            shapes=("square", "circle", "triangle", "digit"), object_size=0.3, width=384, depth=12, heads=6,
            patch=(1, 4, 4), batch_size=64, lr=3e-4, steps=30_000, train_seconds=270.0, ema_decay=0.999, samples=128,
            sample_steps=30, feature_steps=1500, extend_factor=4, mixed_precision="bf16", compile=True, device="auto", time_shift=0.0,
            num_workers=6,
        )  # fmt: skip


TARGETS_QUICK = {"direction_adherence": (">=", 0.6)}
TARGETS_FULL = {
    "direction_adherence": (">=", 0.9),
    "colour_adherence": (">=", 0.9),
    "shape_adherence": (">=", 0.9),
    "object_persistence": (">=", 0.95),
    "frame_fd_ratio": ("<=", 2.0),
    "i2v_first_frame_psnr": (">=", 35.0),
    "i2v_direction_adherence": (">=", 0.8),
    "extended_object_persistence": (">=", 0.9),
}


def _train_config(settings: BenchSettings, run: Path, resume: bool) -> Any:
    from diffcore.training import TrainConfig

    from diff_video.config import VideoDataConfig, VideoModelConfig, VideoTrainConfig
    from diff_video.data.shapes import ShapesConfig

    shapes = ShapesConfig(
        frames=settings.frames, height=settings.size, width=settings.size, num_objects=(1,), shapes=settings.shapes,
        colours=settings.colours, directions=settings.directions, speeds=("steadily",), events=(),
        size=settings.object_size, length=200_000,
    )  # fmt: skip
    return VideoTrainConfig(
        model=VideoModelConfig(
            attention=settings.attention, width=settings.width, depth=settings.depth, heads=settings.heads,
            patch_size=settings.patch, text_width=max(64, settings.width // 2), text_layers=2,
        ),
        data=VideoDataConfig(shapes=shapes, num_workers=settings.num_workers), batch_size=settings.batch_size,
        frame_cond_prob=0.25, time_shift=settings.time_shift,
        train=TrainConfig(
            output_dir=str(run), steps=settings.steps, lr=settings.lr, warmup_steps=min(100, settings.steps // 10),
            ema_decay=settings.ema_decay, max_seconds=settings.train_seconds, log_every=50, checkpoint_every=500,
            mixed_precision=settings.mixed_precision, compile=settings.compile, device=settings.device, seed=0,
            resume="auto" if resume else None, progress_bar=False,
        ),
    )  # fmt: skip


def run_benchmark(
    out_dir: Path, settings: BenchSettings, resume: bool = False
) -> tuple[dict[str, float], list[str]]:
    """Train, sample and evaluate as ``settings`` say; returns ``(metrics, files written under out_dir)``."""
    from diffcore.rng import make_generator

    from diff_video.config import VideoEvaluateConfig
    from diff_video.data.shapes import MovingShapes, ShapesConfig
    from diff_video.io import save_clips, save_metrics_json
    from diff_video.pipeline import evaluate, train

    out_dir = Path(out_dir)
    config = _train_config(settings, out_dir / "run", resume)
    start = time.perf_counter()
    pipe = train(config)
    train_s = time.perf_counter() - start
    steps = _steps_trained(out_dir / "run")
    print(f"trained {steps} steps in {train_s:.0f} s; evaluating", file=sys.stderr, flush=True)
    start = time.perf_counter()
    metrics = evaluate(
        pipe,
        VideoEvaluateConfig(
            num_samples=settings.samples,
            num_reference=max(settings.samples, 64),
            steps=settings.sample_steps,
            guidance=settings.guidance,
            feature_steps=settings.feature_steps,
            extend_factor=settings.extend_factor,
            device=settings.device,
        ),
    )
    metrics.update(train_seconds=train_s, train_steps=float(steps), eval_seconds=time.perf_counter() - start)
    print(f"evaluated in {metrics['eval_seconds']:.0f} s; writing samples", file=sys.stderr, flush=True)
    held = MovingShapes(replace(ShapesConfig(**pipe.shapes), seed=1_000_003))  # type: ignore[arg-type]
    captions = held.captions(8)
    gen = make_generator(0, pipe.device)
    clips = pipe.generate(
        8, prompts=captions, guidance=settings.guidance, steps=settings.sample_steps, generator=gen
    )
    written = save_clips(clips.cpu(), out_dir / "samples", ("mp4", "gif"), fps=4, captions=captions)
    save_metrics_json(metrics, out_dir / "metrics.json")
    files = [str(p.relative_to(out_dir)) for p in written if p.suffix in (".mp4", ".png")][:3]
    files.append("samples/grid.png")
    return metrics, [*sorted(set(files)), "metrics.json"]


def _steps_trained(run: Path) -> int:
    import json

    log = run / "log.jsonl"
    if not log.is_file():
        return 0
    steps = [json.loads(line).get("step", 0) for line in log.read_text().splitlines() if line.strip()]
    return int(max(steps, default=0))


def bench(out_dir: Path, quick: bool, context: BenchContext = BenchContext()) -> BenchResult:
    """``diffuse bench video [--quick]``: the run of :func:`run_benchmark` with :meth:`BenchSettings.quick` or
    :meth:`BenchSettings.full` settings."""
    settings = BenchSettings.quick() if quick else BenchSettings.full()
    metrics, files = run_benchmark(Path(out_dir), settings, resume=context.resume)
    size = f"{settings.frames}x{settings.size}x{settings.size}"
    return BenchResult(
        modality="video",
        status="ok",
        summary=(
            f"Text-to-video {settings.attention} spacetime DiT (width {settings.width}, depth {settings.depth}) on "
            f"{size} moving-shapes clips, {settings.directions}-direction captions, "
            f"{int(metrics['train_steps'])} steps in {metrics['train_seconds']:.0f} s."
        ),
        metrics=metrics,
        targets=TARGETS_QUICK if quick else TARGETS_FULL,
        files=files,
    )
