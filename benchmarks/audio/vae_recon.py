"""diff-audio VAE reconstruction, before and after the fixes of issue 26 (CPU, a few minutes).

Trains the Oobleck-style VAE through the package's own VAE stage (``diff_audio.pipeline.training.train_vae``,
the core Trainer) on synthetic single notes, once per variant, for the same number of optimizer steps, then
scores it on held-out notes:

- ``before``: the settings of the first H100 run: transposed-convolution upsampling (``k = 2 stride``), the
  posterior scale starting at softplus(0) = 0.69, loss = waveform L1 + magnitude-only multi-resolution STFT
  (weight 1) + KL;
- ``after``: nearest-neighbour upsampling + convolution, the posterior starting at softplus(-5) = 0.007, the
  magnitude loss at weight 0.1 and the phase-sensitive complex STFT loss at weight 4;
- ``zero_init``: ``after`` with zero-initialised residual branches (``vae.zero_init``);
- ``residual``: ``after`` plus DC-AE's parameter-free shortcuts around every rate change and zero-initialised
  residual branches (``vae.shortcut``, ``vae.zero_init``): the package defaults now.

Metrics per variant: SI-SDR (dB), MR-STFT distance, log-mel L1 distance, and whether the decoder uses its latent:
``latent_effect`` = ``|D(z) - D(z')| / |D(z)|`` with ``z'`` the latents of other clips (0 means the decoder
ignores the latent), ``zero_effect`` the same against ``D(0)``. Both variants use the fused Snake (identical
values; it changes speed only, and on the CPU little: it is the CUDA kernel count it cuts). Also a profile of one
training step of each variant (shares of self CPU time in convolutions, STFTs, elementwise arithmetic).

    OMP_NUM_THREADS=1 uv run python benchmarks/audio/vae_recon.py            # about 3 minutes on a free CPU
    OMP_NUM_THREADS=1 uv run python benchmarks/audio/vae_recon.py --steps 20  # smoke run

Prints a table and writes benchmarks/results/vae_recon-cpu.json (``--latent-dim 1``, 32x compression:
vae_recon-latent1-cpu.json; other step counts add ``-<steps>steps``; ``--variants residual`` (or any set but
the default ``before after``) adds the variants' names: vae_recon-residual-cpu.json).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch
import torchaudio
from diff_audio.config import AudioDataConfig, AudioTrainConfig, AudioVAEConfig
from diff_audio.data.synth import SynthConfig, SyntheticMusic
from diff_audio.metrics.signal import mrstft_distance, si_sdr
from diff_audio.models.vae import VAEObjective
from diff_audio.pipeline.training import TrainingData, train_vae
from diffcore.training import TrainConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: the shared helpers
from results_io import write_result

SAMPLE_RATE = 8000
CLIP_SECONDS = 0.256
FFT_SIZES = (512, 256, 128, 64)
VARIANTS = {
    "before": {
        "upsample": "transposed",
        "stft_weight": 1.0,
        "complex_stft_weight": 0.0,
        "posterior_init": 0.0,
        "shortcut": False,
        "zero_init": False,
    },
    "after": {
        "upsample": "nearest",
        "stft_weight": 0.1,
        "complex_stft_weight": 4.0,
        "posterior_init": -5.0,
        "shortcut": False,
        "zero_init": False,
    },
    "zero_init": {
        "upsample": "nearest",
        "stft_weight": 0.1,
        "complex_stft_weight": 4.0,
        "posterior_init": -5.0,
        "shortcut": False,
        "zero_init": True,
    },
    "residual": {
        "upsample": "nearest",
        "stft_weight": 0.1,
        "complex_stft_weight": 4.0,
        "posterior_init": -5.0,
        "shortcut": True,
        "zero_init": True,
    },
}


def notes(n: int, seed: int) -> torch.Tensor:
    """``n`` single synthetic notes ``(n, 1, samples)`` (organ, pluck, bell; 8 kHz)."""
    cfg = SynthConfig(kind="notes", length=n, seed=seed, sample_rate=SAMPLE_RATE, clip_seconds=CLIP_SECONDS,
                      min_seconds=0.15, instruments=("organ", "pluck", "bell"))  # fmt: skip
    ds = SyntheticMusic(cfg)
    return torch.stack([ds[i]["audio"] for i in range(n)])


def mel_distance(estimate: torch.Tensor, reference: torch.Tensor) -> float:
    """Mean ``|log(mel_x + 1e-5) - log(mel_y + 1e-5)|`` over 64 mel bands (1024-point STFT, hop 256)."""
    mel = torchaudio.transforms.MelSpectrogram(SAMPLE_RATE, n_fft=512, hop_length=128, n_mels=64)
    return float(((mel(estimate) + 1e-5).log() - (mel(reference) + 1e-5).log()).abs().mean())


def vae_config(args: argparse.Namespace, variant: str) -> AudioVAEConfig:
    """The VAE of the benchmark with one variant's changes."""
    return AudioVAEConfig(channels=args.channels, channel_mults=(1, 2, 4), strides=(2, 4, 4), latent_dim=args.latent_dim,
                          fft_sizes=FFT_SIZES, **VARIANTS[variant])  # type: ignore[arg-type]  # fmt: skip


def profile_step(vae: torch.nn.Module, objective: VAEObjective, x: torch.Tensor) -> dict[str, float]:
    """Shares of one forward + backward's self CPU time: convolutions, STFTs and elementwise arithmetic (sin, cos,
    mul, div, pow: the Snake activations, and a little of the loss)."""
    from torch.profiler import ProfilerActivity, profile

    loss, _ = objective(vae, x)
    loss.backward()  # warm-up
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        loss, _ = objective(vae, x)
        loss.backward()
    shares = {"elementwise": 0.0, "conv": 0.0, "stft": 0.0}
    total = 0.0
    for ev in prof.key_averages():
        t = ev.self_cpu_time_total
        total += t
        name = ev.key.lower()
        if "conv" in name:
            shares["conv"] += t
        elif "fft" in name or "stft" in name:
            shares["stft"] += t
        elif any(k in name for k in ("sin", "cos", "mul", "div", "pow", "square", "snake")):
            shares["elementwise"] += t
    out = {f"profile_share_{k}": v / total for k, v in shares.items()}
    out["profile_step_ms"] = total / 1000.0
    return out


def run_variant(
    args: argparse.Namespace, variant: str, train: torch.Tensor, test: torch.Tensor
) -> dict[str, float]:
    """Train one variant for ``args.steps`` steps and score it on ``test``."""
    vae_cfg = vae_config(args, variant)
    with tempfile.TemporaryDirectory() as tmp:
        config = AudioTrainConfig(
            data=AudioDataConfig(sample_rate=SAMPLE_RATE, clip_seconds=CLIP_SECONDS), vae=vae_cfg,
            vae_steps=args.steps, vae_lr=args.lr, batch_size=args.batch_size,
            train=TrainConfig(output_dir=tmp, steps=args.steps, lr=args.lr, warmup_steps=10, ema_decay=None,
                              progress_bar=False, tensorboard=False, log_every=max(1, args.steps // 4), seed=0,
                              device="cpu", checkpoint_every=None),
        )  # fmt: skip
        n = len(train)
        data = TrainingData(train, [""] * n, torch.zeros(n), torch.zeros(n), {}, [])
        start = time.perf_counter()
        vae = train_vae(data, config)
        seconds = time.perf_counter() - start
    with torch.no_grad():
        mean, _ = vae.posterior(test)
        recon = vae.decode_raw(mean)
        other = vae.decode_raw(mean.roll(1, dims=0))
        zero = vae.decode_raw(torch.zeros_like(mean))
    norm = recon.norm()
    metrics = {
        "si_sdr_db": sum(si_sdr(r, x) for r, x in zip(recon, test)) / len(test),
        "mrstft": mrstft_distance(recon, test, FFT_SIZES),
        "mel_l1": mel_distance(recon, test),
        "latent_effect": float((recon - other).norm() / norm),
        "zero_effect": float((recon - zero).norm() / norm),
        "compression": float(vae.compression),
        "train_seconds": seconds,
        "steps_per_second": args.steps / seconds,
    }
    objective = VAEObjective(vae_cfg.l1_weight, vae_cfg.stft_weight, vae_cfg.kl_weight, FFT_SIZES,
                             vae_cfg.complex_stft_weight)  # fmt: skip
    metrics.update(profile_step(vae.train(), objective, train[: args.batch_size]))
    return metrics


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=300, help="Optimizer steps of each variant.")
    parser.add_argument("--batch-size", type=int, default=8, help="Clips per step.")
    parser.add_argument("--lr", type=float, default=2e-3, help="Learning rate of both variants.")
    parser.add_argument("--channels", type=int, default=8, help="Base width of the VAE.")
    parser.add_argument(
        "--latent-dim", type=int, default=4, help="Latent channels (compression = 32 / this)."
    )
    parser.add_argument("--variants", nargs="+", default=["before", "after"], choices=list(VARIANTS))
    args = parser.parse_args()
    torch.manual_seed(0)
    train, test = notes(256, seed=0), notes(32, seed=1000)
    results = {v: run_variant(args, v, train, test) for v in args.variants}
    names = sorted({k for r in results.values() for k in r})
    print(f"{'metric':26s}" + "".join(f"{v:>14s}" for v in results))
    for name in names:
        print(f"{name:26s}" + "".join(f"{results[v].get(name, float('nan')):14.4f}" for v in results))
    settings = {**vars(args), "sample_rate": SAMPLE_RATE, "clip_seconds": CLIP_SECONDS, "fft_sizes": FFT_SIZES,
                "strides": (2, 4, 4), "train_clips": len(train), "test_clips": len(test),
                "variants_changes": {v: VARIANTS[v] for v in results}}  # fmt: skip
    parts = [] if args.variants == ["before", "after"] else ["-".join(args.variants)]
    parts += [f"latent{args.latent_dim}"] if args.latent_dim != 4 else []  # the default: 8x compression
    parts += [f"{args.steps}steps"] if args.steps != 300 else []
    variant = "-".join(parts) or None
    path = write_result({"settings": settings, "metrics": results}, script="vae_recon", variant=variant, device="cpu",
                        packages=("diff-audio",))  # fmt: skip
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
