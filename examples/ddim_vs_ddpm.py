"""DDIM against DDPM at few steps, with the exact denoiser of a 2-D Gaussian mixture (roadmap 2.1).

No training: ``GaussianMixture.denoiser`` is the exact ``E[eps | x_t]`` of the mixture, so every error seen
here is the sampler's own. DDIM (Song et al. 2021, Eq. 12) with ``eta = 0`` is deterministic: the same noise
always gives the same sample (asserted below), which is what makes inversion and interpolation possible;
``eta = 1`` puts back DDPM's posterior noise. The printed sliced Wasserstein distances show each sampler
approaching the floor as the steps grow; with an exact model the stochastic samplers can correct part of
their discretisation error, which a deterministic one cannot, so which is closer at a given step count
depends on the target and the model (the picture plots the three).

    uv run python examples/ddim_vs_ddpm.py
"""

import argparse
from pathlib import Path

import diffcore
import matplotlib
import torch
from diffcore.paths.analytic import GaussianMixture, sliced_wasserstein

matplotlib.use("Agg")
import matplotlib.pyplot as plt

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--smoke", action="store_true", help="the smallest run (what CI runs)")
parser.add_argument("--out", type=Path, default=Path("runs/examples/ddim_vs_ddpm"))
args = parser.parse_args()
n = 512 if args.smoke else 4000
step_counts = [5, 10, 20, 50]

data = GaussianMixture.random(dim=2, components=4, seed=0)
den = data.denoiser("vp-cosine", prediction="eps")  # exact: no network error
gen = torch.Generator().manual_seed(0)
real = data.sample(n, gen)
noise = torch.randn(n, 2, generator=gen, dtype=torch.float64)
rows = {}
for name, sampler, options in [
    ("DDPM", "ddpm", {}),
    ("DDIM eta=1", "ddim", {"eta": 1.0}),
    ("DDIM", "ddim", {}),
]:
    rows[name] = [
        sliced_wasserstein(diffcore.sample(den, noise, sampler, steps, generator=gen, **options), real)
        for steps in step_counts
    ]
    print(f"{name:11s}" + "".join(f"  {s} steps: {w:.3f}" for s, w in zip(step_counts, rows[name])))
floor = sliced_wasserstein(data.sample(n, gen), real)
print(f"floor (two data sets of {n}): {floor:.3f}")

a, b = (diffcore.sample(den, noise[:8], "ddim", 10) for _ in range(2))
assert torch.equal(a, b), "DDIM with eta = 0 maps the same noise to the same sample"

args.out.mkdir(parents=True, exist_ok=True)
fig, ax = plt.subplots(figsize=(4, 3))
for name, values in rows.items():
    ax.plot(step_counts, values, marker="o", label=name)
ax.axhline(floor, color="grey", ls="--", label="floor")
ax.set(xscale="log", xlabel="steps", ylabel="sliced W2 to data")
ax.legend(fontsize=7)
fig.tight_layout()
fig.savefig(args.out / "ddim_vs_ddpm.png", dpi=80)
