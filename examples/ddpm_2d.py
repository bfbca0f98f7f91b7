"""DDPM on a 2-D Gaussian mixture: the forward process, L_simple, ancestral sampling (roadmap 1.1).

Trains a small MLP to predict the noise with DDPM's L_simple (Ho et al. 2020, Eq. 14) on the linear
beta schedule, samples with the ancestral sampler (their Algorithm 2), and measures the sliced Wasserstein
distance to fresh data, beside the distance between two data sets of the same size (the floor).

    uv run python examples/ddpm_2d.py                 # 3000 steps, about a minute on a CPU core
    uv run python examples/ddpm_2d.py --steps 20000   # closer to the floor
"""

import argparse
from pathlib import Path

import diffcore
import matplotlib
import torch
from diffcore.distill import MLPDenoiser, MLPDenoiserConfig
from diffcore.paths.analytic import GaussianMixture, sliced_wasserstein
from diffcore.training.objectives import ddpm

matplotlib.use("Agg")
import matplotlib.pyplot as plt

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--steps", type=int, default=3000)
parser.add_argument("--smoke", action="store_true", help="the smallest run (what CI runs)")
parser.add_argument("--out", type=Path, default=Path("runs/examples/ddpm_2d"))
args = parser.parse_args()
steps, n = (200, 256) if args.smoke else (args.steps, 2000)

data = GaussianMixture.random(dim=2, components=4, seed=0)  # the target, known exactly
gen = torch.Generator().manual_seed(0)
objective = ddpm("ddpm-linear")  # eps-MSE at t = i / 1000 (i uniform), x_t = alpha x0 + sigma eps
net = MLPDenoiser(MLPDenoiserConfig(dim=2, width=128, depth=3))
opt = torch.optim.Adam(net.parameters(), lr=2e-3)
for _ in range(steps):
    loss, _ = objective(net, data.sample(256, gen).float(), gen)  # objective(model, batch, generator)
    opt.zero_grad()
    loss.backward()
    opt.step()

den = diffcore.Denoiser(net.eval(), schedule=objective.schedule, prediction="eps")
with torch.no_grad():
    x = diffcore.sample(den, torch.randn(n, 2, generator=gen), sampler="ddpm", steps=100, generator=gen)
real = data.sample(n, gen)
swd, floor = sliced_wasserstein(x, real), sliced_wasserstein(data.sample(n, gen), real)
print(f"final loss {loss.item():.3f}  sliced W2 to data {swd:.3f}  (floor at n={n}: {floor:.3f})")

args.out.mkdir(parents=True, exist_ok=True)
fig, ax = plt.subplots(figsize=(3.2, 3.2))
ax.scatter(*real.T, s=2, alpha=0.4, label="data")
ax.scatter(*x.T, s=2, alpha=0.4, label="DDPM, 100 steps")
ax.legend(markerscale=4, fontsize=7)
ax.set_title(f"sliced W2 {swd:.3f} (floor {floor:.3f})", fontsize=8)
fig.tight_layout()
fig.savefig(args.out / "samples.png", dpi=80)
