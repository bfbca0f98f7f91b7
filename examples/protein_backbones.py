"""Proteins: SE(3) flow matching of backbone frames (FrameFlow) with an IPA network, written as PDB (diff-protein).

The default data are synthetic backbones (helices, hairpins, sheets) built offline with ideal geometry.
``train`` learns rotations (on SO(3)) and translations of each residue's frame by flow matching with an
Invariant Point Attention network; ``sample`` draws new chains (N, CA, C, O per residue) and saves them as
PDB files; ``evaluate`` measures the geometry (CA-CA distances, clashes, secondary structure) against the
training set. The picture is the CA trace of each sample, coloured from N- to C-terminus.

    uv run python examples/protein_backbones.py                # a small model, a few CPU minutes
    uv run python examples/protein_backbones.py --steps 20000  # towards the GPU benchmark (diffuse bench protein)
"""

import argparse
from pathlib import Path

import matplotlib
from diff_protein import (
    FrameDenoiserConfig,
    ProteinEvaluateConfig,
    ProteinSampleConfig,
    ProteinTrainConfig,
    evaluate,
    sample,
    train,
)
from diff_protein.config import default_train_config

matplotlib.use("Agg")
import matplotlib.pyplot as plt

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--steps", type=int, default=1500)
parser.add_argument("--smoke", action="store_true", help="the smallest run (what CI runs)")
parser.add_argument("--out", type=Path, default=Path("runs/examples/protein_backbones"))
args = parser.parse_args()
steps, examples, blocks = (3, 4, 1) if args.smoke else (args.steps, 128, 3)

config = ProteinTrainConfig(
    what="backbone", process="flow", num_examples=examples, min_length=40, max_length=48, batch_size=8,
    backbone=FrameDenoiserConfig(node_dim=64, pair_dim=32, num_blocks=blocks, num_heads=4, head_dim=8),
    train=default_train_config(steps=steps, lr=1e-3, device="cpu", output_dir=str(args.out / "run"),
                               progress_bar=False, warmup_steps=min(50, steps // 2)),
)  # fmt: skip
pipe = train(config)
samples = sample(
    pipe, ProteinSampleConfig(num_samples=3, length=44, steps=10 if args.smoke else 50, device="cpu")
)
files = samples.save(args.out / "samples")  # sample_000.pdb, ...: (L, 4, 3) N, CA, C, O in angstrom
print(f"{len(files)} PDB files in {args.out / 'samples'}")

fig = plt.figure(figsize=(7.5, 2.6))
for i, backbone in enumerate(samples.backbones):
    ca = backbone[:, 1] - backbone[:, 1].mean(0)
    ax = fig.add_subplot(1, 3, i + 1, projection="3d")
    ax.plot(*ca.T, color="grey", lw=0.8)
    ax.scatter(*ca.T, c=range(len(ca)), cmap="viridis", s=8)
    ax.set_axis_off()
fig.tight_layout()
fig.savefig(args.out / "backbones.png", dpi=80)
small = dict(num_samples=2, num_reference=4, steps=10) if args.smoke else dict(num_samples=16, steps=50)
metrics = evaluate(pipe, ProteinEvaluateConfig(device="cpu", **small))
print({k: round(v, 3) for k, v in metrics.items() if isinstance(v, float)})
