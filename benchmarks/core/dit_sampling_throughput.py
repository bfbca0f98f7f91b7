"""DiT sampling throughput: 50-step DPM-Solver++(2M) with classifier-free guidance, batch 64.

Ours: diffcore's DiT inside ``diffcore.Denoiser`` (DDPM linear betas placed on t in [0, 1], eps
prediction) sampled by ``diffcore.sample(..., sampler="dpmpp_2m", guidance=scale)``, which runs the
conditional and null-class branches in one batched forward. Theirs: diffusers'
DiTTransformer2DModel of the same configuration with ``DPMSolverMultistepScheduler`` in the
DiTPipeline-style loop (batched [cond; uncond] forward, guidance on the eps channels). Both use
random weights (speed does not depend on them), bf16 weights and SDPA; ``--compile`` compiles both
networks. Reported: seconds per batch, images/s, network evaluations (NFE) and peak memory; JSON in
``benchmarks/results/dit_sampling_throughput-<model>-<eager|compile>-<device>.json`` (``-quick-cpu``).

    python benchmarks/core/dit_sampling_throughput.py --model XL/2 --batch 64 --steps 50 [--compile]
    python benchmarks/core/dit_sampling_throughput.py --quick      # tiny model on CPU
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch
from diffcore.nn.dit import DiT, DiTConfig, dit_config
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: the shared helpers
from diffusers_reference import diffusers_dit
from results_io import write_result

BETA_START, BETA_END, TRAIN_STEPS = 1e-4, 0.02, 1000  # DiT's DDPM linear schedule


def config(quick: bool, name: str) -> DiTConfig:
    if quick:
        return dit_config(
            "S", 2, depth=2, hidden_size=64, num_heads=4, input_size=(8, 8), num_classes=10, learn_sigma=True
        )
    size, _, patch = name.partition("/")
    return dit_config(size, int(patch), input_size=(32, 32), in_channels=4, learn_sigma=True)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def ours_sampler(cfg: DiTConfig, device: torch.device, dtype: torch.dtype, compile: bool, guidance: float):
    """A function ``(noise, labels, steps) -> samples`` built on ``diffcore.sample``."""
    import diffcore

    if not hasattr(diffcore, "sample") or not hasattr(diffcore, "Denoiser"):
        raise SystemExit(
            "diffcore.sample / diffcore.Denoiser are missing: the sampler module is not installed in this "
            "checkout yet, so our side of this benchmark cannot run."
        )
    from diffcore.paths.schedules import DiscreteVP

    model = DiT(cfg).to(device=device, dtype=dtype).eval()
    net = torch.compile(model) if compile else model
    channels = cfg.in_channels

    def eps_net(x: Tensor, t: Tensor, **cond: Any) -> Tensor:
        return net(x, t, **cond)[:, :channels]  # learned-sigma channels are not used by the ODE sampler

    betas = torch.linspace(BETA_START, BETA_END, TRAIN_STEPS, dtype=torch.float64)
    denoiser = diffcore.Denoiser(eps_net, schedule=DiscreteVP(betas), prediction="eps")

    def sample(noise: Tensor, labels: Tensor, steps: int) -> Tensor:
        null = torch.full_like(labels, model.null_class)
        return diffcore.sample(
            denoiser,
            noise,
            sampler="dpmpp_2m",
            steps=steps,
            cond={"y": labels},
            guidance=guidance,
            uncond={"y": null},
        )

    return sample


def diffusers_sampler(
    cfg: DiTConfig, device: torch.device, dtype: torch.dtype, compile: bool, guidance: float
):
    """The same loop with diffusers' DiT transformer and DPMSolverMultistepScheduler."""
    from diffusers import DPMSolverMultistepScheduler

    model: nn.Module = diffusers_dit(cfg).to(device=device, dtype=dtype).eval()
    net = torch.compile(model) if compile else model
    scheduler = DPMSolverMultistepScheduler(
        num_train_timesteps=TRAIN_STEPS,
        beta_start=BETA_START,
        beta_end=BETA_END,
        beta_schedule="linear",
        solver_order=2,
        algorithm_type="dpmsolver++",
    )
    channels = cfg.in_channels

    def sample(noise: Tensor, labels: Tensor, steps: int) -> Tensor:
        scheduler.set_timesteps(steps, device=device)
        x = noise * scheduler.init_noise_sigma
        class_in = torch.cat([labels, torch.full_like(labels, cfg.num_classes)])
        for t in scheduler.timesteps:
            out = net(torch.cat([x, x]), timestep=t.expand(2 * x.shape[0]), class_labels=class_in).sample
            eps_c, eps_u = out[:, :channels].chunk(2)
            x = scheduler.step(eps_u + guidance * (eps_c - eps_u), t, x).prev_sample
        return x

    return sample


def time_sampler(sample, cfg: DiTConfig, args: argparse.Namespace, device: torch.device, dtype: torch.dtype):
    gen = torch.Generator(device).manual_seed(0)
    noise = torch.randn(
        args.batch, cfg.in_channels, *cfg.input_size, device=device, generator=gen, dtype=dtype
    )
    labels = torch.randint(0, cfg.num_classes, (args.batch,), device=device, generator=gen)
    with torch.inference_mode():
        start = time.perf_counter()
        sample(noise, labels, args.steps)  # warm-up (and compilation)
        synchronize(device)
        warmup_s = time.perf_counter() - start
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            out = sample(noise, labels, args.steps)
            synchronize(device)
            times.append(time.perf_counter() - start)
    if not torch.isfinite(out).all():
        raise RuntimeError("sampling produced non-finite values")
    best = min(times)
    return {
        "seconds_per_batch": best,
        "images_per_s": args.batch / best,
        "ms_per_step": 1000 * best / args.steps,
        "warmup_s": warmup_s,
        "peak_memory_gib": torch.cuda.max_memory_allocated(device) / 2**30
        if device.type == "cuda"
        else float("nan"),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="XL/2")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--guidance", type=float, default=4.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--quick", action="store_true", help="tiny model on CPU, float32, 3 steps")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    device = torch.device("cpu" if args.quick or not torch.cuda.is_available() else "cuda")
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    if args.quick:
        args.batch, args.steps, args.repeats = min(args.batch, 2), 3, 1
    cfg = config(args.quick, args.model)
    rows = []
    for impl, build in (("diffcore", ours_sampler), ("diffusers", diffusers_sampler)):
        torch.manual_seed(0)
        sample = build(cfg, device, dtype, args.compile, args.guidance)
        rows.append({"impl": impl, "nfe": args.steps, **time_sampler(sample, cfg, args, device, dtype)})
    result = {
        "benchmark": "dit_sampling_throughput",
        "model": "tiny/2" if args.quick else args.model,
        "device": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else platform.processor() or "cpu",
        "torch": torch.__version__,
        "dtype": str(dtype),
        "batch": args.batch,
        "steps": args.steps,
        "guidance": args.guidance,
        "compile": args.compile,
        "quick": args.quick,
        "rows": rows,
    }
    print(
        f"{result['model']} on {result['device']}: batch {args.batch}, {args.steps} steps DPM++2M, "
        f"CFG {args.guidance}, {dtype}, compile={args.compile}"
    )
    print(f"{'impl':10} {'NFE':>5} {'s/batch':>9} {'img/s':>9} {'ms/step':>9} {'mem(GiB)':>9}")
    for r in rows:
        print(
            f"{r['impl']:10} {r['nfe']:5d} {r['seconds_per_batch']:9.3f} {r['images_per_s']:9.1f} "
            f"{r['ms_per_step']:9.2f} {r['peak_memory_gib']:9.2f}"
        )
    variant = (
        "quick"
        if args.quick
        else f"{args.model.lower().replace('/', '')}-{'compile' if args.compile else 'eager'}"
    )
    out = write_result(
        result,
        script="dit_sampling_throughput",
        variant=variant,
        device=device,
        packages=("diffusers",),
        path=args.out,
    )
    print(f"wrote {out}")
    return result


if __name__ == "__main__":
    main()
