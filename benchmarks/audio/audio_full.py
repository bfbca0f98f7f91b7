"""diff-audio GPU benchmark (one H100, about 7 minutes with --skip-longform): the issue's GPU targets.

1. Single notes at 16 kHz mono (2.048 s clips): the VAE (32x compression, at most 200 s) and a latent DiT
   (width 384, depth 8, bf16, at most 140 s), then 256 clips generated from held-out captions -> pitch accuracy
   (>= 0.90), instrument accuracy (>= 0.90), timing accuracy within 0.25 s (>= 0.90), FAD-local within 2x of the
   train-vs-test floor, VAE SI-SDR (>= 10 dB at >= 32x), audio-to-audio at strength 0.5 keeping the pitch while
   changing the instrument (>= 0.80). Both stages checkpoint every 500 steps; rerun with --resume to continue a
   cut run from its checkpoints.
2. Long form: 180 s of 44.1 kHz stereo from a latent DiT of >= 100 M parameters (random weights: speed and
   memory only), 50 Euler steps with CFG, torch.compile + bf16 -> wall time (target <= 3 s), real-time factor,
   peak memory.

    uv run python benchmarks/audio/audio_full.py                 # GPU: both parts
    uv run python benchmarks/audio/audio_full.py --resume        # continue a cut run in --out
    uv run python benchmarks/audio/audio_full.py --skip-longform # part 1 only (-> audio_full-notes-<device>.json)
    uv run python benchmarks/audio/audio_full.py --quick         # tiny CPU run that checks the script works

Prints a table and writes benchmarks/results/audio_full[-quick|-notes]-<device>.json (files under --out).
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch
from diff_audio.bench import FULL_TARGETS, BenchSettings, longform_speed, notes_benchmark

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: the shared helpers
from results_io import write_result

TARGETS = {**{k: list(v) for k, v in FULL_TARGETS.items()}, "longform_wall_seconds": ["<=", 3.0],
           "longform_dit_parameters": [">=", 1e8]}  # fmt: skip


def quick_settings() -> BenchSettings:
    return replace(
        BenchSettings.quick(), length=32, vae_steps=3, steps=3, stage_seconds=60.0, eval_samples=8, sample_steps=3,
        classifier_steps=5, batch_size=8, checkpoint_every=2,
    )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help="Tiny CPU run (checks the script, not the targets)."
    )
    parser.add_argument(
        "--out", type=Path, default=Path("runs/audio_full"), help="Folder for the runs and files."
    )
    parser.add_argument(
        "--resume", action="store_true", help="Continue the run in --out from its checkpoints."
    )
    parser.add_argument("--skip-longform", action="store_true", help="Run only the single-note part.")
    args = parser.parse_args()
    settings = quick_settings() if args.quick else BenchSettings.full()
    if not args.quick and not torch.cuda.is_available():
        sys.exit("error: the full benchmark needs a CUDA GPU (use --quick on the CPU)")
    if torch.cuda.is_available():
        torch.backends.cudnn.benchmark = True  # fixed shapes in both stages: let cuDNN pick its convolutions
    start = time.perf_counter()
    metrics, files, _ = notes_benchmark(args.out, settings, resume=args.resume)
    if not args.skip_longform:
        if args.quick:
            metrics.update(longform_speed(seconds=4.0, sample_rate=8000, steps=2, width=64, depth=1, device="cpu",
                                          compile=False))  # fmt: skip
        else:
            metrics.update(longform_speed())
    metrics["total_seconds"] = time.perf_counter() - start
    print(f"{'metric':32s} {'value':>14s}  target")
    for name in sorted(metrics):
        target = TARGETS.get(name)
        mark = f"{target[0]} {target[1]:g}" if target else ""
        print(f"{name:32s} {metrics[name]:14.4f}  {mark}")
    path = write_result(
        {"settings": asdict(settings), "metrics": metrics, "targets": TARGETS, "files": files},
        script="audio_full", variant="quick" if args.quick else ("notes" if args.skip_longform else None), device=settings.device,
        packages=("diff-audio",),
    )  # fmt: skip
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
