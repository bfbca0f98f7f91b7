"""The diff-audio benchmark behind ``diffuse bench audio`` and ``benchmarks/audio/``.

* quick (CPU, at most 5 minutes): the VAE (hop 16, 16 latent channels: no compression, which a few hundred CPU
  steps can learn; the GPU run compresses 32x) and a tiny latent DiT on single notes (8 kHz mono, 0.512 s clips),
  each stage trained for a fixed wall-time budget (``TrainConfig.max_seconds``: the VAE 70 s on 0.128 s crops,
  the DiT 150 s, which is the stage short of steps), then 32 clips generated from held-out captions and scored; writes wav files, a spectrogram grid and metrics.json. Target: pitch
  accuracy >= 0.5 (chance 1/37 < 0.03).
* full (one GPU, about 7 minutes): 16 kHz mono single notes of 2.048 s with a 32x-compression VAE (200 s) and a
  larger DiT in bf16 (140 s), then the issue's GPU targets: pitch, instrument and timing accuracy, FAD-local against its floor,
  VAE SI-SDR, audio-to-audio at strength 0.5. Both Trainers checkpoint, so a cut run resumes (``diffuse bench
  --resume``). The long-form speed target (180 s of 44.1 kHz stereo from a >= 100 M parameter model) is
  :func:`longform_speed`, run by ``benchmarks/audio/audio_full.py``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from diffcore.modality import BenchContext, BenchResult

__all__ = ["BenchSettings", "bench", "longform_speed", "notes_benchmark"]

QUICK_TARGETS = {"pitch_accuracy": (">=", 0.5)}
FULL_TARGETS = {
    "pitch_accuracy": (">=", 0.9),
    "instrument_accuracy": (">=", 0.9),
    "timing_accuracy": (">=", 0.9),
    "fad_local_ratio": ("<=", 2.0),
    "vae_si_sdr_db": (">=", 10.0),
    "vae_compression": (">=", 32.0),
    "a2a_success": (">=", 0.8),
}


@dataclass
class BenchSettings:
    """Sizes of one benchmark run (see the module docstring). ``stage_seconds`` is the wall-time budget of each
    training stage (``TrainConfig.max_seconds``: the VAE, then the DiT, each stop cleanly when it is spent, at
    most ``vae_steps`` / ``steps``); ``vae_seconds``, when set, is the VAE stage's own budget."""

    sample_rate: int = 8000
    clip_seconds: float = 0.512
    min_seconds: float = 0.25
    length: int = 768
    vae_channels: int = 8
    vae_mults: tuple[int, ...] = (1, 2)
    vae_strides: tuple[int, ...] = (4, 4)
    latent_dim: int = 16
    fft_sizes: tuple[int, ...] = (512, 256, 128, 64)
    vae_steps: int = 2000
    vae_lr: float = 2e-3
    vae_crop_seconds: float | None = 0.128
    vae_shortcut: bool = True
    vae_zero_init: bool = True
    width: int = 64
    depth: int = 3
    heads: int = 2
    patch_size: int = 4
    text_width: int = 32
    steps: int = 4000
    stage_seconds: float = 150.0
    vae_seconds: float | None = 70.0
    lr: float = 2e-3
    warmup_steps: int = 10
    batch_size: int = 16
    eval_samples: int = 32
    sample_steps: int = 16
    guidance: float = 3.0
    classifier_steps: int = 200
    mixed_precision: str = "no"
    device: str = "cpu"
    checkpoint_every: int | None = None

    @classmethod
    def quick(cls) -> BenchSettings:
        """The quick CPU benchmark's sizes (the field defaults)."""
        return cls()

    @classmethod
    def full(cls) -> BenchSettings:
        """The full (GPU) benchmark's sizes."""
        return cls(
            sample_rate=16000, clip_seconds=2.048, min_seconds=0.6, length=4096, vae_channels=48,
            vae_mults=(1, 2, 4, 8), vae_strides=(2, 4, 4, 8), latent_dim=8, fft_sizes=(2048, 1024, 512, 256, 128),
            vae_steps=20000, vae_lr=1e-3, vae_crop_seconds=0.512, vae_shortcut=False, vae_zero_init=False, width=384, depth=8, heads=6, patch_size=1,
            text_width=128, steps=40000, stage_seconds=140.0, vae_seconds=200.0, lr=5e-4, batch_size=32, eval_samples=256,
            sample_steps=50, classifier_steps=400, warmup_steps=200, mixed_precision="bf16", device="cuda", checkpoint_every=500,
        )  # fmt: skip


def _config(settings: BenchSettings, out: Path, resume: bool) -> Any:
    from diffcore.training import TrainConfig

    from diff_audio.config import AudioDataConfig, AudioModelConfig, AudioTrainConfig, AudioVAEConfig

    s = settings
    return AudioTrainConfig(
        data=AudioDataConfig(kind="notes", length=s.length, sample_rate=s.sample_rate, clip_seconds=s.clip_seconds,
                             min_seconds=s.min_seconds),
        vae=AudioVAEConfig(channels=s.vae_channels, channel_mults=s.vae_mults, strides=s.vae_strides,
                           latent_dim=s.latent_dim, fft_sizes=s.fft_sizes, shortcut=s.vae_shortcut,
                           zero_init=s.vae_zero_init),
        model=AudioModelConfig(width=s.width, depth=s.depth, heads=s.heads, patch_size=s.patch_size,
                               text_width=s.text_width, text_layers=2, text_heads=4),
        vae_steps=s.vae_steps, vae_lr=s.vae_lr, vae_max_seconds=s.vae_seconds, vae_crop_seconds=s.vae_crop_seconds, batch_size=s.batch_size, cond_dropout=0.1,
        train=TrainConfig(steps=s.steps, lr=s.lr, warmup_steps=s.warmup_steps, ema_decay=0.995, output_dir=str(out),
                          device=s.device, mixed_precision=s.mixed_precision, log_every=50,
                          checkpoint_every=s.checkpoint_every, max_seconds=s.stage_seconds, tensorboard=False,
                          resume="auto" if resume else None, seed=0),
    )  # fmt: skip


def notes_benchmark(
    out_dir: Path, settings: BenchSettings, resume: bool = False
) -> tuple[dict[str, float], list[str], Any]:
    """Train on single notes, generate from held-out captions, score; returns (metrics, files, pipeline)."""
    from diffcore.io import write_text

    from diff_audio.config import AudioEvaluateConfig
    from diff_audio.io import save_audio_batch, save_metrics_json, save_spectrogram_grid
    from diff_audio.pipeline import evaluate_and_sample
    from diff_audio.pipeline.training import train

    cfg = _config(settings, out_dir / "run", resume)
    start = time.perf_counter()
    pipe = train(cfg)
    train_s = time.perf_counter() - start
    ev = AudioEvaluateConfig(num_samples=settings.eval_samples, steps=settings.sample_steps, guidance=settings.guidance,
                             classifier_steps=settings.classifier_steps, reference_samples=settings.eval_samples,
                             batch_size=64, device=settings.device)  # fmt: skip
    metrics, samples, captions = evaluate_and_sample(pipe, ev)
    metrics.update(train_seconds=train_s, vae_steps_done=_steps(out_dir / "run" / "vae_run"),
                   dit_steps_done=_steps(out_dir / "run"))  # fmt: skip
    sr = pipe.sample_rate
    save_audio_batch(samples[:8], out_dir / "clips", sr)
    save_spectrogram_grid(samples[:16], out_dir / "spectrograms.png", sr)
    write_text(
        out_dir / "captions.txt", "".join(f"sample_{i:03d}.wav\t{c}\n" for i, c in enumerate(captions[:8]))
    )
    save_metrics_json(metrics, out_dir / "metrics.json")
    files = [f"clips/sample_{i:03d}.wav" for i in range(min(8, len(samples)))]
    return metrics, [*files, "spectrograms.png", "captions.txt", "metrics.json"], pipe


def _steps(run: Path) -> float:
    import json

    log = run / "log.jsonl"
    if not log.is_file():
        return 0.0
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    return float(max((r.get("step", 0) for r in lines), default=0))


def longform_speed(
    seconds: float = 180.0, sample_rate: int = 44100, steps: int = 50, width: int = 1024, depth: int = 12,
    device: str = "cuda", compile: bool = True,
) -> dict[str, float]:  # fmt: skip
    """Time one long-form generation: ``seconds`` of stereo at ``sample_rate`` from a latent DiT of ``width`` x
    ``depth`` (>= 100 M parameters at the defaults) with ``steps`` Euler steps and CFG (one batched forward of
    both branches), then the VAE decode (a 2048x-hop Oobleck VAE with 64 latent channels, Stable Audio Open's
    shape). Weights are random: this measures speed and memory, not quality. bf16 autocast on CUDA."""
    import torch
    from diffcore.rng import make_generator, seeded

    from diff_audio.models.dit import AudioDiT, AudioDiTConfig, build_vocabulary
    from diff_audio.models.vae import AudioVAE, AudioVAEModelConfig
    from diff_audio.pipeline.core import AudioPipeline

    dev = torch.device(device)
    with seeded(0):
        vae = AudioVAE(AudioVAEModelConfig(channels=64, channel_mults=(1, 2, 4, 8, 16), strides=(2, 4, 4, 8, 8),
                                           latent_dim=64, audio_channels=2, sample_rate=sample_rate))  # fmt: skip
        dit = AudioDiT(AudioDiTConfig(latent_dim=64, latent_length=1024, width=width, depth=depth, heads=width // 64,
                                      patch_size=1, text_width=256, text_layers=2, text_heads=4, max_seconds=seconds,
                                      vocabulary=build_vocabulary(["an organ piece at 120 bpm"])))  # fmt: skip
    params = sum(p.numel() for p in dit.parameters())
    pipe = AudioPipeline(
        vae.to(dev).eval(), dit.to(dev).eval(), "rectified-flow", "velocity", sample_rate, seconds
    )
    if compile and dev.type == "cuda":
        dit.backbone = torch.compile(dit.backbone)  # type: ignore[assignment]
    autocast = torch.autocast(dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda")

    def run() -> torch.Tensor:
        with autocast:
            return pipe.generate("an organ piece at 120 bpm", 1, seconds, duration=seconds, steps=steps,
                                 guidance=3.0, generator=make_generator(0, dev))  # fmt: skip

    run()  # warm-up (compilation, kernel selection)
    if dev.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    audio = run()
    if dev.type == "cuda":
        torch.cuda.synchronize()
    wall = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated() / 2**30 if dev.type == "cuda" else float("nan")
    return {
        "longform_seconds_audio": audio.shape[-1] / sample_rate,
        "longform_channels": float(audio.shape[1]),
        "longform_dit_parameters": float(params),
        "longform_steps": float(steps),
        "longform_wall_seconds": wall,
        "longform_real_time_factor": (audio.shape[-1] / sample_rate) / wall,
        "longform_peak_memory_gib": peak,
    }


def bench(out_dir: Path, quick: bool, context: BenchContext = BenchContext()) -> BenchResult:
    """``diffuse bench audio``: quick = the CPU single-note run; full = the GPU single-note run (resumable)."""
    start = time.perf_counter()
    settings = BenchSettings.quick() if quick else BenchSettings.full()
    out_dir.mkdir(parents=True, exist_ok=True)
    metrics, files, _ = notes_benchmark(out_dir, settings, resume=context.resume)
    summary = (
        f"single notes: pitch accuracy {metrics['pitch_accuracy']:.3f}, instrument accuracy "
        f"{metrics['instrument_accuracy']:.3f}, timing accuracy {metrics.get('timing_accuracy', float('nan')):.3f}, "
        f"VAE SI-SDR {metrics['vae_si_sdr_db']:.1f} dB at {metrics['vae_compression']:g}x"
    )
    return BenchResult(
        modality="audio", status="ok", summary=summary, seconds=time.perf_counter() - start,
        metrics={k: float(v) for k, v in metrics.items()}, files=files,
        targets=QUICK_TARGETS if quick else FULL_TARGETS,
    )  # fmt: skip
