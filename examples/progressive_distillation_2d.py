"""Progressive distillation: a student taught to take 2 steps where its teacher takes 16 (roadmap 2.3).

The teacher is the exact denoiser of a 2-D Gaussian mixture sampled with DDIM. Each round trains an MLP
student to match two teacher DDIM steps with one of its own (Salimans & Ho 2022, Algorithm 2), then the
student becomes the next round's teacher: 16 -> 8 -> 4 -> 2 steps. The student at 2 steps is compared with
the teacher at 2 and 16 steps by the sliced Wasserstein distance to data. ``diffcore.distill`` also holds
consistency distillation and training, LCM, reflow and DMD (measured on images in docs/few_step.md).

    uv run python examples/progressive_distillation_2d.py
"""

import argparse
import copy
from pathlib import Path

import diffcore
import torch
from diffcore.distill import MLPDenoiser, MLPDenoiserConfig, ProgressiveDistillation
from diffcore.paths.analytic import GaussianMixture, sliced_wasserstein

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--steps-per-round", type=int, default=1500)
parser.add_argument("--smoke", action="store_true", help="the smallest run (what CI runs)")
parser.add_argument("--out", type=Path, default=Path("runs/examples/progressive_distillation_2d"))
args = parser.parse_args()
steps_per_round, n = (50, 512) if args.smoke else (args.steps_per_round, 4000)

data = GaussianMixture.random(dim=2, components=4, seed=0)
teacher = exact = data.denoiser("vp-cosine", prediction="eps")
gen = torch.Generator().manual_seed(0)
student = MLPDenoiser(MLPDenoiserConfig(dim=2, width=128, depth=3))
for student_steps in (8, 4, 2):
    objective = ProgressiveDistillation(teacher, prediction="v", student_steps=student_steps)
    opt = torch.optim.Adam(student.parameters(), lr=1e-3)
    for _ in range(steps_per_round):
        loss, _ = objective(student, data.sample(256, gen).float(), gen)
        opt.zero_grad()
        loss.backward()
        opt.step()
    frozen = copy.deepcopy(student).eval().requires_grad_(False)
    teacher = diffcore.Denoiser(frozen, schedule="vp-cosine", prediction="v")
    print(f"round to {student_steps} steps: final loss {loss.item():.4f}")

real = data.sample(n, gen)
noise = torch.randn(n, 2, generator=gen)
with torch.no_grad():
    results = {
        "teacher, 16 DDIM steps": diffcore.sample(exact, noise.double(), "ddim", 16),
        "teacher, 2 DDIM steps": diffcore.sample(exact, noise.double(), "ddim", 2),
        "student, 2 DDIM steps": diffcore.sample(teacher, noise, "ddim", 2),
    }
for name, x in results.items():
    print(f"{name:24s} sliced W2 to data {sliced_wasserstein(x, real):.3f}")
args.out.mkdir(parents=True, exist_ok=True)
frozen.save_pretrained(args.out / "student")  # config.json + model.safetensors
