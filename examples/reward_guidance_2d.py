"""Steering samples towards a reward at sampling time (roadmap 7.1, the training-free end of alignment).

A differentiable reward ``r(x) = x[0]`` (prefer points to the right) is applied to the denoiser's clean
estimate ``x0(x_t, t)`` and its gradient added to the score: ``diffcore.guidance.ClassifierGuidance`` with
``log p(y | x_t) = lambda * r(x0(x_t))`` (Dhariwal & Nichol 2021's classifier guidance with a reward in place
of the classifier, differentiated through the denoiser as in universal guidance). The exact denoiser of a
2-D mixture stands for the model; the printed mean reward rises with ``lambda``. Training-time alignment
(reward models, Diffusion-DPO, DDPO) is ``diffcore.alignment``, run on images by ``diffuse image align``.

    uv run python examples/reward_guidance_2d.py
"""

import argparse

import diffcore
import torch
from diffcore.guidance import ClassifierGuidance
from diffcore.paths.analytic import GaussianMixture

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--smoke", action="store_true", help="the smallest run (what CI runs)")
parser.add_argument("--out", default=None, help="unused: this example writes no file")
args = parser.parse_args()
n = 256 if args.smoke else 4000

data = GaussianMixture.random(dim=2, components=4, seed=0)
den = data.denoiser("vp-cosine", prediction="eps")
noise = torch.randn(n, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)


def reward(x: torch.Tensor) -> torch.Tensor:
    return x[:, 0]


for scale in (0.0, 0.5, 1.0, 2.0):
    log_prob = lambda x, t, scale=scale: scale * reward(den.x0(x, t))  # noqa: E731  (t: (B,) times)
    guided = ClassifierGuidance(den, log_prob, scale=1.0)
    x = diffcore.sample(guided, noise, "ddim", 25 if args.smoke else 50)
    print(
        f"lambda = {scale:.1f}: mean reward {reward(x).mean().item():+.3f}, spread {x.std(0).mean().item():.3f}"
    )
print(f"data: mean reward {reward(data.sample(n)).mean().item():+.3f}")
