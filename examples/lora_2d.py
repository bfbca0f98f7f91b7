"""LoRA: adapt a trained model to new data by training a low-rank update only (roadmap 5.3).

A denoiser is trained on one 2-D mixture, then LoRA adapters (Hu et al. 2021: ``W x + (alpha / r) B A x``,
``B = 0`` at the start) are injected into its linear layers through PEFT and trained on a second mixture
while every original weight stays frozen. Printed: the share of parameters trained, the distance to the new
data before and after, and that the base weights did not move; the adapter is saved in the PEFT format
diffusers reads.

    uv run python examples/lora_2d.py
"""

import argparse
from pathlib import Path

import diffcore
import torch
from diffcore.distill import MLPDenoiser, MLPDenoiserConfig
from diffcore.nn.lora import add_lora, save_lora
from diffcore.paths.analytic import GaussianMixture, sliced_wasserstein
from diffcore.training.objectives import v_loss

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--steps", type=int, default=3000)
parser.add_argument("--smoke", action="store_true", help="the smallest run (what CI runs)")
parser.add_argument("--out", type=Path, default=Path("runs/examples/lora_2d"))
args = parser.parse_args()
steps, n = (150, 512) if args.smoke else (args.steps, 4000)
base_data, new_data = GaussianMixture.random(2, seed=0), GaussianMixture.random(2, seed=3)
gen = torch.Generator().manual_seed(0)
objective = v_loss("vp-cosine")  # v-prediction (Salimans & Ho 2022)


def train(net: torch.nn.Module, data: GaussianMixture, lr: float) -> None:
    opt = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=lr)
    for _ in range(steps):
        loss, _ = objective(net, data.sample(256, gen).float(), gen)
        opt.zero_grad()
        loss.backward()
        opt.step()


def distance(net: torch.nn.Module, data: GaussianMixture) -> float:
    den = diffcore.Denoiser(net, schedule="vp-cosine", prediction="v")
    with torch.no_grad():
        return sliced_wasserstein(diffcore.sample(den, torch.randn(n, 2, generator=gen), "dpmpp_2m", 20),
                                  data.sample(n, gen))  # fmt: skip


net = MLPDenoiser(MLPDenoiserConfig(dim=2, width=128, depth=3))
train(net, base_data, lr=2e-3)
before = {k: v.clone() for k, v in net.state_dict().items()}
print(
    f"base model: sliced W2 to its data {distance(net, base_data):.3f}, to the new data {distance(net, new_data):.3f}"
)

add_lora(net, rank=4, alpha=4)  # only the adapters are trainable now
trained = sum(p.numel() for p in net.parameters() if p.requires_grad)
total = sum(p.numel() for p in net.parameters())
train(net, new_data, lr=5e-3)
print(f"LoRA rank 4: {trained} of {total} parameters trained ({100 * trained / total:.1f}%)")
print(f"after LoRA: sliced W2 to the new data {distance(net, new_data):.3f}")
frozen = {k.replace(".base_layer", ""): v for k, v in net.state_dict().items() if "lora_" not in k}
assert frozen.keys() == before.keys() and all(torch.equal(frozen[k], before[k]) for k in before)
print(f"all {len(before)} base tensors unchanged")
save_lora(net, args.out / "adapter")  # adapter_config.json + adapter_model.safetensors
