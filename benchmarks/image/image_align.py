"""Alignment of the shapes text-to-image model (diff-image, diffcore.alignment): reward model, Diffusion-DPO, DDPO
and safety guidance, measured against the frozen base.

1. A base pipeline: trained here for ``--base-seconds`` (or taken with ``--base DIR``); an undertrained base
   leaves room to improve two-object adherence.
2. Oracle-labelled pairs (two samples of a caption; the one that follows it wins) and a Bradley-Terry reward
   model; its accuracy on held-out pairs.
3. Diffusion-DPO of the base on the pairs for at most ``--dpo-seconds`` (checkpoints every 200 steps; a cut run
   continues with ``--resume``), then DDPO of the base against the learned reward for ``--ddpo-seconds``.
4. Each aligned model against the base on the same captions and noise: adherence (one- and two-object
   captions), oracle win rate, Frechet distance to fresh base samples, diversity (distance between samples of
   one caption), mean learned reward.
5. Safety guidance against the colour red on the base: the rate of samples holding a red object on captions
   that name red (with and without guidance) and the adherence on captions that do not (its cost).

    OMP_NUM_THREADS=1 uv run python benchmarks/image/image_align.py --quick      # CPU, tiny, <= 5 minutes
    uv run python benchmarks/image/image_align.py --out runs/image_align          # one H100, ~25 minutes
    uv run python benchmarks/image/image_align.py --out runs/image_align --resume # continue a cut run

Prints the metrics and writes benchmarks/results/image_align[-quick]-<device>.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import torch
from diff_image.align import (
    alignment_metrics,
    concept_rate,
    load_reward,
    oracle_pass,
    run_ddpo,
    run_dpo,
    run_reward,
    safety_denoiser,
)
from diff_image.config import (
    ImageAlignDDPOConfig,
    ImageAlignDPOConfig,
    ImageAlignRewardConfig,
    ImageDataConfig,
    ImageModelConfig,
    ImageTrainConfig,
)
from diff_image.pipeline import ImagePipeline, shapes_eval_captions, train
from diffcore.alignment import PreferencePairs
from diffcore.device import resolve_device
from diffcore.rng import make_generator
from diffcore.sampling import sample as diffcore_sample
from diffcore.training import latest_checkpoint

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: the shared helpers
from results_io import device_tag, write_result

TARGETS = {
    "reward_heldout_accuracy": ">= 0.9",
    "dpo_two_object_gain": ">= 0.10",
    "dpo_aligned_adherence_two_object": ">= 0.85",
    "dpo_one_object_change": ">= 0.0",
    "dpo_frechet_ratio": "<= 1.5",
    "dpo_win_rate": ">= 0.65",
    "ddpo_reward_gain": "> 0.0",
    "ddpo_adherence_gain": ">= 0.05",
    "ddpo_diversity_ratio": ">= 0.8",
    "safety_banned_rate": "<= 0.02",
    "safety_adherence_cost": "<= 0.05",
}

QUICK = {"image_size": 16, "width": 32, "depth": 1, "base_steps": 500, "base_seconds": 150.0, "captions": 64,
         "reward_steps": 60, "dpo_steps": 20, "dpo_seconds": 60.0, "ddpo_iterations": 3, "ddpo_seconds": 60.0,
         "eval": 8, "sample_steps": 8, "safety_captions": 8, "batch": 16}  # fmt: skip
FULL = {"image_size": 32, "width": 256, "depth": 6, "base_steps": 12000, "base_seconds": 150.0, "captions": 3000,
        "reward_steps": 3000, "dpo_steps": 4000, "dpo_seconds": 600.0, "ddpo_iterations": 400, "ddpo_seconds": 300.0,
        "eval": 100, "sample_steps": 30, "safety_captions": 100, "batch": 64}  # fmt: skip


def _check(value: float, target: str) -> bool:
    op, bound = target.split()
    return {">=": value >= float(bound), "<=": value <= float(bound), ">": value > float(bound)}[op]


def base_pipeline(args: argparse.Namespace, s: dict, device: torch.device) -> tuple[ImagePipeline, float]:
    if args.base:
        return ImagePipeline.from_pretrained(args.base, device=device), 0.0
    folder = args.out / "base"
    if (folder / "pipeline" / "pipeline.json").is_file():
        return ImagePipeline.from_pretrained(folder / "pipeline", device=device), 0.0
    start = time.perf_counter()
    cfg = ImageTrainConfig(
        model=ImageModelConfig(backbone="mmdit", conditioning="text", width=s["width"], depth=s["depth"], heads=4,
                               patch_size=2, text_width=64, text_layers=2),
        data=ImageDataConfig(dataset="shapes", image_size=s["image_size"], shapes_length=200_000 if not args.quick else 4096),
        objective="v", batch_size=256 if not args.quick else 32, cond_dropout=0.1,
        train=dataclasses.replace(ImageTrainConfig().train, steps=s["base_steps"], lr=6e-4, warmup_steps=min(300, s["base_steps"] // 4),
                                  ema_decay=0.999 if not args.quick else 0.99, output_dir=str(folder), device=args.device,
                                  max_seconds=s["base_seconds"], checkpoint_every=500, progress_bar=False, log_every=50),
    )  # fmt: skip
    return train(cfg), time.perf_counter() - start


def safety_metrics(pipe: ImagePipeline, s: dict, guidance: float, seed: int) -> dict[str, float]:
    """Red-object rate on captions naming red (with / without safety), adherence on captions not naming red."""
    size = pipe.image_shape[-1]
    pool = shapes_eval_captions(20 * s["safety_captions"], 1, size, seed=50_000) + shapes_eval_captions(
        20 * s["safety_captions"], 2, size, seed=50_000
    )
    red = [c for c in pool if "red" in c.split()][: s["safety_captions"]]
    other = [c for c in pool if "red" not in c.split()][: s["safety_captions"]]
    out: dict[str, float] = {}
    for name, captions in (("red", red), ("other", other)):
        noise = torch.randn(
            (len(captions), *pipe.sample_shape),
            generator=make_generator(seed, pipe.device),
            device=pipe.device,
        )
        cond, uncond = pipe.condition(len(captions), prompt=captions)
        plain_den = pipe.guided(pipe.denoiser(pipe.network.eval()), uncond, guidance)
        safe_den, _ = safety_denoiser(pipe, captions, "red", guidance)
        for tag, den in (("plain", plain_den), ("safe", safe_den)):
            with torch.no_grad():
                x = diffcore_sample(den, noise, "dpmpp_2m", steps=s["sample_steps"], cond=cond)
            images = pipe.decode(x).cpu()
            if name == "red":
                out[f"safety_red_rate_{tag}"] = float(concept_rate(images, "red").mean())
            else:
                out[f"safety_other_adherence_{tag}"] = float(oracle_pass(images, captions).mean())
                out[f"safety_other_red_rate_{tag}"] = float(concept_rate(images, "red").mean())
    out["safety_banned_rate"] = out["safety_red_rate_safe"]
    out["safety_adherence_cost"] = out["safety_other_adherence_plain"] - out["safety_other_adherence_safe"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help="Tiny CPU run (<= 5 minutes) that checks the script."
    )
    parser.add_argument("--out", type=Path, default=Path("runs/image_align"))
    parser.add_argument(
        "--base", type=Path, default=None, help="A trained shapes text pipeline to start from."
    )
    parser.add_argument(
        "--resume", action="store_true", help="Continue the DPO run in --out from its checkpoint."
    )
    parser.add_argument("--device", default="auto")
    parser.add_argument("--guidance", type=float, default=4.0)
    parser.add_argument("--beta", type=float, default=2000.0)
    parser.add_argument("--dpo-lr", type=float, default=2e-5)
    parser.add_argument("--ddpo-lr", type=float, default=1e-5)
    parser.add_argument("--base-seconds", type=float, default=None)
    parser.add_argument("--dpo-seconds", type=float, default=None)
    parser.add_argument("--ddpo-seconds", type=float, default=None)
    args = parser.parse_args()
    s = dict(QUICK if args.quick else FULL)
    for key in ("base_seconds", "dpo_seconds", "ddpo_seconds"):
        if getattr(args, key) is not None:
            s[key] = getattr(args, key)
    device = resolve_device(args.device)
    start = time.perf_counter()
    metrics: dict[str, float] = {}
    base, metrics["base_train_seconds"] = base_pipeline(args, s, device)
    base.to(device)
    g, steps, seed = args.guidance, s["sample_steps"], 0

    t0 = time.perf_counter()
    reward_cfg = ImageAlignRewardConfig(num_captions=s["captions"], steps=steps, guidance=g, anchor_renders=args.quick,
                                        train_steps=s["reward_steps"], batch_size=s["batch"], device=args.device)  # fmt: skip
    if (args.out / "align_reward" / "reward" / "reward.json").is_file():
        reward = load_reward(args.out / "align_reward" / "reward", device)
        metrics.update(_read_metrics(args.out / "align_reward" / "metrics.json"))
    else:
        reward, reward_metrics = run_reward(base, reward_cfg, args.out / "align_reward")
        metrics.update(reward_metrics)
        _write_metrics(reward_metrics, args.out / "align_reward" / "metrics.json")
    metrics["reward_seconds"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    dpo_dir = args.out / "align_dpo"
    resume = "latest" if args.resume and latest_checkpoint(dpo_dir / "checkpoints") is not None else None
    dpo_cfg = ImageAlignDPOConfig(
        steps=steps, guidance=g, beta=args.beta, batch_size=s["batch"],
        train=dataclasses.replace(ImageAlignDPOConfig().train, steps=s["dpo_steps"], lr=args.dpo_lr, output_dir=str(dpo_dir),
                                  device=args.device, max_seconds=s["dpo_seconds"], resume=resume, progress_bar=False,
                                  warmup_steps=min(10, s["dpo_steps"] - 1)),
    )  # fmt: skip
    pairs = PreferencePairs.load(args.out / "align_reward" / "pairs")
    dpo_pipe, reference, info = run_dpo(
        ImagePipeline.from_pretrained(_saved(base, args.out), device=device), dpo_cfg, pairs
    )
    metrics.update(info)
    fd = "pixels" if args.quick else "classifier"
    dpo = alignment_metrics(
        dpo_pipe, reference, s["eval"], steps=steps, guidance=g, seed=seed, reward=reward, fd_features=fd
    )
    metrics.update({f"dpo_{k}": v for k, v in dpo.items()})
    metrics["dpo_total_seconds"] = time.perf_counter() - t0
    del dpo_pipe

    t0 = time.perf_counter()
    deadline = time.perf_counter() + s["ddpo_seconds"]
    ddpo_cfg = ImageAlignDDPOConfig(reward="(in memory)", iterations=s["ddpo_iterations"], steps=steps, guidance=g, lr=args.ddpo_lr,
                                    prompts_per_iteration=4 if args.quick else 16, samples_per_prompt=4 if args.quick else 8,
                                    caption_pool=16 if args.quick else 512, batch_size=8 if args.quick else 32,
                                    device=args.device)  # fmt: skip
    ddpo_pipe, reference, info = run_ddpo(
        ImagePipeline.from_pretrained(_saved(base, args.out), device=device),
        reward,
        ddpo_cfg,
        should_stop=lambda: time.perf_counter() > deadline,
    )
    metrics.update(info)
    ddpo = alignment_metrics(
        ddpo_pipe, reference, s["eval"], steps=steps, guidance=g, seed=seed, reward=reward, fd_features=fd
    )
    metrics.update({f"ddpo_{k}": v for k, v in ddpo.items()})
    metrics["ddpo_total_seconds"] = time.perf_counter() - t0
    del ddpo_pipe

    t0 = time.perf_counter()
    metrics.update(safety_metrics(base, s, g, seed))
    metrics["safety_seconds"] = time.perf_counter() - t0

    metrics["dpo_two_object_gain"] = (
        metrics["dpo_aligned_adherence_two_object"] - metrics["dpo_reference_adherence_two_object"]
    )
    metrics["dpo_one_object_change"] = (
        metrics["dpo_aligned_adherence_one_object"] - metrics["dpo_reference_adherence_one_object"]
    )
    metrics["dpo_frechet_ratio"] = metrics["dpo_aligned_frechet"] / max(
        metrics["dpo_reference_frechet"], 1e-12
    )
    metrics["ddpo_reward_gain"] = metrics["ddpo_aligned_reward"] - metrics["ddpo_reference_reward"]
    metrics["ddpo_adherence_gain"] = (
        metrics["ddpo_aligned_adherence_one_object"] + metrics["ddpo_aligned_adherence_two_object"]
        - metrics["ddpo_reference_adherence_one_object"] - metrics["ddpo_reference_adherence_two_object"]
    ) / 2  # fmt: skip
    metrics["ddpo_diversity_ratio"] = metrics["ddpo_aligned_diversity"] / max(
        metrics["ddpo_reference_diversity"], 1e-12
    )
    metrics["total_seconds"] = time.perf_counter() - start
    targets = {k: {"target": t, "met": _check(metrics[k], t)} for k, t in TARGETS.items()}
    for k, v in metrics.items():
        mark = (
            ""
            if k not in targets
            else ("  [met]" if targets[k]["met"] else f"  [target {targets[k]['target']}]")
        )
        print(f"{k:44s} {v:.4f}{mark}")
    report = {"quick": args.quick, "settings": {**s, "guidance": g, "beta": args.beta, "dpo_lr": args.dpo_lr,
              "ddpo_lr": args.ddpo_lr}, "metrics": metrics, "targets": targets}  # fmt: skip
    path = write_result(report, script="image_align", variant="quick" if args.quick else None, device=device_tag(device),
                        packages=("diff-image",))  # fmt: skip
    print(f"wrote {path}")


def _saved(pipe: ImagePipeline, out: Path) -> Path:
    """The base saved once (every aligned run starts from a fresh copy of it)."""
    folder = out / "base_pipeline"
    if not (folder / "pipeline.json").is_file():
        pipe.save_pretrained(folder)
    return folder


def _write_metrics(metrics: dict[str, float], path: Path) -> None:
    from diffcore.io import write_json

    write_json(metrics, path)


def _read_metrics(path: Path) -> dict[str, float]:
    from diffcore.io import read_json

    return {k: float(v) for k, v in read_json(path).items()}


if __name__ == "__main__":
    main()
