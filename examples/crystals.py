"""Materials: crystal generation by joint diffusion of lattice, fractional coordinates (wrapped normal on
the torus) and atom types (absorbing discrete diffusion), DiffCSP-style (diff-materials).

The default data are perovskite and rock-salt prototypes generated offline (with pymatgen). ``train`` fits an
equivariant message-passing network to all three processes at once (``task="gen"``: ab initio generation);
``sample`` draws crystals, saved as CIF files with a picture of their unit cells; ``evaluate`` reports
structural and compositional validity, match rate and coverage against held-out crystals.

    uv run python examples/crystals.py                 # a small model, a few CPU minutes
    uv run python examples/crystals.py --steps 20000   # towards the GPU benchmark (diffuse bench materials)
"""

import argparse
from pathlib import Path

from diff_materials import (
    CrystalEvaluateConfig,
    CrystalSampleConfig,
    CrystalTrainConfig,
    evaluate,
    sample,
    train,
)
from diff_materials.config import CrystalModelConfig
from diff_materials.pipeline import save_samples
from diffcore.training import TrainConfig

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--steps", type=int, default=1500)
parser.add_argument("--smoke", action="store_true", help="the smallest run (what CI runs)")
parser.add_argument("--out", type=Path, default=Path("runs/examples/crystals"))
args = parser.parse_args()
steps, width, sampler_steps = (5, 16, 10) if args.smoke else (args.steps, 64, 100)

config = CrystalTrainConfig(
    task="gen", generated_kinds=["perovskite", "rocksalt"], limit=40 if args.smoke else 0,
    model=CrystalModelConfig(width=width, depth=2 if args.smoke else 3, num_freqs=8), batch_size=32,
    train=TrainConfig(steps=steps, lr=1e-3, ema_decay=None, device="cpu", output_dir=str(args.out / "run"),
                      progress_bar=False, tensorboard=False, warmup_steps=min(50, steps // 2)),
)  # fmt: skip
pipe = train(config)
crystals = sample(pipe, CrystalSampleConfig(num_samples=8, steps=sampler_steps, device="cpu"))
files = save_samples(args.out / "samples", crystals)  # sample_000.cif, ..., samples.png
print(
    f"{len(crystals)} crystals, e.g. {crystals[0].to_structure().composition.reduced_formula}; {len(files)} files"
)
metrics = evaluate(pipe, CrystalEvaluateConfig(num_samples=8 if args.smoke else 64, steps=sampler_steps,
                                               fingerprints=False, device="cpu"))  # fmt: skip
print({k: round(v, 3) for k, v in metrics.items() if isinstance(v, float)})
