"""Convergence order of the probability-flow ODE solvers: Euler, DDIM, Heun, DPM-Solver(++), UniPC
(roadmap 2.2).

With the exact denoiser of a 2-D Gaussian mixture on the VP-linear path, each sampler integrates the
probability-flow ODE from ``t = 0.9`` to ``t = 0.05`` on a grid uniform in log-SNR, from the same start; its
error against a reference solution (DPM-Solver-3, 300 steps) falls like ``steps^-order``. The fitted slope
between the two largest step counts is printed (Lu et al. 2022: DPM-Solver-k is of order k; multistep
solvers run here without their lower-order final steps, which trade order for stability at very few steps).

    uv run python examples/fast_solvers.py
"""

import argparse
import math
from pathlib import Path

import diffcore
import matplotlib
import torch
from diffcore.paths.analytic import GaussianMixture
from diffcore.sampling import get as get_sampler

matplotlib.use("Agg")
import matplotlib.pyplot as plt

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--smoke", action="store_true", help="the smallest run (what CI runs)")
parser.add_argument("--out", type=Path, default=Path("runs/examples/fast_solvers"))
args = parser.parse_args()
n = 128 if args.smoke else 1024
multistep = {"lower_order_final": False}
samplers = {"euler": {}, "ddim": {}, "heun": {}, "dpm_solver_2": {}, "dpm_solver_3": {}, "dpmpp_2m": multistep,
            "dpmpp_3m": multistep, "unipc": multistep}  # fmt: skip

den = GaussianMixture.random(dim=2, components=4, seed=0).denoiser("vp-linear", prediction="eps")
noise = torch.randn(n, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
grid = dict(grid="log-snr", t_start=0.9, t_end=0.05)  # off the stiff ends, to see the asymptotic order
reference = diffcore.sample(den, noise, "dpm_solver_3", 300, **grid)

args.out.mkdir(parents=True, exist_ok=True)
fig, ax = plt.subplots(figsize=(4.5, 3.2))
for sampler, options in samplers.items():
    step_counts = [20, 40] if args.smoke else [10, 20, 40, 80]
    errors = [
        (diffcore.sample(den, noise, sampler, steps, **grid, **options) - reference).norm(dim=1).mean().item()
        for steps in step_counts
    ]
    order = math.log(errors[-2] / errors[-1]) / math.log(step_counts[-1] / step_counts[-2])
    nfes = [steps * get_sampler(sampler).nfe_per_step for steps in step_counts]
    print(f"{sampler:13s} error at {nfes[-1]:3d} NFE {errors[-1]:.2e}   fitted order {order:.2f}")
    ax.plot(nfes, errors, marker="o", label=f"{sampler} ({order:.1f})")
ax.set(xscale="log", yscale="log", xlabel="network evaluations", ylabel="error vs reference")
ax.legend(fontsize=6)
fig.tight_layout()
fig.savefig(args.out / "convergence.png", dpi=80)
