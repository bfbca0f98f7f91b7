"""The tool ecosystem: installed modality packages, models on disk in the Hugging Face layout, and a DDIM
run that matches diffusers' ``DDIMScheduler`` step for step (roadmap 7.3).

1. ``diffcore.modality.discover()``: the packages registered under the ``diffcore.modalities`` entry points
   (what ``diffuse list`` prints; each adds ``diffuse <modality> train | sample | evaluate``).
2. ``save_pretrained`` / ``from_pretrained``: ``config.json`` + ``model.safetensors``, no pickles.
3. diffusers' DDIM loop and ``diffcore.sample(..., "ddim")`` on the same exact model, beta table and
   timesteps (diffusers' timestep ``k`` is our ``t = (k + 1) / 1000``): the relative difference is printed.
   diffusers is a development dependency of the workspace (``uv sync`` installs it), not of diffcore.

    uv run python examples/ecosystem.py
"""

import argparse
import tempfile
from pathlib import Path

import diffcore
import diffusers
import torch
from diffcore.modality import discover
from diffcore.nn import DiT, DiTConfig
from diffcore.paths.analytic import GaussianMixture
from diffcore.paths.schedules import DiscreteVP
from diffcore.pretrained import load_pretrained

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--smoke", action="store_true", help="the smallest run (what CI runs)")
parser.add_argument(
    "--out", type=Path, default=None, help="where to save the model (default: a temporary folder)"
)
args = parser.parse_args()

for name, modality in sorted(discover().items()):
    print(f"diffuse {name:11s} from {modality.distribution} {modality.version}")

net = DiT(DiTConfig(input_size=(8, 8), patch_size=2, in_channels=1, hidden_size=32, depth=2, num_heads=2))
x, t, y = torch.randn(2, 1, 8, 8), torch.rand(2), torch.tensor([3, 7])
with tempfile.TemporaryDirectory() as tmp:
    folder = net.save_pretrained(args.out or Path(tmp) / "dit")
    again = load_pretrained(folder)  # the class is read from config.json
    print(
        f"saved {sorted(p.name for p in Path(folder).iterdir())}; reloads equal: {torch.equal(again(x, t, y=y), net(x, t, y=y))}"
    )

scheduler = diffusers.DDIMScheduler(num_train_timesteps=1000, clip_sample=False, set_alpha_to_one=True)
scheduler.set_timesteps(10)
abar = scheduler.alphas_cumprod.double()
schedule = DiscreteVP(1 - abar / torch.cat([torch.ones(1, dtype=abar.dtype), abar[:-1]]))  # the same table
den = GaussianMixture.random(4, 3, seed=3).denoiser(schedule, "eps")
noise = torch.randn(64, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
theirs = noise.clone()
for k in scheduler.timesteps:
    theirs = scheduler.step(den.eps(theirs, (int(k) + 1) / 1000), k, theirs).prev_sample
grid = torch.tensor([(int(k) + 1) / 1000 for k in scheduler.timesteps] + [0.0], dtype=torch.float64)
ours = diffcore.sample(den, noise, "ddim", grid=grid)
print(
    f"DDIM, 10 steps: relative difference to diffusers {((ours - theirs).norm() / theirs.norm()).item():.1e}"
)
