"""Chemical-system guidance through adapters (MatterGen's recipe) on the generated perovskites: an unconditional
``gen`` network, then only its ``chemical_system`` adapters fine-tuned; samples drawn for a few systems with
classifier-free guidance weights 0 (unconditional), 1 (conditional) and 3, same seed for each weight.

Measured per weight, averaged over the systems: the share of sampled atoms whose element is in the asked system
(``atom_share``) and the share of samples whose set of elements is exactly the system (``exact``).

    uv run python benchmarks/materials/materials_properties.py                       # ~3 min on 2 CPU cores
    uv run python benchmarks/materials/materials_properties.py --device cuda --width 128 --depth 4 \\
        --base-steps 6000 --tune-steps 3000 --samples 256                            # GPU

Prints a table and writes benchmarks/results/materials_properties[-<variant>]-<device>.json.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from diff_materials.config import CrystalModelConfig, CrystalTrainConfig
from diff_materials.diffusion import Guidance
from diff_materials.pipeline import generate, property_row, train
from diffcore.training import TrainConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: the shared helpers
from results_io import write_result

SYSTEMS = ("Ba-Ti-O", "K-Nb-O", "Cs-Mg-Cl", "La-Al-O")
WEIGHTS = (0.0, 1.0, 3.0)


def config(args, out: Path, steps: int, lr: float, **kw) -> CrystalTrainConfig:
    train_cfg = TrainConfig(steps=steps, lr=lr, output_dir=str(out), ema_decay=None, progress_bar=False,
                            tensorboard=False, device=args.device, checkpoint_every=None, log_every=100,
                            seed=args.seed)  # fmt: skip
    model = CrystalModelConfig(width=args.width, depth=args.depth, num_freqs=args.freqs)
    return CrystalTrainConfig(model=model, task="gen", csp_fraction=0.0, batch_size=args.batch, coords=args.coords,
                              train=train_cfg, **kw)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--depth", type=int, default=1)
    parser.add_argument("--freqs", type=int, default=4)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--base-steps", type=int, default=800)
    parser.add_argument("--tune-steps", type=int, default=800)
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--sample-steps", type=int, default=50)
    parser.add_argument("--coords", default="wrapped_normal", choices=("wrapped_normal", "flow"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--variant", default=None)
    args = parser.parse_args()
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        train(config(args, Path(tmp) / "base", args.base_steps, 1e-3))
        pipe = train(config(args, Path(tmp) / "tuned", args.tune_steps, 3e-3, properties=("chemical_system",),
                            init_from=str(Path(tmp) / "base")))  # fmt: skip
    train_s = time.perf_counter() - t0
    pipe.to(args.device)
    rows = {}
    for w in WEIGHTS:
        share, exact = [], []
        for system in SYSTEMS:
            elements = set(system.split("-"))
            row = property_row(pipe.properties, [f"chemical_system={system}"])
            g = Guidance(properties=torch.tensor([row] * args.samples), scale=w)
            gen = torch.Generator(args.device).manual_seed(args.seed)
            crystals = generate(pipe, args.samples, steps=args.sample_steps, step_lr=0.0, guidance=g,
                                generator=gen, progress=False)  # fmt: skip
            for c in crystals:
                symbols = [str(s.specie) for s in c.to_structure()]
                share.append(np.mean([s in elements for s in symbols]))
                exact.append(set(symbols) == elements)
        rows[f"w={w:g}"] = {"atom_share": float(np.mean(share)), "exact": float(np.mean(exact))}
    seconds = time.perf_counter() - t0
    print(f"{'guidance':10s} {'atom_share':>10s} {'exact':>8s}")
    for name, r in rows.items():
        print(f"{name:10s} {r['atom_share']:10.4f} {r['exact']:8.4f}")
    print(f"train {train_s:.1f} s, total {seconds:.1f} s")
    path = write_result({"settings": vars(args), "systems": list(SYSTEMS), "metrics": rows, "train_s": train_s,
                         "wall_s": seconds}, script="materials_properties", variant=args.variant,
                        device=args.device, packages=("diff-materials",))  # fmt: skip
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
