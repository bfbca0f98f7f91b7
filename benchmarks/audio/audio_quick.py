"""diff-audio quick benchmark (CPU, at most 5 minutes): what ``diffuse bench audio --quick`` runs.

The Oobleck-style VAE (hop 16, 16 latent channels) and a tiny latent DiT on single synthetic notes (8 kHz mono,
0.512 s), the VAE stage limited to 70 s of wall time and the DiT's to 150 s, then 32 clips generated from
held-out captions and scored (target: pitch accuracy >= 0.5; chance is 1/37).

    OMP_NUM_THREADS=1 uv run python benchmarks/audio/audio_quick.py [--out runs/audio_quick]

(On a machine shared with other jobs, one thread per process avoids oversubscription, which made training
15x slower in our runs.)

Prints a table and writes benchmarks/results/audio_quick-cpu.json (wav files, spectrograms.png and metrics.json
under --out).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from diff_audio.bench import bench

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: the shared helpers
from results_io import write_result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--out", type=Path, default=Path("runs/audio_quick"), help="Folder for the run and files."
    )
    args = parser.parse_args()
    result = bench(args.out, quick=True)
    verdicts = result.verdicts()
    print(f"{'metric':32s} {'value':>12s}  target")
    for name, value in sorted(result.metrics.items()):
        target = result.targets.get(name)
        mark = f"{target.direction} {target.value:g} ({verdicts[name]})" if target else ""
        print(f"{name:32s} {value:12.4f}  {mark}")
    print(f"seconds {result.seconds:.1f}")
    path = write_result(
        {"seconds": result.seconds, "summary": result.summary, "metrics": result.metrics,
         "targets": {k: [t.direction, t.value] for k, t in result.targets.items()}},
        script="audio_quick", device="cpu", packages=("diff-audio",),
    )  # fmt: skip
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
