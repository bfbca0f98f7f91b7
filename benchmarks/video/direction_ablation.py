"""diff-video: which training choice makes a small video DiT follow the motion DIRECTION of its condition.

A controlled comparison on the moving-shapes set reduced to its direction: one red square, one speed, no events,
4 directions given as a class label (chance 0.25), 8 frames of 16x16. Every variant trains the same
class-conditional factorised ``VideoDiT`` from the same seed on the same clips with diff-video's objective
(``VideoFlowObjective``: rectified flow, frame masking off) for the same steps, changing one thing:

- ``base``: the adaLN-only layout (``cond_tokens=False``: the label's row added to the time embedding in front of
  the modulation's SiLU; table init std 0.02), logit-normal t, velocity, dropout 0.1; every variant but
  ``tokens`` and ``tokens_high_t`` keeps that layout;
- ``label_scale``: the label table initialised at std 0.5 (its rows about as long as the time embedding);
- ``label_lr``: the label table trained at 10x the learning rate;
- ``tokens``: the package's default ``cond_tokens=True``: a label embedding (init std 1) also added to every
  patch token;
- ``tokens_high_t``: ``tokens`` and ``high_t`` (the pair that made a small CPU model's loss depend on the label);
- ``high_t``: logit-normal t shifted towards noise (m = 1: a quarter of the times above 0.85, where the direction
  cannot yet be read from ``x_t`` and only the label says it);
- ``uniform_t``: uniform t;
- ``precond``: the network's output preconditioned (EDM-style, Karras et al. 2022, Sec. 5, for the velocity of
  rectified flow: ``v = c_skip(t) x_t + c_out(t) F``, so that at high t the network only has to predict the
  clip's mean given the label);
- ``drop0`` / ``drop3``: condition dropout 0 / 0.3 instead of 0.1.

Each (variant, seed) samples 64 clips (16 per direction, 30 Euler steps, guidance 3) and is scored by the package's
tracker (``motion_adherence``): direction adherence, colour adherence, object persistence. Results are written to
``benchmarks/results/direction_ablation[-quick]-<device>.json`` after every (variant, seed), and a rerun skips the
pairs already there (``--fresh`` starts over), so a cut run resumes.

    uv run python benchmarks/video/direction_ablation.py                      # one GPU, ~30 s per (variant, seed)
    uv run python benchmarks/video/direction_ablation.py --variants base,tokens_high_t --seeds 0,1,2   # ~4 min
    uv run python benchmarks/video/direction_ablation.py --quick              # CPU, every variant, 1 seed, 20 steps
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from diff_video.data.shapes import MovingShapes
from diff_video.data.shapes_config import ShapesConfig
from diff_video.metrics.motion import motion_adherence
from diff_video.models import VideoDiT, VideoDiTConfig
from diff_video.pipeline.core import VideoPipeline, flow_schedule
from diff_video.pipeline.training import VideoFlowObjective
from diffcore.training import time_sampling
from torch import Tensor, nn
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: the shared helpers
from results_io import result_path, write_result

VARIANTS = (
    "base",
    "label_scale",
    "label_lr",
    "tokens",
    "tokens_high_t",
    "high_t",
    "uniform_t",
    "precond",
    "drop0",
    "drop3",
)
CLASSES = 4
SIGMA_DATA = 0.5


@dataclass
class Settings:
    """Model size and training / sampling budget of one (variant, seed)."""

    width: int = 128
    depth: int = 4
    batch_size: int = 64
    steps: int = 1500
    lr: float = 1e-3
    warmup: int = 50
    clips: int = 4096
    samples: int = 64
    sample_steps: int = 30
    guidance: float = 3.0

    @classmethod
    def quick(cls) -> Settings:
        """Seconds on CPU: checks the code path, not the quality."""
        return cls(width=32, depth=2, batch_size=8, steps=20, clips=64, samples=8, sample_steps=4)


class Preconditioned(nn.Module):
    """``v = c_skip(t) x_t + c_out(t) F(x_t, t, y)``: for ``x_t = (1 - t) x_0 + t eps`` with ``x_0`` of variance
    ``sigma_d^2``, ``c_skip`` is the best linear prediction of ``v = eps - x_0`` from ``x_t`` and ``c_out`` the
    standard deviation of what is left (EDM's rule, Karras et al. 2022, Eq. 7, written for the velocity)."""

    def __init__(self, net: VideoDiT) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: Tensor, t: Tensor, **cond) -> Tensor:
        """``x`` ``(B, C, T, H, W)``, ``t`` ``(B,)`` -> the velocity."""
        s2, tt = SIGMA_DATA**2, t.view(-1, 1, 1, 1, 1).to(x.dtype)
        skip = (tt - (1 - tt) * s2) / ((1 - tt) ** 2 * s2 + tt**2)
        out = ((1 - skip * tt) ** 2 + s2 * (1 + skip * (1 - tt)) ** 2).sqrt()
        return skip * x + out * self.net(x, t, **cond)


def clip_set(settings: Settings, seed: int) -> tuple[Tensor, Tensor, ShapesConfig]:
    """``settings.clips`` clips ``(N, 3, 8, 16, 16)`` and their direction labels ``(N,)``."""
    shapes = ShapesConfig(
        frames=8, height=16, width=16, colours=("red",), shapes=("square",), directions=CLASSES,
        speeds=("steadily",), events=(), num_objects=(1,), length=settings.clips, seed=seed,
    )  # fmt: skip
    data = MovingShapes(shapes)
    clips, _ = data.render(settings.clips)
    names = shapes.direction_names
    labels = torch.tensor([names.index(data.spec(i).objects[0].direction) for i in range(settings.clips)])
    return clips, labels, shapes


def run_one(variant: str, seed: int, settings: Settings, device: torch.device) -> dict[str, float]:
    """Train and score one (variant, seed)."""
    clips, labels, shapes = clip_set(settings, seed)
    clips, labels = clips.to(device), labels.to(device)
    torch.manual_seed(seed)
    config = VideoDiTConfig(
        input_size=(8, 16, 16), patch_size=(1, 4, 4), hidden_size=settings.width, depth=settings.depth,
        num_heads=4, attention="factorised", num_classes=CLASSES, cond_tokens=variant.startswith("tokens"),
    )  # fmt: skip
    dit = VideoDiT(config)
    if variant == "label_scale":
        nn.init.normal_(dit.y_embedder.table.weight, std=0.5)
    model: nn.Module = Preconditioned(dit) if variant == "precond" else dit
    model.to(device).train()
    sampler = {
        "high_t": time_sampling.get("logit-normal", m=1.0),
        "uniform_t": time_sampling.get("uniform"),
    }.get(variant, time_sampling.get("logit-normal"))
    dropout = {"drop0": 0.0, "drop3": 0.3}.get(variant, 0.1)
    objective = VideoFlowObjective(
        flow_schedule(1.0), sampler, cond_dropout=dropout, null_cond={"y": CLASSES}
    )
    label = [p for n, p in model.named_parameters() if "y_embedder" in n or "y_tokens" in n]
    rest = [p for n, p in model.named_parameters() if not ("y_embedder" in n or "y_tokens" in n)]
    mult = 10.0 if variant == "label_lr" else 1.0
    groups = [{"params": rest, "mult": 1.0}, {"params": label, "mult": mult}]
    optimizer = torch.optim.AdamW(groups, lr=settings.lr, weight_decay=0.0)
    generator = torch.Generator(device).manual_seed(seed)
    start, losses = time.perf_counter(), []
    for step in tqdm(range(settings.steps), desc=f"{variant} seed {seed}", leave=False, mininterval=5):
        for group in optimizer.param_groups:
            group["lr"] = settings.lr * group["mult"] * min(1.0, (step + 1) / settings.warmup)
        idx = torch.randint(0, len(clips), (settings.batch_size,), device=device, generator=generator)
        loss, _ = objective(model, {"x": clips[idx], "y": labels[idx]}, generator)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    train_seconds = time.perf_counter() - start
    model.eval()
    pipe = VideoPipeline(model, num_classes=CLASSES, clip_shape=(3, 8, 16, 16), time_shift=1.0).to(device)
    wanted = [i % CLASSES for i in range(settings.samples)]
    captions = [f"a red square moves {shapes.direction_names[k]}" for k in wanted]
    noise = torch.Generator(device).manual_seed(1000 + seed)
    out = pipe.generate(
        settings.samples,
        labels=wanted,
        guidance=settings.guidance,
        steps=settings.sample_steps,
        generator=noise,
    ).cpu()
    scores = motion_adherence(out, captions, directions=CLASSES)
    tail = losses[-min(100, len(losses)) :]
    return {
        "direction_adherence": scores["direction_adherence"],
        "colour_adherence": scores["colour_adherence"],
        "object_persistence": scores["object_persistence"],
        "final_loss": sum(tail) / len(tail),
        "label_row_norm": float(dit.y_embedder.table.weight[:CLASSES].detach().norm(dim=1).mean()),
        "train_seconds": train_seconds,
    }


def summary(runs: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    """Per variant: mean and min over seeds of direction adherence, mean persistence, seeds run."""
    out: dict[str, dict[str, float]] = {}
    for key, r in runs.items():
        variant = key.split("/")[0]
        out.setdefault(variant, {"dirs": [], "pers": []})  # type: ignore[dict-item]
        out[variant]["dirs"].append(r["direction_adherence"])  # type: ignore[union-attr]
        out[variant]["pers"].append(r["object_persistence"])  # type: ignore[union-attr]
    return {
        v: {
            "seeds": len(d["dirs"]),
            "direction_mean": sum(d["dirs"]) / len(d["dirs"]),
            "direction_min": min(d["dirs"]),
            "persistence_mean": sum(d["pers"]) / len(d["pers"]),
        }
        for v, d in out.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help="Seconds on CPU per variant (the code path, not the quality)."
    )
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"Comma-separated, of {VARIANTS}.")
    parser.add_argument("--seeds", default="0,1,2", help="Comma-separated seeds.")
    parser.add_argument("--steps", type=int, default=None, help="Override the training steps.")
    parser.add_argument("--fresh", action="store_true", help="Ignore the result file's finished runs.")
    args = parser.parse_args()
    settings = Settings.quick() if args.quick else Settings()
    if args.steps is not None:
        settings = replace(settings, steps=args.steps)
    variants = args.variants.split(",")
    seeds = [0] if args.quick else [int(s) for s in args.seeds.split(",")]
    for v in variants:
        if v not in VARIANTS:
            raise SystemExit(f"--variants: {v!r} is not one of {VARIANTS}")
    device = torch.device("cuda" if torch.cuda.is_available() and not args.quick else "cpu")
    variant = "quick" if args.quick else None
    path = result_path("direction_ablation", variant, device)
    runs: dict[str, dict[str, float]] = {}
    if path.exists() and not args.fresh:
        previous = json.loads(path.read_text())
        if previous.get("settings") == vars(settings):
            runs = previous.get("runs", {})
    for v in variants:
        for seed in seeds:
            key = f"{v}/{seed}"
            if key in runs:
                continue
            runs[key] = run_one(v, seed, settings, device)
            write_result(
                {"settings": vars(settings), "chance": 1 / CLASSES, "runs": runs, "summary": summary(runs)},
                script="direction_ablation", variant=variant, device=device, packages=("diffcore", "diff-video"),
            )  # fmt: skip
            r = runs[key]
            print(
                f"{key:16s} direction {r['direction_adherence']:.3f}  colour {r['colour_adherence']:.3f}  "
                f"persistence {r['object_persistence']:.3f}  loss {r['final_loss']:.4f}  "
                f"label |row| {r['label_row_norm']:.2f}  {r['train_seconds']:.0f} s",
                flush=True,
            )
    print(f"\n{'variant':14s} seeds  direction mean / min  persistence   (chance {1 / CLASSES:.2f})")
    for v, s in summary(runs).items():
        print(
            f"{v:14s} {s['seeds']:5d}  {s['direction_mean']:.3f} / {s['direction_min']:.3f}"
            f"       {s['persistence_mean']:.3f}"
        )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
