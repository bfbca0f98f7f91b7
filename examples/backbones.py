"""U-Net, DiT and MMDiT: three backbones behind one network contract, trained on 8x8 digits (roadmap 4.1-4.3).

Every backbone answers ``net(x_t, t, **cond) -> tensor shaped like x_t`` with ``t: (B,)`` in [0, 1]; only the
conditioning keyword differs (class label ``y`` for the U-Net and DiT, text-like ``context`` and ``pooled``
vectors for MMDiT, here the one-hot label). DiT starts from adaLN-Zero (its output is exactly zero at
initialisation). Each is trained for a few hundred steps of rectified flow on scikit-learn's 8x8 digits and
samples one digit per class; the picture shows them side by side.

    uv run python examples/backbones.py
    uv run python examples/backbones.py --steps 3000
"""

import argparse
from pathlib import Path

import diffcore
import numpy as np
import torch
import torch.nn.functional as F
from diffcore.nn import DiT, DiTConfig, MMDiT, MMDiTConfig, UNet, UNetConfig
from diffcore.training.objectives import rectified_flow
from PIL import Image
from sklearn.datasets import load_digits

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--steps", type=int, default=600)
parser.add_argument("--smoke", action="store_true", help="the smallest run (what CI runs)")
parser.add_argument("--out", type=Path, default=Path("runs/examples/backbones"))
args = parser.parse_args()
steps, batch = (10, 32) if args.smoke else (args.steps, 128)

digits = load_digits()
images = torch.tensor(digits.images / 8 - 1, dtype=torch.float32)[:, None]  # (1797, 1, 8, 8) in [-1, 1]
labels = torch.tensor(digits.target)
nets = {
    "U-Net": UNet(UNetConfig(in_channels=1, model_channels=32, channel_mult=(1, 2), num_res_blocks=1,
                             attention_levels=(1,), num_groups=8, num_classes=10)),
    "DiT": DiT(DiTConfig(input_size=(8, 8), patch_size=2, in_channels=1, hidden_size=64, depth=4, num_heads=4,
                         num_classes=10)),
    "MMDiT": MMDiT(MMDiTConfig(input_size=(8, 8), patch_size=2, in_channels=1, hidden_size=64, depth=4,
                               num_heads=4, context_dim=10, pooled_dim=10)),
}  # fmt: skip


def cond(name: str, y: torch.Tensor) -> dict[str, torch.Tensor]:
    one_hot = F.one_hot(y, 10).float()
    return {"context": one_hot[:, None], "pooled": one_hot} if name == "MMDiT" else {"y": y}


x, t = torch.randn(4, 1, 8, 8), torch.rand(4)
assert torch.equal(nets["DiT"](x, t, y=labels[:4]), torch.zeros_like(x)), "adaLN-Zero: DiT starts at zero"
objective = rectified_flow()  # x_t = (1 - t) x0 + t eps, velocity target eps - x0, logit-normal t
gen = torch.Generator().manual_seed(0)
rows = []
for name, net in nets.items():
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    for _ in range(steps):
        i = torch.randint(0, len(images), (batch,), generator=gen)
        loss, _ = objective(net, {"x": images[i], **cond(name, labels[i])}, gen)
        opt.zero_grad()
        loss.backward()
        opt.step()
    params = sum(p.numel() for p in net.parameters())
    print(f"{name:6s} {params / 1e3:6.0f}k parameters, final loss {loss.item():.3f}")
    den = diffcore.Denoiser(net.eval(), schedule="rectified-flow", prediction="velocity")
    with torch.no_grad():
        y = torch.arange(10)
        rows.append(
            diffcore.sample(den, torch.randn(10, 1, 8, 8, generator=gen), "euler", 20, cond=cond(name, y))
        )

args.out.mkdir(parents=True, exist_ok=True)
grid = torch.cat([torch.cat(list(r[:, 0]), dim=1) for r in rows])  # (3 * 8, 10 * 8): one row per backbone
pixels = ((grid.clamp(-1, 1) + 1) * 127.5).round().numpy().astype(np.uint8)
Image.fromarray(pixels).resize((pixels.shape[1] * 4, pixels.shape[0] * 4), Image.NEAREST).save(
    args.out / "digits.png"
)
